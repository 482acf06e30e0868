"""Pending handshakes under a flood, and their failures in the log (pure: no sockets, no clock).

A listener holds every connection that has not authenticated yet for up to
`handshake_timeout` seconds. A host without the cookie can open them faster
than they time out; refusing newcomers once the slots are full then shuts
out the legitimate peers too (a flood of junk delayed a client's join by
over ten seconds). Instead a newcomer is always taken, and room is made by
dropping pending handshakes, chosen so that a flood evicts its own:

- a source (IP address) holds at most `max_per_source` pending handshakes:
  its own oldest makes room for its newcomer;
- at most `max_pending` in all: the source holding the most gives up one;
- within a source, a connection that has not even said Hello goes first, then
  the oldest. A peer that knows the cookie says Hello at once and finishes in
  two round trips, so it is rarely the one chosen.

`FailureTally` keeps the log readable under the same flood: the first failure
of a kind (bad_cookie, handshake_timeout, ...) from a source in an interval
is logged in full; the others are counted and summed up in one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Pending", "choose_evictions", "FailureTally", "Suppressed", "failure_kind"]


@dataclass(frozen=True, slots=True)
class Pending:
    """A handshake in progress: `key` names it, `order` says which came first."""

    key: Any  # what names the handshake to its owner (a connection)
    source: str
    order: int
    greeted: bool  # its Hello has arrived


def _victim(candidates: list[Pending]) -> Pending:
    """The silent first, then the oldest."""
    return min(candidates, key=lambda p: (p.greeted, p.order))


def choose_evictions(
    pending: Iterable[Pending], source: str, *, max_pending: int, max_per_source: int
) -> list[Any]:
    """The keys of the pending handshakes to drop so that a newcomer from `source` fits."""
    left = list(pending)
    evict: list[Any] = []

    def drop(victim: Pending) -> None:
        left.remove(victim)
        evict.append(victim.key)

    same = [p for p in left if p.source == source]
    while same and len(same) >= max_per_source:
        victim = _victim(same)
        same.remove(victim)
        drop(victim)
    while left and len(left) >= max_pending:
        by_source: dict[str, list[Pending]] = {}
        for p in left:
            by_source.setdefault(p.source, []).append(p)
        largest = max(by_source.values(), key=lambda group: (len(group), -min(p.order for p in group)))
        drop(_victim(largest))
    return evict


def failure_kind(reason: str) -> str:
    """The kind of a handshake failure reason (``"bad_cookie: ..."`` -> ``"bad_cookie"``)."""
    return reason.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Failures of one kind from one source that were counted, not logged."""

    source: str
    kind: str
    count: int
    since: float
    last_reason: str


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0
    last_reason: str = ""


@dataclass
class FailureTally:
    """Rate-limits the log of failed handshakes: one line per (source, kind) per `interval`,
    then one summary of what was held back. At most `max_sources` windows are kept; past
    that, new sources share one under the source ``"other"``."""

    interval: float = 10.0
    max_sources: int = 1024
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)

    def record(self, source: str, reason: str, now: float) -> tuple[bool, Suppressed | None]:
        """A failure at `now`: (whether to log it in full, the previous window's summary if it
        just ended with failures held back)."""
        kind = failure_kind(reason)
        slot = (source, kind)
        if slot not in self._windows and len(self._windows) >= self.max_sources:
            slot = ("other", kind)
        window = self._windows.get(slot)
        if window is not None and now - window.start < self.interval:
            window.count += 1
            window.last_reason = reason
            return False, None
        self._windows[slot] = _Window(now)
        return True, self._summary(slot, window)

    def flush(self, now: float) -> list[Suppressed]:
        """Summaries of the windows that ended by `now`; those windows are forgotten."""
        ended = [slot for slot, w in self._windows.items() if now - w.start >= self.interval]
        summaries = [self._summary(slot, self._windows.pop(slot)) for slot in ended]
        return [s for s in summaries if s is not None]

    def drain(self) -> list[Suppressed]:
        """Every summary still held (the listener stops)."""
        summaries = [self._summary(slot, w) for slot, w in self._windows.items()]
        self._windows.clear()
        return [s for s in summaries if s is not None]

    @staticmethod
    def _summary(slot: tuple[str, str], window: _Window | None) -> Suppressed | None:
        if window is None or window.count == 0:
            return None
        return Suppressed(slot[0], slot[1], window.count, window.start, window.last_reason)
