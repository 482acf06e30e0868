"""Compaction's files: a snapshot written in place durably, then the files it replaced deleted.

The log (`paxtor.paxos.storage.log`) decides when: appends from then on go to
a new segment <g> while, in a threadpool thread, the caller's snapshot is
written to a temp file, fsync'd, renamed to snapshot <g>, the directory
fsync'd, and the older files deleted. A crash at any point leaves a
directory that replays to the same records. Each step is told to the
`Disk`'s step hook, so tests can copy the directory as a crash would leave it.
"""

from __future__ import annotations

import os
from pathlib import Path

from paxtor.paxos.log_format import KIND_SNAPSHOT, TMP_SUFFIX, FileHeader, encode_header, plan_layout, snapshot_name
from paxtor.paxos.storage.files import Disk

__all__ = ["install_snapshot", "remove_obsolete", "write_snapshot"]


def install_snapshot(directory: Path, disk: Disk, frames: list[bytes], generation: int) -> int:
    """Write snapshot <generation> durably, then delete the older files; its size."""
    size = write_snapshot(directory, disk, frames, generation)
    remove_obsolete(directory, disk)
    return size


def write_snapshot(directory: Path, disk: Disk, frames: list[bytes], generation: int) -> int:
    """Snapshot <generation> in place, durably (temp file, fsync, rename, fsync dir); its size."""
    final = directory / snapshot_name(generation)
    temp = directory / (snapshot_name(generation) + TMP_SUFFIX)
    header = encode_header(FileHeader(KIND_SNAPSHOT, generation, len(frames)))
    data = header + b"".join(frames)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            disk.write_and_sync(fd, data)
        finally:
            os.close(fd)
        disk.step("snapshot_written")
        os.replace(temp, final)
        disk.step("snapshot_renamed")
        disk.fsync_directory(directory)
        disk.step("snapshot_installed")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return len(data)


def remove_obsolete(directory: Path, disk: Disk) -> None:
    """Delete the files the newest snapshot replaced (a replay ignores them anyway)."""
    for name in plan_layout(os.listdir(directory)).obsolete:
        (directory / name).unlink(missing_ok=True)
        disk.step(f"removed {name}")
    disk.fsync_directory(directory)
    disk.step("compaction_done")
