"""Where the log's write+fsync runs: in the hub while the disk is fast, else on a thread of its own.

On a loaded node the hand-off to a thread and back (an OS wake-up, the GIL,
a wake-up of the hub) costs about as much as a fast fsync itself, so while
the running average of recent syncs stays under `INLINE_SYNC_LIMIT` they run
in the hub. One slow fsync moves later ones to the log's `SyncThread`, so the
hub keeps serving (lease heartbeats, other keys) while the disk is slow; they
move back only once the average has fallen under ``SYNC_BACK_BELOW`` of the
limit and at least `SYNC_DWELL` syncs ran on the thread (`SyncPlacement`:
without that margin, a disk hovering near the limit would move them back and
forth every few syncs).
"""

from __future__ import annotations

from collections.abc import Callable

import gevent.hub
from gevent.hub import Waiter
from gevent.monkey import get_original

__all__ = ["INLINE_SYNC_LIMIT", "SYNC_BACK_BELOW", "SYNC_DWELL", "SyncPlacement", "SyncThread"]

# real OS threads and locks even if the application monkey-patched the stdlib
_start_thread, _allocate_lock = get_original("_thread", ["start_new_thread", "allocate_lock"])

#: Seconds per write+fsync (running average) at which syncs move to the thread.
INLINE_SYNC_LIMIT = 0.002
_SYNC_AVERAGE_WEIGHT = 0.2  # of the newest fsync in the running average
#: Syncs on the thread before they may move back to the hub, and how far under the limit
#: the average must be by then (hysteresis: see `SyncPlacement`).
SYNC_DWELL = 16
SYNC_BACK_BELOW = 0.5


class SyncPlacement:
    """Where the log's write+fsync runs: in the hub (``inline``) or on the sync thread (pure).

    To the thread as soon as the running average of recent syncs reaches
    `limit`; back to the hub once it is under ``limit * SYNC_BACK_BELOW`` and
    at least `SYNC_DWELL` syncs ran on the thread since the move.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.average = 0.0  # seconds per write+fsync, recent ones weighted most
        self.inline = limit > 0
        self._since_move = 0

    def observe(self, took: float) -> bool:
        """Account one sync that took `took` seconds; True if the placement moved."""
        self.average += _SYNC_AVERAGE_WEIGHT * (took - self.average)
        self._since_move += 1
        if self.inline:
            move = self.average >= self.limit
        else:
            move = self.average < self.limit * SYNC_BACK_BELOW and self._since_move >= SYNC_DWELL
        if move:
            self.inline = not self.inline
            self._since_move = 0
        return move


class SyncThread:
    """One OS thread that runs the log's write+fsync calls, one at a time.

    Not the hub's threadpool: its hand-off (queue, worker wake-up,
    AsyncResult) costs about as much CPU per call as an fsync; this one is a
    lock to wake the thread and an async watcher to wake the hub. Only one
    greenlet (the log's writer) may call `apply`.
    """

    def __init__(self, hub: gevent.hub.Hub) -> None:
        self._go = _allocate_lock()
        self._go.acquire()
        self._job: tuple[Callable[..., object], tuple[object, ...]] | None = None
        self._result: tuple[bool, object] = (True, None)
        self._waiter: Waiter | None = None
        self._done = hub.loop.async_()
        self._done.start(self._on_done)
        self._done.ref = False  # an idle log must not keep the hub's loop alive
        _start_thread(self._run, ())

    def apply(self, function: Callable[..., object], args: tuple[object, ...]) -> object:
        """Run `function(*args)` in the thread; this greenlet waits, the hub runs on."""
        waiter = self._waiter = Waiter()
        self._job = (function, args)
        self._done.ref = True  # a job in flight keeps the loop alive
        self._go.release()
        try:
            waiter.get()  # switched back by _on_done, even if the thread finished first
        finally:
            self._waiter = None  # killed while waiting: the late wake-up goes nowhere
            self._done.ref = False
        ok, value = self._result
        if not ok:
            raise value  # type: ignore[misc]
        return value

    def stop(self) -> None:
        """Let the thread exit (after a job in flight) and stop waking the hub.

        The watcher is left to the garbage collector, not closed: a job still
        in flight (the writer was killed) signals it once more.
        """
        self._job = None
        try:
            self._go.release()
        except RuntimeError:  # a job not yet picked up: the thread finds None and exits
            pass
        self._done.stop()

    def _on_done(self) -> None:  # in the hub
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(None)

    def _run(self) -> None:  # in the thread
        while True:
            self._go.acquire()
            job = self._job
            if job is None:
                return
            function, args = job
            try:
                self._result = (True, function(*args))
            except BaseException as error:  # noqa: BLE001 - handed to the writer greenlet
                self._result = (False, error)
            self._done.send()
