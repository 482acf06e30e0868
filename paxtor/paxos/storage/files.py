"""The acceptor log's file operations: durable directories, segments, writes.

Every write and fsync of a log goes through its `Disk`, the one place tests
inject faults: a failing fsync, or a step hook that copies the directory
after each step of a compaction as a crash would leave it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from paxtor.paxos.log_format import KIND_SEGMENT, FileHeader, encode_header, encode_record, segment_name
from paxtor.paxos.storage.errors import AcceptorLogError

__all__ = [
    "Disk",
    "LOCK_FILE",
    "create_segment",
    "fsync_directory",
    "lock_directory",
    "make_directory_durably",
    "record_frames",
]

LOCK_FILE = "LOCK"
#: How this platform allocates file space ahead of writes (``posix_fallocate``), if it can.
PLATFORM_ALLOCATE: Callable[[int, int, int], None] | None = getattr(os, "posix_fallocate", None)


@dataclass(frozen=True)
class Disk:
    """How one log writes and syncs (``os.write`` and ``os.fsync`` unless a test says
    otherwise), and the hook told of each step of a compaction or a resume."""

    write: Callable[[int, memoryview], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    step_hook: Callable[[str], None] | None = None
    #: allocates (fd, offset, length) ahead of the writes; None where the platform has no way
    allocate: Callable[[int, int, int], None] | None = PLATFORM_ALLOCATE

    def step(self, name: str) -> None:
        if self.step_hook is not None:
            self.step_hook(name)

    def write_and_sync(self, fd: int, data: bytes) -> None:
        """Write all of `data`, then fsync (in the hub, the sync thread or a threadpool thread)."""
        view = memoryview(data)
        while view:
            written = self.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, f"write returned {written}")
            view = view[written:]
        self.fsync(fd)

    def fsync_directory(self, directory: Path) -> None:
        fsync_directory(directory, self.fsync)


def record_frames(records: Iterable[bytes]) -> list[bytes]:
    """Records framed for a file; TypeError for a record that is not bytes."""
    frames = []
    for record in records:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"records are bytes, got {type(record).__name__}")
        frames.append(encode_record(bytes(record)))
    return frames


def lock_directory(directory: Path) -> int:
    """Hold an exclusive lock on the directory: two logs on one directory would corrupt it."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
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


def create_segment(directory: Path, generation: int, fsync: Callable[[int], None]) -> int:
    """Create segment <generation> with its header, durably; return it open for writing after
    the header (writes go at the file offset, not at the end: the file may be allocated ahead)."""
    fd = os.open(directory / segment_name(generation), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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
