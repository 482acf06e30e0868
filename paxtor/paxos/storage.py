"""The durable acceptor log: an append-only record log with group commit.

An acceptor must persist each promise/accept BEFORE it replies, or a restart
could make it vote twice (Paxos amnesia). This module stores opaque `bytes`
records for it (the caller encodes them) and tells it when they are durable.

- Group commit: `append` only buffers. One writer greenlet writes the whole
  pending batch with one write+`fsync`, then fires the callbacks of every
  record in that batch, in append order. Many keys' records share one fsync.
- When a batch is committed: once the hub has run everything that is ready
  (an idle watcher), at most `settle_limit` (0.5 ms) after the writer woke.
  The records of messages that already arrived then join this batch instead
  of waiting a whole fsync for the next one: with eight lock clients on
  distinct keys a batch held 1.6-2.3 records without this, 2.1-3.2 with it. The
  cap keeps a node whose loop never goes idle (a busy greenlet) from
  starving its acceptor; an idle node commits at once.
- Where the fsync runs: in the hub itself while the disk is fast (the
  running average of recent syncs under `inline_sync_limit`, 2 ms by
  default), else on the log's own sync thread (`_SyncThread`) so that the
  hub keeps serving (lease heartbeats, other keys) while the disk is slow.
  On a loaded node the hand-off to a thread and back (an OS wake-up, the
  GIL, a wake-up of the hub) cost about as much as a fast fsync itself and
  capped the node's rounds per second; blocking the hub for a fraction of a
  millisecond costs less. One slow fsync moves later ones to the thread
  (the hub must not wait on a slow disk twice); they move back only once
  the average has fallen under half the limit and at least `SYNC_DWELL`
  syncs ran on the thread (`SyncPlacement`: without that margin, a disk
  hovering near the limit moved them back and forth every few syncs).
  ``inline_sync_limit=0`` keeps every fsync on the thread.
- Fail-stop: if a write or fsync fails (ENOSPC, EIO), no callback of the
  failed batch or any later one fires, the log logs `acceptor_log_failed` and
  every further `append` raises `AcceptorLogFailed`. An acceptor that cannot
  persist must stop voting. A failed fsync is never retried: after one the
  kernel may already have dropped the dirty pages, and what a read of the
  file shows past the last successful fsync proves nothing.
- Resuming (`resume`): the caller hands over its whole state, and the log
  makes it durable without trusting anything written since the last
  successful fsync. It cuts the current segment back to the end of that
  fsync (the acknowledged records) and syncs the cut, removes what failed
  rotations or earlier attempts left past it, starts a new segment <g+1>
  and installs snapshot <g+1> of the state, as a compaction does; then it
  takes appends again. A crash at any step leaves a directory that replays
  to the acknowledged records, or to the whole state; nothing acknowledged
  is ever lost, and the records of the failed batches were never
  acknowledged. If the disk still refuses, the log stays failed.
- Replay (`open` then `records()`): the snapshot, then the segments after it.
  A torn tail of the LAST segment (a bad or partial frame with nothing valid
  after it: the crash cut the last batch, whose callbacks never fired) is cut
  off, logged as `acceptor_log_truncated`, and never replayed. A bad frame
  FOLLOWED by valid ones is different: those later records were written after
  it and may have been acknowledged, and a replay that skipped the bad one
  could forget a promise the acceptor made, so `open` refuses with
  `AcceptorLogCorrupt` and leaves the files as they are for an operator. (The
  one case where this is over-cautious: a power cut that persisted a later
  page of the very last batch but not an earlier one.)
- Compaction (`compact`): appends from then on go to a new segment <g> while,
  in the background, the caller's snapshot is written to a temp file, fsync'd,
  renamed to snapshot <g>, the directory fsync'd, and the older files deleted.
  A crash at any point leaves a directory that replays to the same records.
  When to compact is the caller's call (it holds the state to snapshot);
  `should_compact` offers the usual heuristic.
- `durability="memory"`: nothing touches the disk; callbacks fire on the next
  loop turn. For tests only: a voter restarted with it has forgotten its
  promises (`memory_durability_unsafe_on_restart` is logged at every open).

The file format is pure and lives in `log_format.py`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gevent
import gevent.event
import structlog
from gevent.hub import Waiter
from gevent.monkey import get_original

from paxtor.paxos.log_format import (
    HEADER_SIZE,
    KIND_SEGMENT,
    KIND_SNAPSHOT,
    TMP_SUFFIX,
    FileHeader,
    LogCorrupt,
    ParsedFile,
    encode_header,
    encode_record,
    generation_of,
    parse_file,
    plan_layout,
    segment_name,
    snapshot_name,
)

__all__ = [
    "AcceptorLog",
    "AcceptorLogClosed",
    "AcceptorLogCorrupt",
    "AcceptorLogError",
    "AcceptorLogFailed",
    "Durability",
    "SyncPlacement",
    "Ticket",
    "SYNC_BUCKETS",
    "fsync_directory",
    "make_directory_durably",
]

log = structlog.get_logger(__name__)

# real OS threads and locks even if the application monkey-patched the stdlib
_start_thread, _allocate_lock = get_original("_thread", ["start_new_thread", "allocate_lock"])

Durability = Literal["fsync", "memory"]
_LOCK_FILE = "LOCK"

INLINE_SYNC_LIMIT = 0.002
SETTLE_LIMIT = 0.0005
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


#: upper bounds (seconds) of the write+fsync latency histogram (`AcceptorLog.sync_histogram`)
SYNC_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AcceptorLogError(Exception):
    """Base of the acceptor log's errors."""


