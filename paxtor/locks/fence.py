"""The resource side of fencing: reject work carrying an outdated lock token.

A lock holder can be paused (a hub that does not yield, a long GC) past the
moment its lock passes on; it then still *believes* it holds the lock. The
lock's fencing token (`paxtor.lock` returns the key's epoch, which only grows)
lets the resource tell: it remembers the highest token it has accepted per
key and refuses any older one (Kleppmann, "How to do distributed locking").
"""

from __future__ import annotations

from collections.abc import Hashable

from paxtor.actors.errors import PaxtorError

__all__ = ["Fence", "StaleToken"]


class StaleToken(PaxtorError):
    """A token older than one already accepted for the same key."""

    def __init__(self, key: Hashable, token: int, highest: int) -> None:
        super().__init__(f"stale fencing token {token} for {key!r}: {highest} was already accepted")
        self.key = key
        self.token = token
        self.highest = highest


class Fence:
    """Remembers the highest fencing token seen per key; refuses older ones.

    Equal tokens pass (one holder may write several times in one tenure);
    newer ones pass and become the bar. One `Fence` guards one resource.
    """

    def __init__(self) -> None:
        self._highest: dict[Hashable, int] = {}

    def check(self, key: Hashable, token: int) -> None:
        """Accept `token` for `key`, or raise `StaleToken` if a newer one was accepted."""
        if type(token) is not int or token < 0:
            raise TypeError(f"a fencing token is an int >= 0, got {token!r}")
        highest = self._highest.get(key)
        if highest is not None and token < highest:
            raise StaleToken(key, token, highest)
        self._highest[key] = token

    def highest(self, key: Hashable) -> int | None:
        """The highest token accepted for `key` so far (None if none)."""
        return self._highest.get(key)

    def __repr__(self) -> str:
        return f"<Fence keys={len(self._highest)}>"
