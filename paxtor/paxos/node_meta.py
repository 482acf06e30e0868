"""A node's incarnation counter: a new number, made durable, at every start.

Pids and leases carry the node's incarnation so that a pid of an earlier run
names a dead process and never a new one. `NodeMeta.open` reads the counter
from `node.meta` in the data directory, adds one and writes it back (temp
file, fsync, rename, fsync the directory) BEFORE the node serves anything,
so two runs of a node can never share an incarnation, even across crashes.

With `durability="memory"` there is no file: the incarnation is the wall
clock in nanoseconds, which differs across restarts as long as the clock does
not step back. That keeps pids apart, but a VOTER restarted with memory
durability has forgotten its promises (Paxos amnesia) and is unsafe; the
acceptor log logs `memory_durability_unsafe_on_restart` when one opens.
Do not switch one data directory between the two modes: the counter would
restart far below the clock-derived incarnations peers have already seen.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from paxtor.paxos.log_format import (
    KIND_META,
    FileHeader,
    LogCorrupt,
    encode_header,
    encode_record,
    parse_file,
)
from paxtor.paxos.storage import fsync_directory, make_directory_durably

__all__ = ["META_FILE", "NodeMeta", "NodeMetaCorrupt"]

log = structlog.get_logger(__name__)

META_FILE = "node.meta"


class NodeMetaCorrupt(Exception):
    """`node.meta` exists but cannot be read: starting with a guessed incarnation could reuse one."""


@dataclass(frozen=True)
class NodeMeta:
    """What a node knows about itself across restarts: its incarnation for this run."""

    incarnation: int
    path: Path | None  # None with memory durability

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str] | None,
        durability: str = "fsync",
        *,
        fsync: Callable[[int], None] = os.fsync,
        clock: Callable[[], int] = time.time_ns,
    ) -> NodeMeta:
        """Take the next incarnation and make it durable before returning it.

        `fsync` and `clock` (memory durability's source) are injection points for tests.
        """
        if durability == "memory":
            return cls(incarnation=clock(), path=None)
        if durability != "fsync":
            raise ValueError(f"durability must be 'fsync' or 'memory', got {durability!r}")
        if data_dir is None:
            raise ValueError("durability='fsync' needs a data directory")
        directory = Path(data_dir)
        make_directory_durably(directory, fsync)
        path = directory / META_FILE
        previous = _read_incarnation(path)
        incarnation = previous + 1
        _write_atomically(path, _encode(incarnation), fsync)
        log.info("node_incarnation", incarnation=incarnation, path=str(path))
        return cls(incarnation=incarnation, path=path)


def _encode(incarnation: int) -> bytes:
    payload = json.dumps({"incarnation": incarnation}).encode()
    return encode_header(FileHeader(KIND_META, 0)) + encode_record(payload)


def _read_incarnation(path: Path) -> int:
    """The stored incarnation; 0 if the node never started here."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    try:
        parsed = parse_file(data, kind=KIND_META, generation=None, tail_may_be_torn=False)
        if len(parsed.records) != 1:
            raise LogCorrupt(f"expected one record, found {len(parsed.records)}")
        incarnation = json.loads(parsed.records[0])["incarnation"]
        if type(incarnation) is not int or incarnation < 1:
            raise LogCorrupt(f"bad incarnation {incarnation!r}")
    except (LogCorrupt, ValueError, KeyError, TypeError) as error:
        raise NodeMetaCorrupt(f"{path}: {error}; refusing to guess an incarnation") from error
    return incarnation


def _write_atomically(path: Path, data: bytes, fsync: Callable[[int], None]) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new file, whole."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent, fsync)
