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
  of waiting a whole fsync for the next one (the README's Durability section
  gives the batch sizes measured). The cap keeps a node whose loop never
  goes idle (a busy greenlet) from starving its acceptor; an idle node
  commits at once.
- Where the fsync runs: in the hub while the disk is fast, else on the log's
  own sync thread (`paxtor.paxos.storage.sync_thread`).
  ``inline_sync_limit=0`` keeps every fsync on the thread.
- Space allocated ahead: the active segment's file is allocated `ALLOCATE_AHEAD`
  bytes past its end at a time (``posix_fallocate``), so a write lands in space
  the file already has and its fsync commits no new file size: 30-40 us less
  per fsync on the disk docs/speed.md measures. The file is cut back to its
  records when the segment is closed or rotated (rotation makes the cut
  durable first: only the last segment may end in anything but records);
  recovery cuts the zeros a crash leaves. Where the filesystem cannot
  allocate, the log says so once and writes go on without it.
- Fail-stop: if a write or fsync fails (ENOSPC, EIO), no callback of the
  failed batch or any later one fires, the log logs `acceptor_log_failed` and
  every further `append` raises `AcceptorLogFailed`. An acceptor that cannot
  persist must stop voting. A failed fsync is never retried: after one the
  kernel may already have dropped the dirty pages, and what a read of the
  file shows past the last successful fsync proves nothing.
- Resuming (`resume`): the caller hands over its whole state, and the log
  makes it durable without trusting anything written since the last
  successful fsync (`paxtor.paxos.storage.recovery.rebuild`); then it takes
  appends again. Nothing acknowledged is ever lost, and the records of the
  failed batches were never acknowledged. If the disk still refuses, the
  log stays failed.
- Replay (`open` then `records()`): the snapshot, then the segments after it
  (`paxtor.paxos.storage.recovery`); a damaged log is refused with
  `AcceptorLogCorrupt` rather than replayed.
- Compaction (`compact`): appends from then on go to a new segment while the
  caller's snapshot is installed in the background
  (`paxtor.paxos.storage.compaction`). When to compact is the caller's call
  (it holds the state to snapshot); `should_compact` offers the usual
  heuristic.
- `durability="memory"`: nothing touches the disk; callbacks fire on the next
  loop turn. For tests only: a voter restarted with it has forgotten its
  promises (`memory_durability_unsafe_on_restart` is logged at every open).

The file format is pure and lives in `paxtor.paxos.log_format`.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import gevent
import gevent.event
import structlog
from gevent.hub import Waiter

from paxtor.paxos.log_format import HEADER_SIZE, encode_record
from paxtor.paxos.storage.compaction import install_snapshot
from paxtor.paxos.storage.errors import AcceptorLogClosed, AcceptorLogError, AcceptorLogFailed
from paxtor.paxos.storage.files import (
    PLATFORM_ALLOCATE,
    Disk,
    create_segment,
    lock_directory,
    make_directory_durably,
    record_frames,
)
from paxtor.paxos.storage.recovery import Recovered, rebuild, recover
from paxtor.paxos.storage.sync_thread import INLINE_SYNC_LIMIT, SyncPlacement, SyncThread

__all__ = ["ALLOCATE_AHEAD", "AcceptorLog", "Durability", "SETTLE_LIMIT", "SYNC_BUCKETS", "Ticket"]

log = structlog.get_logger(__name__)

Durability = Literal["fsync", "memory"]

SETTLE_LIMIT = 0.0005
#: How far past its end the active segment's file is allocated at a time.
ALLOCATE_AHEAD = 1 << 20

