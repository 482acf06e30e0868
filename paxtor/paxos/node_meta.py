"""A node's identity on disk: its name, its cluster, and a new incarnation at every start.

`NodeMeta.open` reads ``node.meta`` in the node's data directory, checks that
the directory is this node's (its name), takes the next incarnation and
writes the file back (temp file, fsync, rename, fsync the directory) BEFORE
the node serves anything, so two runs of a node can never share an
incarnation, even across crashes. Pids and leases carry the incarnation, so
a pid of an earlier run names a dead process and never a new one.

- A directory with no ``node.meta`` (a new node, or a wiped disk) starts at
  the wall clock (milliseconds since 2024), not at 1, and each later start takes
  the larger of one more and the clock: a node whose disk was wiped, or whose
  directory was put back from an old backup, does not reuse the incarnations
  of its later life (unless its clock went back).
- A directory that names another node is refused (`NodeMetaMismatch`): a
  directory copied from another node must not take its place.
- ``cluster`` is the id of the cluster the node belongs to, recorded once
  the node founds or joins one (`set_cluster`); handshakes carry it, so a
  directory of another cluster never reaches any of its peers.

With `durability="memory"` there is no file: the incarnation is the wall
clock in nanoseconds, and the cluster is known for this run only. Do not
switch one data directory between the two modes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from paxtor.actors.errors import PaxtorError
from paxtor.paxos.log_format import (
    KIND_META,
    FileHeader,
    LogCorrupt,
    encode_header,
    encode_record,
    parse_file,
)
from paxtor.paxos.storage import fsync_directory, make_directory_durably

__all__ = ["META_FILE", "NodeMeta", "NodeMetaCorrupt", "NodeMetaMismatch"]

log = structlog.get_logger(__name__)

META_FILE = "node.meta"
#: A new directory's first incarnation: milliseconds since 2024-01-01 (as memory nodes' are).
INCARNATION_EPOCH_MS = 1_704_067_200_000


class NodeMetaCorrupt(PaxtorError):
    """`node.meta` exists but cannot be read: starting with a guessed incarnation could reuse one."""


class NodeMetaMismatch(PaxtorError):
    """The data directory belongs to another node or another cluster."""


@dataclass
class NodeMeta:
    """What a node knows about itself across restarts (see the module docstring)."""

    incarnation: int | None  # None: the distribution layer draws one from the clock
    path: Path | None  # None with memory durability
    name: str | None = None
    cluster: str = ""
    fsync: Callable[[int], None] = os.fsync

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str] | None,
        durability: str = "fsync",
        *,
        name: str | None = None,
        cluster: str = "",
        fsync: Callable[[int], None] = os.fsync,
        clock: Callable[[], int] = time.time_ns,
    ) -> NodeMeta:
        """Take the next incarnation and make it durable before returning it.

        ``name``/``cluster``: what the node expects the directory to be (the
        cluster "" when it does not know). `fsync` and `clock` are injection
        points for tests.
        """
        if durability == "memory":
            return cls(incarnation=clock(), path=None, name=name, cluster=cluster)
        if durability != "fsync":
            raise ValueError(f"durability must be 'fsync' or 'memory', got {durability!r}")
        if data_dir is None:
            raise ValueError("durability='fsync' needs a data directory")
        directory = Path(data_dir)
        make_directory_durably(directory, fsync)
        path = directory / META_FILE
        stored = _read(path)
        if stored is None:
            incarnation = clock() // 1_000_000 - INCARNATION_EPOCH_MS
            stored_name, stored_cluster = name, ""
        else:
            # the clock too: a directory put back from a backup must not repeat an incarnation
            incarnation = max(stored["incarnation"] + 1, clock() // 1_000_000 - INCARNATION_EPOCH_MS)
            stored_name, stored_cluster = stored.get("name") or name, stored.get("cluster") or ""
        if name is not None and stored_name != name:
            raise NodeMetaMismatch(
                f"{directory} is the data directory of node {stored_name!r}, not of {name!r}: "
                "a directory copied from another node must not take its place"
            )
        if cluster and stored_cluster and cluster != stored_cluster:
            raise NodeMetaMismatch(f"{directory} belongs to cluster {stored_cluster!r}, not {cluster!r}")
        meta = cls(incarnation, path, stored_name, stored_cluster or cluster, fsync)
        meta._write()
        log.info("node_incarnation", incarnation=incarnation, path=str(path), cluster=meta.cluster or None)
        return meta

    def set_cluster(self, cluster: str) -> None:
        """Record that this node belongs to ``cluster`` (durably before returning)."""
        if self.cluster == cluster:
            return
        if self.cluster:
            raise NodeMetaMismatch(f"this node belongs to cluster {self.cluster!r}, not {cluster!r}")
        self.cluster = cluster
        if self.path is not None:
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        fields = {"incarnation": self.incarnation, "name": self.name, "cluster": self.cluster}
        payload = json.dumps(fields).encode()
        data = encode_header(FileHeader(KIND_META, 0)) + encode_record(payload)
        _write_atomically(self.path, data, self.fsync)


def _read(path: Path) -> dict[str, Any] | None:
    """The stored fields; None if the node never started here."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        parsed = parse_file(data, kind=KIND_META, generation=None, tail_may_be_torn=False)
        if len(parsed.records) != 1:
            raise LogCorrupt(f"expected one record, found {len(parsed.records)}")
        fields = json.loads(parsed.records[0])
        incarnation = fields["incarnation"]
        if type(incarnation) is not int or incarnation < 1:
            raise LogCorrupt(f"bad incarnation {incarnation!r}")
        for key in ("name", "cluster"):
            if fields.get(key) is not None and type(fields[key]) is not str:
                raise LogCorrupt(f"bad {key} {fields[key]!r}")
    except (LogCorrupt, ValueError, KeyError, TypeError) as error:
        raise NodeMetaCorrupt(f"{path}: {error}; refusing to guess an incarnation") from error
    return fields


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
