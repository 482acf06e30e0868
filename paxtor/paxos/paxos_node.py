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
- ``cluster`` / ``voter_config`` / ``peers`` / ``learners`` (owner: the
  membership server, through `install_config` and `adopt_cluster`): the
  cluster this node belongs to, the newest voter configuration it knows, what
  each connected peer said of itself, and the voters known not to vote yet.
  A node proposes nothing before it knows a configuration: quorums are counted
  against it (`paxtor.paxos.voter_config`).
- ``counters`` (owner: the proposer): what its rounds did, for metrics.
- ``lease_watchers`` / ``quorum_watchers`` (owner: whoever subscribes; read
  by the lease keeper / the membership server): local pids told of every
  `LeaseGained` / `LeaseLost`, and every `QuorumChange`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import structlog

from paxtor.actors.ids import Pid
from paxtor.actors.node import LocalNode
from paxtor.actors.node_slot import NodeSlot
from paxtor.paxos.acceptor import Acceptor, LogRecord
from paxtor.paxos.ballot import NodeId
from paxtor.paxos.bucket import DEFAULT_BUCKET, BucketSpec
from paxtor.paxos.config import PaxosConfig
from paxtor.paxos.counters import ProposerCounters
from paxtor.paxos.lease import LeaseClock, SilenceTracker
from paxtor.paxos.local_acceptor import LocalAcceptor
from paxtor.paxos.log_codec import LogRecordCorrupt, decode_log_record
from paxtor.paxos.storage import AcceptorLog, AcceptorLogCorrupt
from paxtor.paxos.voter_config import VoterConfig

__all__ = ["PaxosNode", "ACCEPTOR_DIR", "open_paxos_node"]

log = structlog.get_logger(__name__)

ACCEPTOR_DIR = "acceptor"

Slot = tuple[str, Hashable]

#: The node's `PaxosNode`, between its ``open`` and ``close``.
PAXOS_NODE: NodeSlot[PaxosNode] = NodeSlot("paxos")


def open_paxos_node(local: LocalNode) -> PaxosNode | None:
    """The `PaxosNode` open on ``local`` (between its ``open`` and ``close``), or None."""
    return local.service(PAXOS_NODE)


