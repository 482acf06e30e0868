"""Reading a log back: replay at open, and the rebuild that resumes a failed log.

Replay (`recover`): every live file is read and checked first; only then is
a torn tail cut and are leftovers removed. A torn tail of the LAST segment
(a bad or partial frame with nothing valid after it: the crash cut the last
batch, whose callbacks never fired) is cut off, logged as
``acceptor_log_truncated``, and never replayed. A bad frame FOLLOWED by
valid ones is different: those later records were written after it and may
have been acknowledged, and a replay that skipped the bad one could forget a
promise the acceptor made, so the log refuses with `AcceptorLogCorrupt` and
leaves the files as they are for an operator. (The one case where this is
over-cautious: a power cut that persisted a later page of the very last
batch but not an earlier one.)

Resume (`rebuild`): after a failed write or fsync nothing written since the
last successful fsync can be trusted. The current segment is cut back to the
end of that fsync (the acknowledged records) and the cut synced, what failed
rotations or earlier attempts left past it is removed, and a new segment
<g+1> and snapshot <g+1> of the caller's whole state are made, as a
compaction does. A crash at any step leaves a directory that replays to the
acknowledged records, or to the whole state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from paxtor.paxos.log_format import (
    HEADER_SIZE,
    KIND_SEGMENT,
    KIND_SNAPSHOT,
    LogCorrupt,
    ParsedFile,
    generation_of,
    parse_file,
    plan_layout,
    segment_name,
    snapshot_name,
)
from paxtor.paxos.storage.compaction import remove_obsolete, write_snapshot
from paxtor.paxos.storage.errors import AcceptorLogCorrupt
from paxtor.paxos.storage.files import Disk, create_segment, fsync_directory

__all__ = ["Recovered", "rebuild", "recover"]

log = structlog.get_logger(__name__)


@dataclass
class Recovered:
    """What a replay found, and the segment it left open for appending."""

    records: list[bytes]
    generation: int  # the active segment
    fd: int  # open for appending to it
    segment_bytes: dict[int, int]  # record bytes per live segment
    snapshot_bytes: int


def recover(directory: Path, disk: Disk) -> Recovered:
    """Read and check every live file first; only then cut a torn tail and clean up."""
    fsync = disk.fsync
    try:
        layout = plan_layout(os.listdir(directory))
    except LogCorrupt as error:
        raise AcceptorLogCorrupt(f"{directory}: {error}. Refusing to start.") from error
    records: list[bytes] = []
    snapshot_bytes = 0
    if layout.snapshot is not None:
        parsed, snapshot_bytes, _ = _parse(
            directory / snapshot_name(layout.snapshot),
            kind=KIND_SNAPSHOT,
            generation=layout.snapshot,
            tail_may_be_torn=False,
        )
        records.extend(parsed.records)
    segment_bytes: dict[int, int] = {}
    last: tuple[int, ParsedFile, int, bool] | None = None
    for generation in layout.segments:
        parsed, size, zero_tail = _parse(
            directory / segment_name(generation),
            kind=KIND_SEGMENT,
            generation=generation,
            tail_may_be_torn=generation == layout.segments[-1],
        )
        records.extend(parsed.records)
        segment_bytes[generation] = max(parsed.good_end - HEADER_SIZE, 0)
        last = (generation, parsed, size, zero_tail)

    for name in layout.temporaries + layout.obsolete:
        (directory / name).unlink(missing_ok=True)
        log.info("acceptor_log_leftover_removed", file=str(directory / name))
    fd = _reopen_last_segment(directory, last, disk)
    if fd is None:
        generation = layout.snapshot or 1
        if last is not None:
            generation = last[0]
            del segment_bytes[generation]
        fd = create_segment(directory, generation, fsync)
        segment_bytes[generation] = 0
    else:
        assert last is not None
        generation = last[0]
    fsync_directory(directory, fsync)
    return Recovered(records, generation, fd, segment_bytes, snapshot_bytes)


def rebuild(directory: Path, disk: Disk, frames: list[bytes], generation: int, durable_end: int) -> tuple[int, int]:
    """In a threadpool thread: cut segment <generation> to `durable_end`, clear what lies past
    it, then segment and snapshot <generation + 1>. The new segment's fd and the snapshot size."""
    current = directory / segment_name(generation)
    if current.exists():
        fd = os.open(current, os.O_WRONLY)
        try:
            os.ftruncate(fd, durable_end)
            disk.fsync(fd)
        finally:
            os.close(fd)
        disk.step("resume_truncated")
    leftovers = [name for name in os.listdir(directory) if (generation_of(name) or 0) > generation]
    for name in leftovers:
        (directory / name).unlink(missing_ok=True)
    disk.fsync_directory(directory)
    disk.step("resume_cleared")
    fd = create_segment(directory, generation + 1, disk.fsync)
    try:
        disk.step("segment_rotated")
        size = write_snapshot(directory, disk, frames, generation + 1)
    except BaseException:
        os.close(fd)
        raise
    try:  # the new generation is the durable state now; what it replaced is mere leftovers
        remove_obsolete(directory, disk)
    except OSError as error:
        log.warning("acceptor_log_leftovers_kept", directory=str(directory), error=repr(error))
    return fd, size


def _parse(
    path: Path, *, kind: int, generation: int | None, tail_may_be_torn: bool
) -> tuple[ParsedFile, int, bool]:
    """The file parsed, its size, and whether all of it past the last good record is zeros."""
    data = path.read_bytes()
    try:
        parsed = parse_file(data, kind=kind, generation=generation, tail_may_be_torn=tail_may_be_torn)
    except LogCorrupt as error:
        raise AcceptorLogCorrupt(
            f"{path}: {error}. Refusing to start: replaying around it could forget "
            "acknowledged promises. Restore the directory or retire this voter."
        ) from error
    tail = len(data) - parsed.good_end
    return parsed, len(data), tail > 0 and data[parsed.good_end :] == bytes(tail)


def _reopen_last_segment(
    directory: Path, last: tuple[int, ParsedFile, int, bool] | None, disk: Disk
) -> int | None:
    """Cut the last segment's torn tail and open it for writing at its end; None if it must be
    recreated. A tail of zeros held nothing ever written there: space allocated ahead of the
    writes (`AcceptorLog`), or a file a crash extended; it is cut without a warning."""
    if last is None:
        return None
    generation, parsed, size, zero_tail = last
    path = directory / segment_name(generation)
    if parsed.torn is not None and zero_tail and parsed.header is not None:
        log.info(
            "acceptor_log_allocated_tail_cut", file=str(path), offset=parsed.good_end, bytes=size - parsed.good_end
        )
    elif parsed.torn is not None:
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
    fd = os.open(path, os.O_WRONLY)
    try:
        if parsed.torn is not None:
            os.ftruncate(fd, parsed.good_end)
            disk.fsync(fd)
        os.lseek(fd, parsed.good_end, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
