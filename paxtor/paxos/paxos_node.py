"""One node's PaxosKV instance: its settings, its durable acceptor state, and shared tables.

The node's PaxosKV processes (acceptor, proposer, lease keeper, binding
watcher) each own part of the state; what another process must read at
once, without a round trip, lives here, like a protected ETS table: ONE
writer, the owner named beside each field, and readers that never mutate.

- ``acceptor`` / ``log`` / ``local_acceptor``: the pure `Acceptor`, its
  durable log and the driver that votes with them (`LocalAcceptor`, used by
  the acceptor process and by this node's proposer). They outlive the
  PROCESSES: a crashed and restarted acceptor process carries on with the
  same promises (restarting it from nothing would be amnesia). They are
  opened before the node serves (the log replays) and closed when it stops.
- ``lease`` / ``holds`` / ``held_by`` (owner: the lease keeper): the
  `LeaseClock` (the proposer reads terms from it) and which local pids hold
  which tenures (by pid, and by key).
- ``buckets`` / ``watched`` (owner: the binding watcher).
- ``counters`` (owner: the proposer): what its rounds did, for metrics.
- ``lease_watchers`` (owner: whoever subscribes; read by the lease keeper):
  local pids told of every `LeaseGained` / `LeaseLost`.

`open_paxos_node` finds the open instance of the calling node, so the API
reads the lease term from the clock itself (``paxos.lease_term``) instead
of asking the lease keeper: a read needs no message, and the term read is a
hint only, since ``hold`` (a call) is what grants, against the keeper's view.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Hashable
from pathlib import Path

import structlog

from paxtor.actors.ids import Pid
from paxtor.actors.node import LocalNode
from paxtor.paxos.acceptor import Acceptor, LogRecord
from paxtor.paxos.ballot import NodeId
from paxtor.paxos.bucket import DEFAULT_BUCKET, BucketSpec
from paxtor.paxos.config import PaxosConfig
from paxtor.paxos.counters import ProposerCounters
from paxtor.paxos.lease import LeaseClock, SilenceTracker
from paxtor.paxos.local_acceptor import LocalAcceptor
from paxtor.paxos.log_codec import LogRecordCorrupt, decode_log_record
from paxtor.paxos.storage import AcceptorLog, AcceptorLogCorrupt

__all__ = ["PaxosNode", "ACCEPTOR_DIR", "open_paxos_node"]

log = structlog.get_logger(__name__)

ACCEPTOR_DIR = "acceptor"

Slot = tuple[str, Hashable]

_open_nodes: weakref.WeakKeyDictionary[LocalNode, PaxosNode] = weakref.WeakKeyDictionary()


def open_paxos_node(local: LocalNode) -> PaxosNode | None:
    """The `PaxosNode` open on ``local`` (between its ``open`` and ``close``), or None."""
    return _open_nodes.get(local)


class PaxosNode:
    """The PaxosKV state of one running node (see the module docstring)."""

    def __init__(self, config: PaxosConfig, local: LocalNode) -> None:
        if config.voter and local.name not in config.voters:
            raise ValueError(f"node {local.name!r} is not one of the voters {config.voters!r}")
        self.config = config
        self.local = local
        self.name = local.name
        self.incarnation = local.incarnation
        self.identity: NodeId = (local.name, local.incarnation)
        self.voters = config.voters
        self.quorum = config.quorum
        self.voter = config.voter
        # this voter's acceptor (the acceptor process and the proposer vote through it)
        self.acceptor: Acceptor | None = None
        self.log: AcceptorLog | None = None
        self.local_acceptor: LocalAcceptor | None = None
        # owner: the lease keeper
        self.lease = LeaseClock(self.voters, self.quorum, config.lease)
        self.holds: dict[Pid, dict[Slot, int]] = {}
        self.held_by: dict[Slot, Pid] = {}
        # owner: the binding watcher
        self.buckets: dict[str, BucketSpec] = {DEFAULT_BUCKET: BucketSpec(DEFAULT_BUCKET)}
        self.watched: set[Slot] = set()
        # owner: the proposer
        self.counters = ProposerCounters()
        # owner: the subscriber (paxtor.observe); read by the lease keeper
        self.lease_watchers: set[Pid] = set()
        self._opened = False

    def __repr__(self) -> str:
        role = "voter" if self.voter else "client"
        return f"<PaxosNode {self.name}.{self.incarnation} {role} voters={len(self.voters)}>"

    # -- life -----------------------------------------------------------------------

    def open(self) -> None:
        """Open and replay the acceptor log (voters). Blocks while it reads: call before serving."""
        if self._opened:
            return
        if self.voter:
            directory: Path | None = None
            if self.config.durability == "fsync":
                assert self.config.data_dir is not None
                directory = Path(self.config.data_dir) / ACCEPTOR_DIR
            self.log = AcceptorLog.open(directory, self.config.durability)  # type: ignore[arg-type]
            records = [_decode_record(raw) for raw in self.log.records()]
            silence = SilenceTracker(self.config.silence, time.monotonic())
            self.acceptor = Acceptor(self.identity, silence, records)
            config = self.config
            self.local_acceptor = LocalAcceptor(
                self.acceptor,
                self.log,
                self.local,
                self.watched,
                compact=lambda lg: lg.should_compact(ratio=config.compact_ratio, min_log_bytes=config.compact_min_bytes),
            )
            log.info(
                "acceptor_ready",
                node=self.name,
                incarnation=self.incarnation,
                durability=self.config.durability,
                keys=len(self.acceptor.records()),
                restart_floor=self.acceptor.restart_floor,
            )
        self._opened = True
        _open_nodes[self.local] = self

    def close(self) -> None:
        """Make what the acceptor appended durable and release the log (node stop)."""
        if _open_nodes.get(self.local) is self:
            del _open_nodes[self.local]
        log_, self.log = self.log, None
        if log_ is not None:
            log_.close()

    # -- reads for other processes ----------------------------------------------------

    def holds_tenure(self, pid: Pid, bucket: str, key: Hashable, epoch: int) -> bool:
        """True if local ``pid`` is a live, granted owner of tenure ``epoch`` of the key."""
        held = self.holds.get(pid)
        return held is not None and held.get((bucket, key)) == epoch

    def is_local(self, pid: Pid) -> bool:
        return pid.node == self.name and pid.incarnation == self.incarnation

    def bucket(self, name: str) -> BucketSpec:
        """The bucket's spec; an unknown bucket releases with the default policy."""
        spec = self.buckets.get(name)
        return spec if spec is not None else BucketSpec(name)


def _decode_record(raw: bytes) -> LogRecord:
    try:
        return decode_log_record(raw)
    except LogRecordCorrupt as exc:
        raise AcceptorLogCorrupt(str(exc)) from None