class PaxosNode:
    """The PaxosKV state of one running node (see the module docstring)."""

    def __init__(
        self,
        config: PaxosConfig,
        local: LocalNode,
        *,
        cluster: str = "",
        on_cluster: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.local = local
        self.name = local.name
        self.incarnation = local.incarnation
        self.identity: NodeId = (local.name, local.incarnation)
        #: the voters a new cluster is founded with (`paxtor.paxos.membership`)
        self.initial_voters = config.voters
        self.voter = config.voter  # this node has an acceptor (it votes once it may)
        # this voter's acceptor (the acceptor process and the proposer vote through it)
        self.acceptor: Acceptor | None = None
        self.log: AcceptorLog | None = None
        self.local_acceptor: LocalAcceptor | None = None
        # owner: the membership server
        self.cluster = cluster
        self.voter_config: VoterConfig | None = None
        self.peers: dict[str, Any] = {}  # name -> the MemberHello it sent
        self.learners: set[str] = set()
        self._on_cluster = on_cluster
        #: when a voter change last called this node's acceptor (owner: the acceptor process)
        self.change_activity = 0.0
        # owner: the lease keeper
        self.lease = LeaseClock(None, config.lease)
        self.holds: dict[Pid, dict[Slot, int]] = {}
        self.held_by: dict[Slot, Pid] = {}
        # owner: the binding watcher
        self.buckets: dict[str, BucketSpec] = {DEFAULT_BUCKET: BucketSpec(DEFAULT_BUCKET)}
        self.watched: set[Slot] = set()
        # owner: the proposer
        self.counters = ProposerCounters()
        # owner: the subscriber (paxtor.observe); read by the lease keeper
        self.lease_watchers: set[Pid] = set()
        # owner: the subscriber (paxtor.observe); read by the membership server
        self.quorum_watchers: set[Pid] = set()
        self._opened = False

    def __repr__(self) -> str:
        config = self.voter_config.describe() if self.voter_config is not None else "no configuration"
        return f"<PaxosNode {self.name}.{self.incarnation} {self.role} {config}>"

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
                compact=lambda lg: lg.should_compact(
                    ratio=config.compact_ratio, min_log_bytes=config.compact_min_bytes
                ),
            )
            member = self.acceptor.member
            if member.node and member.node != self.name:
                raise AcceptorLogCorrupt(
                    f"{directory} holds the acceptor log of node {member.node!r}, not of {self.name!r}: "
                    "a directory copied from another node must not take its place"
                )
            if member.cluster:
                if self.cluster and self.cluster != member.cluster:
                    raise AcceptorLogCorrupt(
                        f"the acceptor log belongs to cluster {member.cluster!r}, node.meta says {self.cluster!r}"
                    )
                self.adopt_cluster(member.cluster)
            if member.config is not None:
                self._use_config(member.config)
            log.info(
                "acceptor_ready",
                node=self.name,
                incarnation=self.incarnation,
                durability=self.config.durability,
                keys=len(self.acceptor.records()),
                restart_floor=self.acceptor.restart_floor,
                role=self.role,
                config=self.voter_config.describe() if self.voter_config is not None else None,
            )
            if self.acceptor.blank and self.config.durability == "memory":
                log.info("acceptor_blank", node=self.name, detail="memory durability: it votes again only "
                         "in a new cluster, or after catching up from the other voters")
        self._opened = True
        self.local.install(PAXOS_NODE, self)

    def close(self) -> None:
        """Make what the acceptor appended durable and release the log (node stop)."""
        self.local.uninstall(PAXOS_NODE, self)
        log_, self.log = self.log, None
        if log_ is not None:
            log_.close()

    # -- membership (owner: the membership server) ----------------------------------

    @property
    def role(self) -> str:
        """"voter" (votes), "learner" (a voter that may not vote yet), or "client"."""
        acceptor = self.acceptor
        if acceptor is None:
            return "client"
        config = self.voter_config
        if config is not None and not config.is_member(self.name):
            return "client"  # not (or no longer) among the voters
        return "voter" if acceptor.voting else "learner"

    @property
    def voting(self) -> bool:
        """Whether this node's acceptor answers rounds now."""
        return self.acceptor is not None and self.acceptor.voting and self.role == "voter"

    def adopt_cluster(self, cluster: str) -> None:
        """This node belongs to ``cluster`` (recorded in node.meta and told at handshakes)."""
        if not cluster or cluster == self.cluster:
            return
        if self.cluster:
            raise ValueError(f"node {self.name} belongs to cluster {self.cluster!r}, not {cluster!r}")
        self.cluster = cluster
        log.info("cluster_joined", node=self.name, cluster=cluster)
        if self._on_cluster is not None:
            self._on_cluster(cluster)

    def install_config(self, config: VoterConfig, on_durable: Callable[[], None] | None = None) -> bool:
        """Use ``config`` (a configuration known chosen) if it is newer; True if it was.

        A voter's acceptor installs it too: from then on it refuses rounds of
        older configurations. ``on_durable`` runs once that (or the record of a
        newer one) is on disk; at once on a client."""
        current = self.voter_config
        if current is not None and config.version <= current.version:
            if self.local_acceptor is not None:  # installed before: its record may be pending
                self.local_acceptor.install(self.cluster, config, on_durable)
            elif on_durable is not None:
                on_durable()
            return False
        self._use_config(config)
        if self.local_acceptor is not None:
            self.local_acceptor.install(self.cluster, config, on_durable)
        elif on_durable is not None:
            on_durable()
        log.info("voter_config_installed", node=self.name, config=config.describe(), role=self.role)
        return True

    def _use_config(self, config: VoterConfig) -> None:
        self.voter_config = config
        self.lease.set_config(config)
        self.learners &= set(config.members)

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

    def voting_members(self, connected: Iterable[str]) -> set[str]:
        """The members of the configuration that can answer now: this node if it votes,
        and the ``connected`` ones whose hello says they vote."""
        config = self.voter_config
        if config is None:
            return set()
        peers = self.peers
        able = {
            v for v in connected
            if config.is_member(v) and v not in self.learners and getattr(peers.get(v), "role", None) == "voter"
        }  # fmt: skip
        if self.voting:
            able.add(self.name)
        return able


def _decode_record(raw: bytes) -> LogRecord:
    try:
        return decode_log_record(raw)
    except LogRecordCorrupt as exc:
        raise AcceptorLogCorrupt(str(exc)) from None
