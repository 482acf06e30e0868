"""Wake-ups and flushes run at the end of a chunk read in the hub, not as loop callbacks.

A frame read in the hub (`paxtor.actors.reader`) usually wakes one process
parked in receive, which answers with a frame to write. Scheduled as loop
callbacks, that is two trips through gevent's loop on each side of a remote
call. While the reader applies a chunk it `collect`s instead: a mailbox's
wake-up and a writer's flush are queued here, and `run` calls them right
after the chunk's last frame is applied, still in the same hub callback
(wake-ups first, in the order they were asked for; then the flushes, which
include what the woken processes sent).

Nothing runs earlier than it would have: every frame of the chunk is applied
before any process it woke runs, as with callbacks. A wake-up asked for while
`run` is waking processes (a woken process sending to a local one) is a loop
callback again, so one chunk can never keep the hub from its loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["HubBatch", "hub_batch"]

_ATTR = "_paxtor_hub_batch"


class HubBatch:
    """One per hub: what to call once the chunk being applied is done (see the module docstring)."""

    __slots__ = ("wakes", "flushes", "_loop")

    def __init__(self, loop: Any) -> None:
        self.wakes: list[Callable[[], None]] | None = None
        """Wake-ups to run at the end of the chunk; None: not collecting (use a loop callback)."""
        self.flushes: list[Callable[[], None]] | None = None
        """Writer flushes to run at the end of the chunk; None: not collecting."""
        self._loop = loop

    def wake(self, fn: Callable[[], None]) -> None:
        """Run `fn` (a parked process's wake-up) at the end of this chunk, or as a loop callback."""
        wakes = self.wakes
        if wakes is None:
            self._loop.run_callback(fn)
        else:
            wakes.append(fn)

    def flush(self, fn: Callable[[], None]) -> None:
        """Run `fn` (a writer's flush) at the end of this chunk, or as a loop callback."""
        flushes = self.flushes
        if flushes is None:
            self._loop.run_callback(fn)
        else:
            flushes.append(fn)

    def collect(self) -> bool:
        """Start collecting (in the hub, before applying a chunk); False if already collecting."""
        if self.wakes is not None:
            return False
        self.wakes = []
        self.flushes = []
        return True

    def run(self) -> None:
        """The chunk is applied: wake the processes it woke, then write what they (and it) queued.

        An exception from one of them goes where a loop callback's would
        (the hub's error handler), never into the reader.
        """
        wakes = self.wakes
        self.wakes = None
        if wakes:
            for fn in wakes:
                self._call(fn)
        flushes = self.flushes
        self.flushes = None
        if flushes:
            for fn in flushes:
                self._call(fn)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException:
            self._loop.handle_error(fn, *sys.exc_info())


def hub_batch(hub: Any) -> HubBatch:
    """The batch of `hub` (made on first use)."""
    batch = getattr(hub, _ATTR, None)
    if batch is None:
        batch = HubBatch(hub.loop)
        setattr(hub, _ATTR, batch)
    return batch
