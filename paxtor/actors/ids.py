"""Process and reference identifiers: values that name a process or a request
anywhere in the cluster, hashable, ordered and safe to send over the wire.

A `Pid` is (node name, node incarnation, serial). The incarnation changes at
every start of a node, so a pid of an earlier incarnation names a dead process
and never a new one (Erlang's "creation"). A `Ref` has the same shape and is
unique per node incarnation, like `make_ref()`.

Both are treated as immutable; do not assign to their fields.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pid", "Ref"]


class _Id:
    """Shared shape of Pid and Ref: equality is by type and fields."""

    __slots__ = ("node", "incarnation", "serial", "_hash")

    node: str
    incarnation: int
    serial: int

    def __init__(self, node: str, incarnation: int, serial: int) -> None:
        self.node = node
        self.incarnation = incarnation
        self.serial = serial
        self._hash = 0  # computed on first use: most refs are never hashed


    def _key(self) -> tuple[str, int, int]:
        return (self.node, self.incarnation, self.serial)

    def __hash__(self) -> int:
        h = self._hash
        if not h:
            h = self._hash = hash((type(self).__name__, self.node, self.incarnation, self.serial)) or 1
        return h

    def __eq__(self, other: Any) -> bool:
        if self is other:
            return True
        if type(other) is not type(self):
            return NotImplemented
        return (
            self.serial == other.serial
            and self.incarnation == other.incarnation
            and self.node == other.node
        )

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __lt__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() >= other._key()

    def __reduce__(self) -> tuple[Any, tuple[str, int, int]]:
        return (type(self), self._key())


class Pid(_Id):
    """A process identifier, printed as ``<node.incarnation.serial>``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{self.node}.{self.incarnation}.{self.serial}>"


class Ref(_Id):
    """A reference unique per node incarnation (monitors, calls, timers)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.incarnation}.{self.serial}>"
