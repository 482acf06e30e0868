"""The size bound of a PaxosKV request: checked in the caller, before any work.

A key and its value travel in every message of a round and land in every
voter's log. `PaxosConfig.max_request_bytes` (1.5 MiB by default) bounds them
together, so that no caller can make the node's one loop encode, send, decode
and fsync tens of megabytes while leases wait on it.

A refusal must cost next to nothing whatever its size: the node's loop runs
the caller, and every lease on the node waits while it does. `check_length`
therefore sums what the lengths inside a value promise (a str or bytes of n
takes at least n bytes, any item at least one) without encoding or hashing
anything, looking at no more than `WALK_ITEMS` items; `encode_within` encodes
(once) only a value that this look could not refuse.
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.node import current_node
from paxtor.actors.wire import encode, registered_fields
from paxtor.paxos.config import MAX_REQUEST_BYTES
from paxtor.paxos.paxos_node import open_paxos_node

__all__ = ["WALK_ITEMS", "node_request_limit", "check_length", "encode_within", "size_at_least", "too_large"]

#: The most items `size_at_least` looks into (tens of microseconds); the rest count one byte each.
WALK_ITEMS = 256

_TEXT = (str, bytes, bytearray)
_SEQUENCES = (tuple, list, set, frozenset)
_SCALARS = frozenset((int, float, bool, type(None)))  # nothing to look into: one byte at least


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


def size_at_least(value: Any, stop_above: int) -> int:
    """A lower bound of ``value``'s encoded size, from lengths alone (no encoding, no hashing).

    Every value takes at least one byte, a str or bytes of n at least n more.
    Tuples, lists, sets, frozensets, dicts and registered dataclasses are
    looked into, `WALK_ITEMS` items at most (the items not looked at count
    one byte each); the sum stops growing once it passes ``stop_above``.
    """
    total = 0
    budget = WALK_ITEMS
    todo = [value]
    while todo and total <= stop_above:
        item = todo.pop()
        total += 1
        if item.__class__ in _SCALARS:
            continue
        if isinstance(item, _TEXT):
            total += len(item)
            continue
        if isinstance(item, memoryview):
            total += item.nbytes
            continue
        if isinstance(item, _SEQUENCES):
            items: Any = item
        elif isinstance(item, dict):
            items = [*item.keys(), *item.values()] if 2 * len(item) <= budget else range(2 * len(item))
        else:
            fields = registered_fields(item.__class__)
            if fields is None:
                continue
            items = [getattr(item, f) for f in fields]  # a registered dataclass: its fields travel
        if len(items) <= budget:
            todo.extend(items)
            budget -= len(items)
        else:
            total += len(items)  # not looked into: one byte each at least
    return total


def check_length(value: Any, limit: int, what: str, *, already: int = 0) -> None:
    """ValueError if ``value`` is certain not to fit, judged by the lengths inside it (`size_at_least`)."""
    size = already + size_at_least(value, limit - already)
    if size > limit:
        raise too_large(what, size, limit, at_least=True)


def encode_within(value: Any, limit: int, what: str, *, already: int = 0) -> bytes:
    """``value`` encoded, if it fits in ``limit`` with ``already`` bytes spent; else ValueError.

    A value that its lengths show to be too large is refused without being
    encoded (`check_length`). TypeError (from the wire codec) if it cannot be
    encoded at all.
    """
    check_length(value, limit, what, already=already)
    data = encode(value)
    if already + len(data) > limit:
        raise too_large(what, already + len(data), limit)
    return data
