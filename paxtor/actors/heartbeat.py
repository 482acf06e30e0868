"""Heartbeats of a node connection: an empty frame every interval, and the verdict on silence.

A connection up sends an empty frame every `heartbeat_interval` and declares
the peer dead after `heartbeat_timeout` without a byte from it (even if TCP
stays open), or when one write has been stuck that long. Both are counted in
ticks, not by the clock (`Liveness`, pure): if this node's own hub was
blocked (a long computation), the late tick counts once instead of making a
live peer look silent for the whole stall.
"""

from __future__ import annotations

from typing import Protocol

import gevent

from paxtor.actors.connection_config import UP
from paxtor.actors.framing import frame

__all__ = ["HEARTBEAT", "HeartbeatLink", "Liveness", "run_heartbeats"]

#: The heartbeat frame: an empty payload (its 4 header bytes).
HEARTBEAT = frame(b"")


class Liveness:
    """Silent and stalled ticks of one link, and when they mean the peer is gone (pure)."""

    __slots__ = ("interval", "limit", "silent", "stalled", "_received", "_writes")

    def __init__(self, interval: float, timeout: float, received: int = 0, writes: int = 0) -> None:
        self.interval = interval
        self.limit = max(1, round(timeout / interval))
        self.silent = self.stalled = 0
        self._received = received
        self._writes = writes

    def tick(self, received: int, writes: int, writing: bool) -> str | None:
        """One tick, given the chunks received and blocking writes done so far, and whether a
        write is under way: why the link is dead, or None while it lives."""
        self.silent = self.silent + 1 if received == self._received else 0
        self._received = received
        stuck = writing and writes == self._writes
        self.stalled = self.stalled + 1 if stuck else 0
        self._writes = writes
        if self.silent >= self.limit:
            return f"heartbeat_timeout: nothing received for {self.silent} ticks of {self.interval}s"
        if self.stalled >= self.limit:
            return f"send_stalled: a write blocked for {self.stalled} ticks of {self.interval}s"
        return None


class HeartbeatLink(Protocol):
    """What `run_heartbeats` needs of a connection."""

    state: str

    def liveness_counters(self) -> tuple[int, int, bool]:
        """Chunks received, blocking writes done, and whether a write is under way."""
        ...

    def send_heartbeat(self) -> None: ...

    def fail(self, reason: str) -> None: ...


def run_heartbeats(link: HeartbeatLink, liveness: Liveness) -> None:
    """While `link` is up: tick every interval, fail it when `liveness` says so, else beat."""
    interval = liveness.interval
    while link.state is UP:
        gevent.sleep(interval)
        verdict = liveness.tick(*link.liveness_counters())
        if verdict is not None:
            link.fail(verdict)
            return
        link.send_heartbeat()