class AcceptorLogCorrupt(AcceptorLogError):
    """The files on disk cannot be replayed without losing acknowledged records."""


class AcceptorLogFailed(AcceptorLogError):
    """A write or fsync failed: nothing more is durable, the acceptor must stop voting."""


class AcceptorLogClosed(AcceptorLogError):
    """The log was closed."""


class _Completion:
    """Something the writer or the compactor finishes, successfully or not."""

    __slots__ = ("event", "error")

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self.error: BaseException | None = None

    def complete(self) -> None:
        self.event.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.event.set()


class _Batch(_Completion):
    """Records appended between two writes: they share one write and one fsync."""

    __slots__ = ("frames", "callbacks")

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []
        self.callbacks: list[Callable[[], None] | None] = []


class _Rotation(_Completion):
    """A marker in the write queue: later appends go to a new segment."""

    __slots__ = ("generation",)

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0


class Ticket:
    """The durability of one append (or the completion of one compaction)."""

    __slots__ = ("_completion",)

    def __init__(self, completion: _Completion) -> None:
        self._completion = completion

    @property
    def done(self) -> bool:
        """True once durable, or failed."""
        return self._completion.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block this greenlet until durable: True; False on timeout.

        Raises `AcceptorLogFailed` if the log failed before making it durable.
        """
        if not self._completion.event.wait(timeout):
            return False
        if self._completion.error is not None:
            raise self._completion.error
        return True


class _Settle:
    """Wait until the hub has nothing ready to run, or `limit` seconds, whichever comes first.

    The watchers are made once and reused: the writer settles before every batch.
    """

    def __init__(self, hub: gevent.hub.Hub, limit: float) -> None:
        self._idle = hub.loop.idle()
        self._cap = hub.loop.timer(limit)

    def wait(self) -> None:
        waiter = Waiter()
        self._idle.start(waiter.switch, None)
        self._cap.start(waiter.switch, None)
        try:
            waiter.get()
        finally:
            self._idle.stop()
            self._cap.stop()


class _SyncThread:
    """One OS thread that runs the log's write+fsync calls, one at a time.

    Why not the hub's threadpool: its hand-off (queue, worker wake-up,
    AsyncResult) cost ~120 us of CPU per call here, about one fsync; this one
    is a lock to wake the thread and an async watcher to wake the hub.
    Only one greenlet (the log's writer) may call `apply`.
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
            except BaseException as error:  # handed to the writer greenlet
                self._result = (False, error)
            self._done.send()


@dataclass
class _Recovered:
    records: list[bytes]
    generation: int  # the active segment
    fd: int  # open for appending to it
    segment_bytes: dict[int, int]  # record bytes per live segment
    snapshot_bytes: int


class AcceptorLog:
    """An append-only log of opaque records with group commit; see the module docstring.

    Use `AcceptorLog.open(...)`. All methods are for greenlets of the hub that
    opened it. `fsync`, `write` and `step_hook` are fault-injection points:
    tests pass a failing fsync, or a hook that copies the directory after each
    compaction step as a crash would leave it.
    """

    def __init__(
        self,
        *,
        durability: Durability,
        directory: Path | None,
        recovered: _Recovered | None,
        lock_fd: int | None,
        fsync: Callable[[int], None],
        write: Callable[[int, memoryview], int],
        on_failure: Callable[[AcceptorLogFailed], None] | None,
        step_hook: Callable[[str], None] | None,
        inline_sync_limit: float = INLINE_SYNC_LIMIT,
        settle_limit: float = SETTLE_LIMIT,
    ) -> None:
        self.durability: Durability = durability
        self.directory = directory
        self.fsync_count = 0  # fsyncs of appended records (one per batch)
        self._fsync = fsync
        self._write = write
        #: called (in the writer greenlet) when a write or fsync fails; may be set after open
        self.on_failure = on_failure
        self._step_hook = step_hook
        self._lock_fd = lock_fd
        self._records: list[bytes] = recovered.records if recovered else []
        self._generation = recovered.generation if recovered else 0
        self._fd = recovered.fd if recovered else None
        self._segment_bytes = recovered.segment_bytes if recovered else {}
        self._snapshot_bytes = recovered.snapshot_bytes if recovered else 0
        self._queue: deque[_Batch | _Rotation] = deque()
        self._failure: AcceptorLogFailed | None = None
        self._closing = False
        self._closed = False
        self._compaction: gevent.Greenlet | None = None
        self._hub = gevent.get_hub()
        self._wakeup = gevent.event.Event()
        self._sync_thread = _SyncThread(self._hub) if durability == "fsync" else None
        self._settle = _Settle(self._hub, settle_limit) if durability == "fsync" and settle_limit > 0 else None
        self._placement = SyncPlacement(inline_sync_limit)
        #: batches per latency bucket (`SYNC_BUCKETS`, the last one: over them all), and their total seconds
        self.sync_histogram = [0] * (len(SYNC_BUCKETS) + 1)
        self.sync_seconds = 0.0
        self._writer = gevent.spawn(self._run_writer)

    # --- opening and replay -------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str] | None,
        durability: Durability = "fsync",
        *,
        fsync: Callable[[int], None] = os.fsync,
        write: Callable[[int, memoryview], int] = os.write,
        on_failure: Callable[[AcceptorLogFailed], None] | None = None,
        step_hook: Callable[[str], None] | None = None,
        inline_sync_limit: float = INLINE_SYNC_LIMIT,
        settle_limit: float = SETTLE_LIMIT,
    ) -> AcceptorLog:
        """Open (creating if needed) the log in `directory` and replay it.

        Blocks the hub while it reads: call it before the node serves. Raises
        `AcceptorLogCorrupt` rather than replay a damaged log, and
        `AcceptorLogError` if another log holds the directory.
        """
        if durability not in ("fsync", "memory"):
            raise ValueError(f"durability must be 'fsync' or 'memory', got {durability!r}")
        options = dict(
            fsync=fsync,
            write=write,
            on_failure=on_failure,
            step_hook=step_hook,
            inline_sync_limit=inline_sync_limit,
            settle_limit=settle_limit,
        )
        if durability == "memory":
            log.warning(
                "memory_durability_unsafe_on_restart",
                detail="acceptor state is not persisted: if this voter restarts it forgets "
                "its promises and may break consensus",
            )
            return cls(durability="memory", directory=None, recovered=None, lock_fd=None, **options)
        if directory is None:
            raise ValueError("durability='fsync' needs a directory")
        path = Path(directory)
        make_directory_durably(path, fsync)
        lock_fd = _lock_directory(path)
        try:
            recovered = _recover(path, fsync)
        except BaseException:
            os.close(lock_fd)
            raise
        log.info(
            "acceptor_log_opened",
            directory=str(path),
            records=len(recovered.records),
            segment=recovered.generation,
        )
        return cls(durability="fsync", directory=path, recovered=recovered, lock_fd=lock_fd, **options)

    def records(self) -> Iterator[bytes]:
        """The records replayed at open, in append order (later appends not included)."""
        return iter(self._records)

    # --- appending ----------------------------------------------------------

    def append(self, record: bytes, on_durable: Callable[[], None] | None = None) -> Ticket:
        """Queue `record`; `on_durable` runs (in the writer greenlet) once it is on disk.

        Callbacks fire in append order and must not block. Raises
        `AcceptorLogFailed` after a write failure, `AcceptorLogClosed` after
        `close`, `TypeError`/`ValueError` for a non-bytes or oversized record.
        """
        self._check_usable()
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"records are bytes, got {type(record).__name__}")
        frame = encode_record(bytes(record))
        batch = self._open_batch()
        batch.frames.append(frame)
        batch.callbacks.append(on_durable)
        self._wakeup.set()
        return Ticket(batch)

    def append_many(self, records: Sequence[bytes], on_durable: Callable[[], None] | None = None) -> Ticket:
        """`append` each of `records` in order, `on_durable` once the last is on disk: for
        records nothing waits on one by one (a voter that caught up adopts them all at once)."""
        self._check_usable()
        frames = _frames(records)
        batch = self._open_batch()
        batch.frames.extend(frames)
        batch.callbacks.extend([None] * len(frames))
        batch.callbacks.append(on_durable)
        self._wakeup.set()
        return Ticket(batch)

    def _open_batch(self) -> _Batch:
        last = self._queue[-1] if self._queue else None
        if isinstance(last, _Batch):
            return last
        batch = _Batch()
        self._queue.append(batch)
        return batch

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise AcceptorLogFailed(str(self._failure)) from self._failure.__cause__
        if self._closing:
            raise AcceptorLogClosed("the acceptor log is closed")

    @property
    def failure(self) -> AcceptorLogFailed | None:
        """Why the log stopped accepting appends, or None while it is healthy."""
        return self._failure

    # --- the writer ---------------------------------------------------------

    def _run_writer(self) -> None:
        """Commit queued batches one by one until closed or failed."""
        try:
            while True:
                while not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    self._wakeup.wait()
                if self._settle is not None and isinstance(self._queue[0], _Batch):
                    self._settle.wait()  # the records the hub is about to append join this batch
                item = self._queue.popleft()
                try:
                    if isinstance(item, _Rotation):
                        self._rotate(item)
                    else:
                        self._commit(item)
                except Exception as error:  # a write, fsync or file creation failed
                    self._enter_failed(error, item)
                    return
                if isinstance(item, _Batch):
                    _fire_callbacks(item)
        finally:
            if self._sync_thread is not None:
                self._sync_thread.stop()
                self._sync_thread = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _commit(self, batch: _Batch) -> None:
        if self.durability == "fsync" and batch.frames:
            data = b"".join(batch.frames)
            self._sync(data)
            self.fsync_count += 1
            self._segment_bytes[self._generation] += len(data)
        batch.complete()

    def _sync(self, data: bytes) -> None:
        """Write and fsync ``data``: in the hub while the disk is fast, else on the sync thread."""
        placement = self._placement
        if placement.inline:
            took = self._timed_write_and_sync(self._fd, data)
        else:
            assert self._sync_thread is not None
            took = self._sync_thread.apply(self._timed_write_and_sync, (self._fd, data))
        self.sync_histogram[bisect_left(SYNC_BUCKETS, took)] += 1  # type: ignore[arg-type]
        self.sync_seconds += took  # type: ignore[operator]
        if placement.observe(took):  # type: ignore[arg-type]
            log.info(
                "acceptor_log_sync_moved",
                directory=str(self.directory),
                to="hub" if placement.inline else "sync_thread",
                average_ms=round(placement.average * 1e3, 3),
            )

    def _timed_write_and_sync(self, fd: int, data: bytes) -> float:
        """`_write_and_sync`, returning how long it took (measured where it ran)."""
        started = time.perf_counter()
        self._write_and_sync(fd, data)
        return time.perf_counter() - started

    def _write_and_sync(self, fd: int, data: bytes) -> None:
        """Write all of `data`, then fsync (in the hub, the sync thread or a threadpool thread)."""
        view = memoryview(data)
        while view:
            written = self._write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, f"write returned {written}")
            view = view[written:]
        self._fsync(fd)

    def _rotate(self, rotation: _Rotation) -> None:
        """Start segment <g+1> (durably) for every later append."""
        if self.durability == "fsync":
            generation = self._generation + 1
            fd = self._hub.threadpool.apply(_create_segment, (self.directory, generation, self._fsync))
            os.close(self._fd)
            self._fd, self._generation = fd, generation
            self._segment_bytes[generation] = 0
            self._step("segment_rotated")
        rotation.generation = self._generation
        rotation.complete()

    def _enter_failed(self, error: Exception, item: _Batch | _Rotation) -> None:
        failure = AcceptorLogFailed(f"acceptor log write failed, nothing more is durable: {error!r}")
        failure.__cause__ = error
        self._failure = failure
        log.error("acceptor_log_failed", directory=str(self.directory), error=repr(error))
        item.fail(failure)
        while self._queue:
            self._queue.popleft().fail(failure)
        if self.on_failure is not None:
            try:
                self.on_failure(failure)
            except Exception:
                log.exception("acceptor_log_failure_callback_failed")

    # --- resuming after a failure ---------------------------------------------

    def resume(self, snapshot: Iterable[bytes]) -> None:
        """After a failure: make `snapshot` (the caller's whole state now, as records) durable
        as a new generation, then take appends again (see the module docstring).

        Blocks the calling greenlet while files are written (the hub runs on).
        Raises the OSError if the disk still refuses: the log stays failed and
        this may be called again. Does nothing on a healthy log.
        """
        if self._failure is None:
            return
        if self._closing:
            raise AcceptorLogClosed("the acceptor log is closed")
        frames = _frames(snapshot)
        if self._compaction is not None:
            self._compaction.join()  # it fails with the log, or it finished: either way it is over
        self._writer.join()  # gone since the failure; it closed the segment and the sync thread
        generation = self._generation
        durable_end = HEADER_SIZE + self._segment_bytes.get(generation, 0)
        fd, size = self._hub.threadpool.apply(self._rebuild, (frames, generation, durable_end))
        if self._closing:  # closed while the files were written
            os.close(fd)
            raise AcceptorLogClosed("the acceptor log is closed")
        self._fd, self._generation = fd, generation + 1
        self._segment_bytes = {generation + 1: 0}
        self._snapshot_bytes = size
        self._placement = SyncPlacement(self._placement.limit)
        self._failure = None
        self._sync_thread = _SyncThread(self._hub)
        self._writer = gevent.spawn(self._run_writer)
        log.info("acceptor_log_resumed", directory=str(self.directory), generation=generation + 1,
                 records=len(frames), snapshot_bytes=size)

    def _rebuild(self, frames: list[bytes], generation: int, durable_end: int) -> tuple[int, int]:
        """In a threadpool thread: cut segment <generation> to `durable_end`, clear what lies past
        it, then segment and snapshot <generation + 1>. The new segment's fd and the snapshot size."""
        directory = self.directory
        assert directory is not None
        current = directory / segment_name(generation)
        if current.exists():
            fd = os.open(current, os.O_WRONLY)
            try:
                os.ftruncate(fd, durable_end)
                self._fsync(fd)
            finally:
                os.close(fd)
            self._step("resume_truncated")
        leftovers = [name for name in os.listdir(directory) if (generation_of(name) or 0) > generation]
        for name in leftovers:
            (directory / name).unlink(missing_ok=True)
        fsync_directory(directory, self._fsync)
        self._step("resume_cleared")
        fd = _create_segment(directory, generation + 1, self._fsync)
        try:
            self._step("segment_rotated")
            size = self._write_snapshot(frames, generation + 1)
        except BaseException:
            os.close(fd)
            raise
        try:  # the new generation is the durable state now; what it replaced is mere leftovers
            self._remove_obsolete()
        except OSError as error:
            log.warning("acceptor_log_leftovers_kept", directory=str(directory), error=repr(error))
        return fd, size

    # --- compaction ---------------------------------------------------------

    @property
    def compacting(self) -> bool:
        return self._compaction is not None

    @property
    def sync_average(self) -> float:
        """Recent seconds per write+fsync (a running average, newest batches weighted most)."""
        return self._placement.average

    @property
    def log_bytes(self) -> int:
        """Bytes of records in the segments a replay reads after the snapshot."""
        return sum(self._segment_bytes.values())

    @property
    def snapshot_bytes(self) -> int:
        return self._snapshot_bytes

    def should_compact(self, *, ratio: float = 4.0, min_log_bytes: int = 1 << 20) -> bool:
        """The usual heuristic: the log outgrew `ratio` snapshots (and a floor)."""
        return (
            self.durability == "fsync"
            and not self.compacting
            and self.log_bytes >= min_log_bytes
            and self.log_bytes > ratio * self._snapshot_bytes
        )

    def compact(self, snapshot: Iterable[bytes]) -> Ticket:
        """Replace everything appended so far by `snapshot`, in the background.

        `snapshot` must be the caller's full state as of now, as records whose
        replay rebuilds it; it is consumed before this returns. Appends made
        after this call land in a new segment and are replayed after it. The
        ticket completes when the old files are gone; a failed compaction
        logs `acceptor_log_compaction_failed`, fails the ticket and leaves the
        log as it was (still healthy).
        """
        self._check_usable()
        if self._compaction is not None:
            raise AcceptorLogError("a compaction is already running")
        frames = _frames(snapshot)
        done = _Completion()
        if self.durability == "memory":
            done.complete()
            return Ticket(done)
        rotation = _Rotation()
        self._queue.append(rotation)
        self._wakeup.set()
        self._compaction = gevent.spawn(self._run_compaction, frames, rotation, done)
        return Ticket(done)

    def _run_compaction(self, frames: list[bytes], rotation: _Rotation, done: _Completion) -> None:
        try:
            rotation.event.wait()
            if rotation.error is not None:
                raise rotation.error
            generation = rotation.generation
            size = self._hub.threadpool.apply(self._install_snapshot, (frames, generation))
        except Exception as error:
            log.error("acceptor_log_compaction_failed", directory=str(self.directory), error=repr(error))
            failure = AcceptorLogError(f"compaction failed: {error!r}")
            failure.__cause__ = error
            done.fail(failure)
        else:
            for old in [gen for gen in self._segment_bytes if gen < generation]:
                del self._segment_bytes[old]
            self._snapshot_bytes = size
            log.info("acceptor_log_compacted", generation=generation, records=len(frames), snapshot_bytes=size)
            done.complete()
        finally:
            self._compaction = None

    def _install_snapshot(self, frames: list[bytes], generation: int) -> int:
        """In a threadpool thread: write, fsync, rename, fsync dir, then delete older files."""
        size = self._write_snapshot(frames, generation)
        self._remove_obsolete()
        return size

    def _write_snapshot(self, frames: list[bytes], generation: int) -> int:
        """Snapshot <generation> in place, durably (temp file, fsync, rename, fsync dir); its size."""
        directory = self.directory
        assert directory is not None
        final = directory / snapshot_name(generation)
        temp = directory / (snapshot_name(generation) + TMP_SUFFIX)
        header = encode_header(FileHeader(KIND_SNAPSHOT, generation, len(frames)))
        data = header + b"".join(frames)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                self._write_and_sync(fd, data)
            finally:
                os.close(fd)
            self._step("snapshot_written")
            os.replace(temp, final)
            self._step("snapshot_renamed")
            fsync_directory(directory, self._fsync)
            self._step("snapshot_installed")
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return len(data)

    def _remove_obsolete(self) -> None:
        """Delete the files the newest snapshot replaced (a replay ignores them anyway)."""
        directory = self.directory
        assert directory is not None
        for name in plan_layout(os.listdir(directory)).obsolete:
            (directory / name).unlink(missing_ok=True)
            self._step(f"removed {name}")
        fsync_directory(directory, self._fsync)
        self._step("compaction_done")

    def _step(self, name: str) -> None:
        if self._step_hook is not None:
            self._step_hook(name)

    # --- closing ------------------------------------------------------------

    def close(self) -> None:
        """Make everything appended so far durable (callbacks fire), then stop.

        Waits for a running compaction. Must not be called from an
        `on_durable` callback (it would wait for itself).
        """
        if self._closed:
            return
        if gevent.getcurrent() is self._writer:
            raise AcceptorLogError("close() called from an on_durable callback")
        self._closing = True
        self._wakeup.set()
        self._writer.join()
        if self._compaction is not None:
            self._compaction.join()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._closed = True
        log.info("acceptor_log_closed", directory=str(self.directory))

    def __enter__(self) -> AcceptorLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _frames(records: Iterable[bytes]) -> list[bytes]:
    """A snapshot's records framed for a file; TypeError for a record that is not bytes."""
    frames = []
    for record in records:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"records are bytes, got {type(record).__name__}")
        frames.append(encode_record(bytes(record)))
    return frames