#: upper bounds (seconds) of the write+fsync latency histogram (`AcceptorLog.sync_histogram`)
SYNC_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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
        recovered: Recovered | None,
        lock_fd: int | None,
        disk: Disk,
        on_failure: Callable[[AcceptorLogFailed], None] | None,
        inline_sync_limit: float = INLINE_SYNC_LIMIT,
        settle_limit: float = SETTLE_LIMIT,
    ) -> None:
        self.durability: Durability = durability
        self.directory = directory
        self.fsync_count = 0  # fsyncs of appended records (one per batch)
        self._disk = disk
        #: called (in the writer greenlet) when a write or fsync fails; may be set after open
        self.on_failure = on_failure
        self._lock_fd = lock_fd
        self._records: list[bytes] = recovered.records if recovered else []
        self._generation = recovered.generation if recovered else 0
        self._fd = recovered.fd if recovered else None
        self._segment_bytes = recovered.segment_bytes if recovered else {}
        self._allocate = disk.allocate  # None once the filesystem refused
        self._allocated_end = 0  # the active segment's file is allocated up to here
        self._snapshot_bytes = recovered.snapshot_bytes if recovered else 0
        self._queue: deque[_Batch | _Rotation] = deque()
        self._failure: AcceptorLogFailed | None = None
        self._closing = False
        self._closed = False
        self._compaction: gevent.Greenlet | None = None
        self._hub = gevent.get_hub()
        self._wakeup = gevent.event.Event()
        self._sync_thread = SyncThread(self._hub) if durability == "fsync" else None
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
        allocate: Callable[[int, int, int], None] | None = PLATFORM_ALLOCATE,
    ) -> AcceptorLog:
        """Open (creating if needed) the log in `directory` and replay it.

        Blocks the hub while it reads: call it before the node serves. Raises
        `AcceptorLogCorrupt` rather than replay a damaged log, and
        `AcceptorLogError` if another log holds the directory.
        """
        if durability not in ("fsync", "memory"):
            raise ValueError(f"durability must be 'fsync' or 'memory', got {durability!r}")
        disk = Disk(write, fsync, step_hook, allocate)
        options: dict[str, Any] = dict(
            disk=disk,
            on_failure=on_failure,
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
        lock_fd = lock_directory(path)
        try:
            recovered = recover(path, disk)
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
        frames = record_frames(records)
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
                except Exception as error:  # noqa: BLE001 - a write, fsync or file creation failed
                    self._enter_failed(error, item)
                    return
                if isinstance(item, _Batch):
                    _fire_callbacks(item)
        finally:
            if self._sync_thread is not None:
                self._sync_thread.stop()
                self._sync_thread = None
            if self._fd is not None:
                if self._failure is None:
                    try:
                        self._cut_allocated(self._fd)
                    except OSError:  # the zeros left are cut by the next recovery
                        pass
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
        assert self._fd is not None
        took: float
        if placement.inline:
            took = self._timed_write_and_sync(self._fd, data)
        else:
            assert self._sync_thread is not None
            took = self._sync_thread.apply(self._timed_write_and_sync, (self._fd, data))  # type: ignore[assignment]
        self.sync_histogram[bisect_left(SYNC_BUCKETS, took)] += 1
        self.sync_seconds += took
        if placement.observe(took):
            log.info(
                "acceptor_log_sync_moved",
                directory=str(self.directory),
                to="hub" if placement.inline else "sync_thread",
                average_ms=round(placement.average * 1e3, 3),
            )

    def _timed_write_and_sync(self, fd: int, data: bytes) -> float:
        """`Disk.write_and_sync`, returning how long it took (measured where it ran)."""
        started = time.perf_counter()
        self._allocate_ahead(fd, len(data))
        self._disk.write_and_sync(fd, data)
        return time.perf_counter() - started

    def _data_end(self) -> int:
        """Where the active segment's records end (and the next write goes)."""
        return HEADER_SIZE + self._segment_bytes[self._generation]

    def _allocate_ahead(self, fd: int, size: int) -> None:
        """Allocate the active segment `ALLOCATE_AHEAD` further if a write of `size` would pass
        what it has (where it runs: the hub or the sync thread, as the write)."""
        allocate = self._allocate
        start = self._data_end()
        if allocate is None or start + size <= self._allocated_end:
            return
        length = max(ALLOCATE_AHEAD, size)
        try:
            allocate(fd, start, length)
        except OSError as error:  # not supported here, or no space: the write says which
            self._allocate = None
            log.info("acceptor_log_allocation_off", directory=str(self.directory), error=repr(error))
            return
        self._allocated_end = start + length

    def _cut_allocated(self, fd: int, durably: bool = False) -> None:
        """Cut the active segment's file back to its records (what was allocated ahead goes)."""
        if self._allocated_end <= self._data_end():
            return
        os.ftruncate(fd, self._data_end())
        if durably:
            self._disk.fsync(fd)
        self._allocated_end = 0

    def _rotate(self, rotation: _Rotation) -> None:
        """Start segment <g+1> (durably) for every later append."""
        if self.durability == "fsync":
            assert self._fd is not None
            # durably, before the next segment exists: only the last one may end in zeros
            self._hub.threadpool.apply(self._cut_allocated, (self._fd, True))
            generation = self._generation + 1
            fd = self._hub.threadpool.apply(create_segment, (self.directory, generation, self._disk.fsync))
            os.close(self._fd)
            self._fd, self._generation = fd, generation
            self._allocated_end = 0
            self._segment_bytes[generation] = 0
            self._disk.step("segment_rotated")
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
        frames = record_frames(snapshot)
        if self._compaction is not None:
            self._compaction.join()  # it fails with the log, or it finished: either way it is over
        self._writer.join()  # gone since the failure; it closed the segment and the sync thread
        generation = self._generation
        durable_end = HEADER_SIZE + self._segment_bytes.get(generation, 0)
        fd, size = self._hub.threadpool.apply(rebuild, (self.directory, self._disk, frames, generation, durable_end))
        if self._closing:  # closed while the files were written
            os.close(fd)
            raise AcceptorLogClosed("the acceptor log is closed")
        self._fd, self._generation = fd, generation + 1
        self._segment_bytes = {generation + 1: 0}
        self._allocate, self._allocated_end = self._disk.allocate, 0
        self._snapshot_bytes = size
        self._placement = SyncPlacement(self._placement.limit)
        self._failure = None
        self._sync_thread = SyncThread(self._hub)
        self._writer = gevent.spawn(self._run_writer)
        log.info("acceptor_log_resumed", directory=str(self.directory), generation=generation + 1,
                 records=len(frames), snapshot_bytes=size)

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
        frames = record_frames(snapshot)
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
            size = self._hub.threadpool.apply(install_snapshot, (self.directory, self._disk, frames, generation))
        except Exception as error:  # noqa: BLE001 - logged and handed to the ticket; the log stays as it was
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


def _fire_callbacks(batch: _Batch) -> None:
    """Run a durable batch's callbacks in append order; one failing does not stop the rest."""
    for callback in batch.callbacks:
        if callback is None:
            continue
        try:
            callback()
        except Exception:
            log.exception("acceptor_log_callback_failed")
