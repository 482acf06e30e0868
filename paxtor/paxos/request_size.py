"""The size bound of a PaxosKV request: checked in the caller, before any work.

A key and its value travel in every message of a round and land in every
voter's log. `PaxosConfig.max_request_bytes` (1.5 MiB by default) bounds them
together, so that no caller can make the node's one loop encode, send, decode
and fsync tens of megabytes while leases wait on it. `encode_within` looks at
what is cheap first (the length of a str, bytes or container is a lower bound
of its encoding) and encodes at most once.
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.node import current_node
from paxtor.actors.wire import encode
from paxtor.paxos.config import MAX_REQUEST_BYTES
from paxtor.paxos.paxos_node import open_paxos_node

__all__ = ["node_request_limit", "check_length", "encode_within", "too_large"]

_SIZED = (str, bytes, bytearray, memoryview, tuple, list, dict, set, frozenset)


def node_request_limit() -> int:
    """The current node's `max_request_bytes` (the default where PaxosKV is not running)."""
    paxos_node = open_paxos_node(current_node())
    return MAX_REQUEST_BYTES if paxos_node is None else paxos_node.config.max_request_bytes


def too_large(what: str, size: int, limit: int, *, at_least: bool = False) -> ValueError:
    """The error for a request over the limit, naming the limit and how to change it."""
    return ValueError(
        f"{what} takes {'at least ' if at_least else ''}{size} bytes encoded, over this node's "
        f"max_request_bytes={limit} "
        "(a key and its value together; the paxos setting max_request_bytes raises it)"
    )


def check_length(value: Any, limit: int, what: str, *, already: int = 0) -> None:
    """ValueError if ``value`` is certain not to fit, judged by its length alone (no encoding)."""
    if isinstance(value, _SIZED) and already + len(value) > limit:
        raise too_large(what, already + len(value), limit, at_least=True)


def encode_within(value: Any, limit: int, what: str, *, already: int = 0) -> bytes:
    """``value`` encoded, if it fits in ``limit`` with ``already`` bytes spent; else ValueError.

    TypeError (from the wire codec) if it cannot be encoded at all.
    """
    check_length(value, limit, what, already=already)
    data = encode(value)
    if already + len(data) > limit:
        raise too_large(what, already + len(data), limit)
    return data