def _fire_callbacks(batch: _Batch) -> None:
    """Run a durable batch's callbacks in append order; one failing does not stop the rest."""
    for callback in batch.callbacks:
        if callback is None:
            continue
        try:
            callback()
        except Exception:
            log.exception("acceptor_log_callback_failed")


# --- files ------------------------------------------------------------------


def _lock_directory(directory: Path) -> int:
    """Hold an exclusive lock on the directory: two logs on one directory would corrupt it."""
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AcceptorLogError(f"{directory} is in use by another acceptor log") from None
    return fd


def fsync_directory(directory: Path, fsync: Callable[[int], None] = os.fsync) -> None:
    """Make renames, creations and deletions in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def make_directory_durably(directory: Path, fsync: Callable[[int], None] = os.fsync) -> None:
    """`mkdir -p`, fsyncing the parent of every directory it creates.

    Without it a crash soon after the first start could lose the directory
    entry itself, and with it every promise made since: amnesia.
    """
    missing = []
    path = directory.absolute()
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            pass
        fsync_directory(path.parent, fsync)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")


def _create_segment(directory: Path, generation: int, fsync: Callable[[int], None]) -> int:
    """Create segment <generation> with its header, durably; return it open for appending."""
    fd = os.open(directory / segment_name(generation), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    try:
        header = encode_header(FileHeader(KIND_SEGMENT, generation))
        if os.write(fd, header) != len(header):
            raise OSError(errno.EIO, "short write of a segment header")
        fsync(fd)
        fsync_directory(directory, fsync)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parse(path: Path, **checks: object) -> tuple[ParsedFile, int]:
    data = path.read_bytes()
    try:
        return parse_file(data, **checks), len(data)
    except LogCorrupt as error:
        raise AcceptorLogCorrupt(
            f"{path}: {error}. Refusing to start: replaying around it could forget "
            "acknowledged promises. Restore the directory or retire this voter."
        ) from error


def _recover(directory: Path, fsync: Callable[[int], None]) -> _Recovered:
    """Read and check every live file first; only then cut a torn tail and clean up."""
    try:
        layout = plan_layout(os.listdir(directory))
    except LogCorrupt as error:
        raise AcceptorLogCorrupt(f"{directory}: {error}. Refusing to start.") from error
    records: list[bytes] = []
    snapshot_bytes = 0
    if layout.snapshot is not None:
        parsed, snapshot_bytes = _parse(
            directory / snapshot_name(layout.snapshot),
            kind=KIND_SNAPSHOT,
            generation=layout.snapshot,
            tail_may_be_torn=False,
        )
        records.extend(parsed.records)
    segment_bytes: dict[int, int] = {}
    last: tuple[int, ParsedFile, int] | None = None
    for generation in layout.segments:
        parsed, size = _parse(
            directory / segment_name(generation),
            kind=KIND_SEGMENT,
            generation=generation,
            tail_may_be_torn=generation == layout.segments[-1],
        )
        records.extend(parsed.records)
        segment_bytes[generation] = max(parsed.good_end - HEADER_SIZE, 0)
        last = (generation, parsed, size)

    for name in layout.temporaries + layout.obsolete:
        (directory / name).unlink(missing_ok=True)
        log.info("acceptor_log_leftover_removed", file=str(directory / name))
    fd = _reopen_last_segment(directory, last, fsync)
    if fd is None:
        generation = layout.snapshot or 1
        if last is not None:
            generation = last[0]
            del segment_bytes[generation]
        fd = _create_segment(directory, generation, fsync)
        segment_bytes[generation] = 0
    else:
        generation = last[0]
    fsync_directory(directory, fsync)
    return _Recovered(records, generation, fd, segment_bytes, snapshot_bytes)


def _reopen_last_segment(
    directory: Path, last: tuple[int, ParsedFile, int] | None, fsync: Callable[[int], None]
) -> int | None:
    """Cut the last segment's torn tail and open it for appending; None if it must be recreated."""
    if last is None:
        return None
    generation, parsed, size = last
    path = directory / segment_name(generation)
    if parsed.torn is not None:
        log.warning(
            "acceptor_log_truncated",
            file=str(path),
            offset=parsed.good_end,
            dropped_bytes=size - parsed.good_end,
            reason=parsed.torn,
        )
    if parsed.header is None:  # torn while being created: holds nothing
        path.unlink()
        return None
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        if parsed.torn is not None:
            os.ftruncate(fd, parsed.good_end)
            fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd
