"""Where a singleton runs: rendezvous (highest random weight) hashing of its key.

Every node that sees the same set of nodes picks the same one, without any
coordination; when a node joins or leaves, only the keys that hash best to
that node move (Thaler and Ravishankar, 1998). Pure and deterministic: the
weights come from BLAKE2b, never from Python's salted ``hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["rendezvous_order", "weight"]


def weight(key: bytes, node: str) -> int:
    """The pseudo-random weight of `node` for `key` (the same on every machine)."""
    digest = hashlib.blake2b(key, digest_size=8, key=node.encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: bytes, nodes: Iterable[str]) -> list[str]:
    """`nodes` from the best home of `key` to the worst (ties broken by name)."""
    return sorted(set(nodes), key=lambda node: (-weight(key, node), node))
