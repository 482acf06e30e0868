"""A simulated cluster: N nodes, each an Acceptor + LeaseClock + the production
`ProposerEngine` and `LockHomeEngine`, driven over the simulated network.

`SimNode` is the simulator's adapter of the production engines: its rounds are
run by `paxtor.paxos.proposer_engine.ProposerEngine` itself (per-key queues,
deadlines, backoff, thrifty phases, the ballot skip, vouching), fed with the
node's clock and messages, its effects carried out here. A request that gives
up at its deadline (kept short of a collection of its op mark) is sent again
by its client as a new request. Its lock home is
`paxtor.locks.home_engine.LockHomeEngine` itself, adapted as
`paxtor.locks.home.LockHome` adapts it. Lock operations run as
`paxtor.locks.home.run_op` runs them (`SimNode.run_lock_op`): a key the node
has seen contended goes to its home (`SimNode.lock_call`: rendezvous hashing
over the acceptor nodes the caller hears, as `LockRouting.home_of` does),
which batches its operations, one round at a time; any other is proposed
where the caller runs, within ``local_attempt`` (a round that cannot land
marks the key contended). A batch's round is a request to the home's proposer
engine with the engine's own change, recorded in the history as one operation
(``("batch", ops)``; a local round is a batch of one); its answers go back to
the callers, its wake-ups to the new owner's node. A call unanswered within
``lock_call_timeout`` counts as no quorum, and its caller sends it again. The
rest of the driver's duties are modelled against the pure cores as their
docstrings ask:

- acceptor replies wait for a group-committed "fsync" (``fsync_delay``) of
  their record, or of a pending record of their key or promise floor (a
  promise under the floor goes out at once); a crash loses the unsynced
  records AND their replies, and a restart rebuilds the acceptor from the
  synced log (``forget_on_restart`` models amnesia);
- each node knows a voter configuration (`VoterConfig`) of its own, learned
  as the membership servers tell each other (`paxtor.sim.reconfig`):
  its rounds, its lease and the tombstone collections it coordinates count
  by that configuration's quorums, its heartbeats go to its members, and a
  node that installs a newer one also installs it on its acceptor. Spare
  acceptors (``reconfigure`` fault) are not voters until a change adds them;
- a change of the voters (``reconfigure``) runs as
  `paxtor.paxos.reconfig.change_voters` does, modelled step by step in
  `paxtor.sim.reconfig.VoterChange`; a change left joint by a crashed
  coordinator is finished by the first member that can answer after
  ``resume_change_after`` (``finish_left_change``);
- a *wiped* voter (the ``wipe`` fault: its synced log is lost too) comes back
  blank and votes on nothing; once enough of the other voters are up and
  voting it catches up as `paxtor.paxos.reconfig.reseat` does
  (`paxtor.sim.reconfig.Reseat`): a new version of the voter
  configuration, installed on the others by messages that wait for their
  fsync, then their state read by messages and adopted, then it votes.
  Rounds tagged with the old version that are still in flight meet
  acceptors that refuse them (``wiped_voter_votes`` lets the wiped voter
  vote at once);
- an acceptor's silence tracker hears a node by what production's acceptor
  process gets from it (rounds, heartbeats, bulk accepts, and a hello when
  they meet, for NodeUp); the failure detector hears every message, and
  every node pings the nodes its heartbeats do not reach (the distribution
  layer's heartbeat). Heartbeats go to every member each ``heartbeat_every``;
- when the lease is lost, every local owner is killed (``"lease_expired"``)
  and its key released; a claim is held (`SimNode.hold`, the production
  lease keeper's `LeaseHolds`) only if the lease held in one term from the
  start of the round that chose it (a lock waiter: from when it sent its
  request);
- an owner's node releases its key when the owner exits (by the bucket's
  policy: a lock goes to its first waiter, whose node is woken, a
  singleton's key is emptied); a node that sees a key bound to a pid on a
  node it suspects (or on a dead incarnation) proposes a release for
  ``"noconnection"``, which acceptors veto until the owner's lease must have
  run out; a voter whose acceptor durably accepts a tenure of a pid already
  dead releases it for ``"noproc"`` (the binding watchers of
  `paxtor.paxos.bindings`, staggered by rank, stopping once their acceptor
  holds a register without it); a node whose round is vetoed because of
  a fence on one of its own pids that it never granted vouches for it (kills
  the waiter, releases the tenure for a real reason), or the key stays stuck;
- every ``collect_every`` each voter coordinates the collection of the
  tombstones it has held for ``tombstone_ttl`` (`paxtor.paxos.collection`):
  it asks every voter which it holds durably, and once all have answered
  tells them to drop those all hold at one ballot; the `Collected` record is
  logged like any other (a crash may lose it) and gates no reply. As in the
  driver, a request retries for at most `collection.max_request_time`; then
  it ends (maybe applied) and its client sends it again as a new request.

Time: the event queue runs in virtual *real* time; each node reads its own
monotonic clock ``offset + rate * t`` and sets timers in it. A crash loses
everything but the synced log; a pause freezes the node (its clock runs on,
its events wait), and on resuming it checks its lease before anything else.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Hashable
from dataclasses import InitVar, dataclass, field
from typing import Any

from paxtor.actors.ids import Pid
from paxtor.locks.home_engine import Answer as HomeAnswer
from paxtor.locks.home_engine import CancelDelay, ProposeBatch, StartDelay, Wake, wake_for_batch
from paxtor.locks.messages import LockWake
from paxtor.locks.register import Op as LockOp
from paxtor.locks.register import batch_change, grant_of, has_waiters, owner_of
from paxtor.paxos.acceptor import (
    Accept,
    Accepted,
    Collected,
    KeyRecord,
    MemberState,
    Nack,
    Prepare,
    Promise,
    PromiseFloor,
)
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.collection import Collection, max_request_time
from paxtor.paxos.envelopes import VouchRelease
from paxtor.paxos.errors import ChangeRejected, NoQuorum
from paxtor.paxos.lease import (
    Heartbeat,
    HeartbeatAck,
    LeaseEvent,
    LeaseLost,
    SilenceTracker,
    silence_threshold,
)
from paxtor.paxos.lease_holds import KillHolder, LeaseHolds
from paxtor.paxos.proposer import Backoff, Proposer
from paxtor.paxos.proposer_engine import (
    AskConfig,
    Decided,
    Finish,
    Kill,
    ProposerEngine,
    ProposeRequest,
    Send,
    Started,
    StartTimer,
    TenureNow,
)
from paxtor.paxos.register import Binding, ChangeFunction, EndedBinding, LeaseFence, Register
from paxtor.paxos.reply_order import FLOOR, MEMBER, ReplyOrder
from paxtor.paxos.voter_config import VoterConfig
from paxtor.placement import rendezvous_order
from paxtor.sim.checkers import (
    BallotChecker,
    ChosenChecker,
    LivenessChecker,
    OwnerChecker,
    PromiseChecker,
)
from paxtor.sim.faults import FaultPlan, plan_faults
from paxtor.sim.model import change_for
from paxtor.sim.mutations import Mutations
from paxtor.sim.network import EventQueue, Network, isolate
from paxtor.sim.reconfig import (
    CALLS,
    AdoptFloors,
    Answer,
    BulkAccept,
    ConfigHello,
    FloorQuery,
    Gather,
    Install,
    KeyCount,
    Reseat,
    StateQuery,
    VoterChange,
    pick_voters,
)

__all__ = ["LOCK", "NAME", "Cluster", "Op", "SimConfig", "SimNode", "bucket_of"]

Slot = tuple[str, Hashable]
FLOOR_SLOT: Slot = FLOOR  # where a node's synced `PromiseFloor` is kept

KV = "kv"
LOCK = "lock"
NAME = "name"


def bucket_of(kind: str, key: Hashable) -> str:
    """Each key has a bucket of its own: the epoch floor a collection raises is per
    bucket, so the key's own, and the register model stays exact (a shared floor
    only makes epochs jump further up). ``kind``: `KV`, `LOCK` or `NAME`."""
    return f"{kind}.{key.decode() if isinstance(key, bytes) else key}"


def kind_of(bucket: str) -> str:
    return bucket.partition(".")[0]


@dataclass(frozen=True)
class SimConfig:
    """Protocol parameters and run shape, in virtual seconds (lease = 1 unit by default)."""

    lease: float = 1.0
    heartbeat_every: float = 0.3
    max_drift: float = 1.0  # the clock-rate bound the lease arithmetic assumes
    clock_spread: float | None = None  # the bound clocks actually obey (None: = max_drift)
    margin: float = 0.05
    fd_timeout: float = 0.6  # a node suspects a peer silent this long (local clock)
    round_timeout: float = 0.3
    thrifty_after: float | None = 0.02  # a phase goes to a quorum first (the proposer engine's)
    fsync_delay: float = 0.002
    membership_every: float = 0.25  # how often an acceptor looks whether to catch up or finish a change
    call_timeout: float = 1.0  # a call to many voters (install, floor, snapshot, ...) waits this long
    resume_change_after: float = 5.0  # a voter finishes a change left joint this long
    migrate_page: int = 3  # keys per page of a bulk round's phase 2
    fault_time: float = 10.0  # faults happen in [0, fault_time), then the final heal
    tail: float = 12.0  # run this long after the heal
    settle: float = 2.0  # after the heal, liveness bounds start counting from here
    op_bound: float = 4.0  # every request must complete this soon after settle
    kv_keys: int = 2
    cold_keys: int = 2  # written once at the start, then only read
    lock_keys: int = 2
    hold_max: float = 1.0  # a granted lock is held up to this many leases (owner's clock)
    claim_retry: float = 1.5  # a lock waiter re-reads its lock after this many leases without a wake-up
    release_stagger: float = 0.1  # voters release a dead pid's tenure this far apart, by rank
    unlock_share: float = 0.5  # how many owners unlock (a round at the home) before they exit
    lock_enqueue_delay: float = 0.002  # a lock home's wait for a release to share (`ENQUEUE_DELAY`)
    lock_call_timeout: float = 1.0  # a call to a lock's home waits this long for its answer
    quorum_wait: float = 0.1  # a lock request that got no quorum is sent again after this long
    local_attempt: float = 0.2  # a lock round proposed by its caller's node gives up this soon
    hot_ttl: float = 2.0  # a lock key seen contended goes to its home this long after
    name_keys: int = 1
    resolve_every: float = 5.0  # each node looks a singleton up about this often (leases)
    singleton_hold_max: float = 3.0  # a singleton runs up to this many leases, then exits
    faults: tuple[str, ...] | None = None  # None: swarm (a random subset per seed)
    backoff: Backoff = Backoff(base=0.01, cap=0.2, veto=1.0)
    linearizability_budget: int = 5000  # explored configurations per key before "undecided"
    collect_every: float | None = 0.5  # None: tombstones are never collected
    tombstone_ttl: float = 4.0  # a voter coordinates tombstones it has held this long

    @property
    def spread(self) -> float:
        return self.max_drift if self.clock_spread is None else self.clock_spread

    @property
    def silence(self) -> float:
        return silence_threshold(self.lease, self.max_drift, self.margin)


@dataclass(frozen=True, slots=True)
class LockCall:
    """Sim-only: a lock operation for the key's home (production: a call to `LOCK_HOME`)."""

    tag: int
    key: bytes
    op: LockOp
    timeout: float | None


@dataclass(frozen=True, slots=True)
class LockReply:
    """Sim-only: the home's answer to `LockCall` ``tag`` (``("ok", register)``, ...)."""

    tag: int
    result: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """Sim-only: the distribution layer's heartbeat, to the nodes that get no lease heartbeat
    from the sender (its failure detector hears every peer; an acceptor does not)."""


PING = Ping()


@dataclass(frozen=True, slots=True)
class TombstoneQuery:
    """Sim-only: "which of these keys do you hold as durable tombstones?" (collection ``cid``)."""

    cid: int
    bucket: str
    keys: tuple[Hashable, ...]


@dataclass(frozen=True, slots=True)
class TombstoneReport:
    cid: int
    held: tuple[tuple[Hashable, Ballot], ...]


@dataclass(frozen=True, slots=True)
class Forget:
    bucket: str
    tombstones: tuple[tuple[Hashable, Ballot], ...]


#: the messages an acceptor hears its sender by (production: its process gets them)
HEARD = frozenset((Prepare, Accept, Heartbeat, BulkAccept))
MEMBER_SLOT: Slot = MEMBER  # where the compacted synced log keeps the `MemberState`
COLLECTED_SLOT: Slot = ("", ("collected",))  # replies that wait for adopted floors of dropped keys


@dataclass(eq=False)
class Op:
    """One client request, run as rounds until chosen (a new history entry per maybe-applied try)."""

    bucket: str
    key: Hashable
    input: tuple[Any, ...]
    process: Hashable
    on_done: Callable[[Op, Register], None] | None = None
    grant_pid: Pid | None = None  # a claim: grant ownership to this pid if the result binds it
    needs_lease: bool = False
    keep_going: Callable[[], bool] | None = None
    # the change the cluster runs (default: `change_for(input)`, what the model runs too)
    given: InitVar[tuple[ChangeFunction, EndedBinding | None] | None] = None
    timeout: float | None = None  # each request's (None: the engine's default)
    # a request that fails goes here, not again to the engine as a new request
    on_fail: Callable[[Op, BaseException], None] | None = None
    change: ChangeFunction = field(init=False)
    ended: EndedBinding | None = field(init=False)
    attempt: int = 0  # its rounds that failed, over all the requests it was sent as
    retry_after: float | None = None  # what the last round's decision asked to wait
    round: Proposer | None = None
    term: int | None = None
    history: list[Any] | None = None
    request: int = 0

    def __post_init__(self, given: tuple[ChangeFunction, EndedBinding | None] | None) -> None:
        self.change, self.ended = given if given is not None else change_for(self.input)

    @property
    def slot(self) -> Slot:
        return (self.bucket, self.key)


@dataclass
class Owner:
    slot: Slot
    epoch: int
    binding: Binding
    checked: bool = True  # counted by the owner checker (a singleton's keeper is not: see `hold`)


class SimNode:
    """One node incarnation after another; see the module docstring."""

    def __init__(self, sim: Cluster, name: str, voter: bool, rate: float, offset: float) -> None:
        self.sim = sim
        self.name = name
        self.voter = voter
        self.rate = rate
        self.offset = offset
        self.incarnation = 0
        self.votes = 0  # numbers the acceptor's votes in the order it made them, across restarts
        self.alive = False
        self.paused = False
        self.lost_disk = False  # wiped, and not caught up yet
        # the synced log, compacted: the last record per key wins, the floor only rises
        self.durable: dict[Slot, KeyRecord | PromiseFloor | Collected] = {}

    # -- clock and timers ---------------------------------------------------------

    def local(self) -> float:
        return self.offset + self.rate * self.sim.q.now

    def timer(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` after ``delay`` seconds of this node's clock, in this incarnation only."""
        self.sim.q.after(delay / self.rate, self._fire, self.incarnation, fn, args)

    def _fire(self, incarnation: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        if self.paused:
            self.deferred.append((fn, args))
            return
        fn(*args)

    # -- life cycle ----------------------------------------------------------------

    def boot(self) -> None:
        sim = self.sim
        self.incarnation += 1
        self.alive = True
        self.paused = False
        self.ident = (self.name, self.incarnation)
        now = self.local()
        if self.voter:
            # the first boot of the founding voters founds the cluster (every voter blank: all
            # vote); a spare starts blank and learns the cluster from its peers; a restart
            # replays what was synced. An acceptor that came back empty is a learner and
            # votes on nothing, unless the negative control lets it (amnesia).
            if self.incarnation == 1 and self.name in sim.voters:
                self.durable[MEMBER_SLOT] = MemberState("sim", sim.configs[1], True)  # type: ignore[assignment]
            voting: bool | None = None
            if sim.mutations.forget_on_restart and self.incarnation > 1:
                self.durable = {}
                voting = True
            elif not self.durable and self.incarnation > 1 and sim.mutations.wiped_voter_votes:
                voting = True
            silence = SilenceTracker(sim.config.silence, started_at=now)
            acceptor_class = sim.mutations.acceptor_class()
            self.acceptor = acceptor_class(self.ident, silence, list(self.durable.values()), voting=voting)
        # what the node knows of the voters: its acceptor's, else nothing until a peer says
        self.config: VoterConfig | None = self.acceptor.member.config if self.voter else None
        # the log's records not synced yet, in order: (record, the accept it records, its
        # slot in `order`, what waits for it: (destination, reply, accept) or functions to call)
        self.unsynced: list[tuple[Any, Accept | None, Slot | None, list[Any]]] = []
        self.order = ReplyOrder()  # the production driver's group-commit ordering of replies
        self.flush_armed = False
        self.lease = sim.mutations.lease_class()(self.config, sim.config.lease)
        self.lease_timer_armed = False
        self.last_heard: dict[str, float] = {}
        self.known_incarnation: dict[str, int] = {}
        self.booted_at = now
        self.active: dict[int, Op] = {}  # submitted requests not yet done, by request id
        self.procs: dict[Pid, Any] = {}
        self.holds = LeaseHolds()  # the production lease keeper's engine: who holds what
        self.owners: dict[Pid, Owner] = {}  # the same holders, with what the owner checker needs
        self.unlocking: dict[Pid, Owner] = {}  # owners that unlocked, until their release is answered
        # the lock home (`paxtor.locks.home_engine`), its delayed batches (key -> timer serial)
        # and this node's calls to homes waiting for their answer (tag -> what gets it)
        self.lock_home = sim.mutations.lock_home_class()(sim.config.lock_enqueue_delay)
        self.home_delays: dict[bytes, int] = {}
        self.lock_calls: dict[int, Callable[[tuple[Any, ...]], None]] = {}
        self.hot: dict[bytes, float] = {}  # lock keys seen contended, until when (`LockRouting`)
        self.reaping: dict[tuple[Slot, int], bool] = {}
        self.serial = 0
        self.deferred: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.tombstones_seen: dict[Slot, tuple[Ballot, float]] = {}  # since when, at which ballot
        self.collections: dict[int, Collection] = {}
        self.gathers: dict[int, Gather] = {}  # calls to many voters under way, by tag
        self.change: VoterChange | None = None  # a change of the voters this node runs
        self.reseat: Reseat | None = None  # this learner's catch-up
        self.joint_since: tuple[int, float] | None = None  # (version, since) of a joint config seen
        cfg = sim.config
        self.engine = ProposerEngine(
            SimHost(self),
            name=self.name,
            identity=self.ident,
            incarnation=self.incarnation,
            state=sim.mutations.proposer_state_class()(self.ident, backoff=cfg.backoff),
            rng=sim.rng,
            default_timeout=sim.max_request_time,
            attempt_timeout=cfg.round_timeout,
            wait_interval=0.1 * cfg.lease,
            thrifty_after=cfg.thrifty_after,
            max_request_time=sim.max_request_time,
            proposer_class=sim.mutations.proposer_class,
            observe=True,
        )
        self.tell_peers(ConfigHello(self.config, answer=True))  # as NodeUp makes peers say hello
        self.heartbeat()
        if self.voter:
            if not self.acceptor.voting and self.lost_disk:
                sim.count("learners")
            self.timer(sim.config.membership_every, self.membership_tick)
        if self.voter and sim.config.collect_every is not None:
            self.timer(sim.config.collect_every, self.collect_tick)
        sim.workload.node_started(self)

    def crash(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.paused = False
        for pid, owner in self.owners.items():
            self.sim.owner_checker.stop(owner.slot, pid)
        for op in self.active.values():  # in flight or waiting to retry: maybe applied
            self.sim.close_history(op, None)
            self.sim.liveness.abandoned(op.request)
        self.active.clear()
        self.sim.workload.node_crashed(self)

    def pause(self, length: float) -> None:
        if not self.alive or self.paused:
            return
        self.paused = True
        for pid, owner in self.owners.items():
            self.sim.owner_checker.stop(owner.slot, pid)
        self.sim.workload.node_paused(self)
        self.sim.q.after(length, self.resume, self.incarnation)

    def resume(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        self.paused = False
        self.sim.count("pauses")
        self.lease_events(self.lease.poll(self.local()))  # before anything else
        for pid, owner in self.owners.items():
            if owner.checked:
                self.sim.owner_checker.start(owner.slot, pid, owner.epoch, self.sim.q.now)
        self.sim.workload.node_resumed(self)
        deferred, self.deferred = self.deferred, []
        for fn, args in deferred:
            if not self.alive or self.paused:
                break
            fn(*args)

    # -- network -----------------------------------------------------------------

    def send(self, dst: str, msg: Any) -> None:
        self.sim.transmit(self.name, self.incarnation, dst, msg)

    def deliver(self, src: str, src_incarnation: int, msg: Any) -> None:
        if not self.alive:
            return
        if self.paused:
            self.deferred.append((self.receive, (src, src_incarnation, msg)))
            return
        self.receive(src, src_incarnation, msg)

    def receive(self, src: str, src_incarnation: int, msg: Any) -> None:
        now = self.local()
        was_down = self.suspects(src)
        self.last_heard[src] = now
        if was_down:  # as NodeUp reaches the production proposer
            self.perform(self.engine.view_changed(now))
        if src_incarnation > self.known_incarnation.get(src, 0):
            self.known_incarnation[src] = src_incarnation
        kind = type(msg)
        if kind is Ping:
            return
        if self.voter and (kind in HEARD or (kind is ConfigHello and msg.answer)):
            # what the acceptor process gets; a hello with an answer stands for a NodeUp
            self.acceptor.heard(src, src_incarnation, now)
        if kind is Prepare:
            reply, record = self.acceptor.on_prepare(msg, now)
            self.reply(src, reply, record, None)
        elif kind is Accept:
            reply, record = self.acceptor.on_accept(msg, now)
            accepted = msg if type(reply) is Accepted else None
            if accepted is not None:
                self.sim.ballots.accepted(self.name, msg.bucket, msg.key, msg.ballot, msg.register)
            self.reply(src, reply, record, accepted)
        elif kind is Heartbeat:
            ack = self.acceptor.on_heartbeat(src, src_incarnation, msg, now)
            if ack is not None:
                self.send(src, ack)
        elif kind is HeartbeatAck:
            self.lease_events(self.lease.on_ack(src, msg, now))
            if self.lease.config_behind is not None:  # that voter knows a newer configuration
                self.send(src, ConfigHello(self.config, answer=True))
        elif kind is Promise or kind is Accepted or kind is Nack:
            self.perform(self.engine.on_reply(src, msg, now))
        elif kind is LockCall:
            self.perform_home(self.lock_home.request(msg.key, (src, msg.tag), msg.op, msg.timeout))
        elif kind is LockReply:
            self.lock_answered(msg.tag, msg.result)
        elif kind is LockWake:
            self.sim.workload.lock_wake(self, msg)
        elif kind is TombstoneQuery:
            self.on_tombstone_query(src, msg)
        elif kind is TombstoneReport:
            self.on_tombstone_report(src, msg)
        elif kind is Forget:
            self.on_forget(msg)
        elif kind in CALLS:
            self.on_call(src, msg)
        elif kind is Answer:
            self.on_answer(src, msg)
        elif kind is ConfigHello:
            if msg.config is not None:
                self.install_config(msg.config)
            if msg.answer:
                self.send(src, ConfigHello(self.config))

    def reply(
        self, dst: str, reply: Any, record: KeyRecord | PromiseFloor | None, accepted: Accept | None
    ) -> None:
        """Send an acceptor reply once what it may depend on is synced (`ReplyOrder`: its own
        record, else any pending record of its key or a pending promise floor)."""
        slot = (reply.bucket, reply.key)
        order = self.order
        waiting = order.waiting_for(slot, record)
        self.votes += 1
        if waiting is None:
            self.send_vote(dst, reply, accepted, self.votes)
            return
        waiting.append((dst, reply, accepted, self.votes))
        if record is not None:
            self.append(record, order.slot_of(record, slot), waiting, accepted)

    def append(self, record: Any, slot: Slot | None, waiting: list[Any], accepted: Accept | None = None) -> None:
        """Append ``record`` to the log (``slot``: ordered under it; ``waiting``: goes once it is
        synced); the log syncs every ``fsync_delay`` (group commit)."""
        self.unsynced.append((record, accepted, slot, waiting))
        if slot is not None:
            self.order.appended(slot, waiting)
        if not self.flush_armed:
            self.flush_armed = True
            self.timer(self.sim.config.fsync_delay, self.flush)

    def flush(self) -> None:
        """The fsync of everything appended so far: records first, then what waited, in order."""
        self.flush_armed = False
        batch, self.unsynced = self.unsynced, []
        chosen = self.sim.chosen
        for record, accepted, _, _ in batch:
            if type(record) is PromiseFloor:
                self.durable[FLOOR_SLOT] = record
            elif type(record) is MemberState:
                self.durable[MEMBER_SLOT] = record  # type: ignore[assignment]
            elif type(record) is Collected:
                self.sync_collected(record)  # type: ignore[arg-type]
            elif record is not None:
                self.durable[(record.bucket, record.key)] = record
            if accepted is not None:
                chosen.durable_accept(
                    self.name,
                    accepted.bucket,
                    accepted.key,
                    accepted.ballot,
                    accepted.register,
                    accepted.config,
                    self.sim.q.now,
                )
                binding = accepted.register.binding
                if binding is not None and binding.pid is not None:
                    self.watch_binding((accepted.bucket, accepted.key), accepted.register.epoch, binding)
        order = self.order
        for _, _, slot, waiting in batch:
            for item in order.durable(slot, waiting) if slot is not None else waiting:
                if type(item) is tuple:
                    self.send_vote(*item)
                else:
                    item()  # a reply of `when_synced`, in its place among the others

    def log(self, record: Any, slot: Slot | None = None, accepted: Accept | None = None) -> None:
        """Append ``record`` to the log with no reply of its own (``slot``: replies that
        concern it wait for it; ``accepted``: the accept it records)."""
        self.append(record, slot, [], accepted)

    def when_synced(self, fn: Callable[[], None], slots: tuple[Slot, ...] | None = None) -> None:
        """Run ``fn`` (send a reply) once no record of ``slots`` is pending (None: once every
        record appended so far is synced); at once if none is."""
        if slots is not None:
            waiting = self.order.latest(slots)
            if waiting is None:
                fn()
            else:
                waiting.append(fn)
        elif self.unsynced:
            self.unsynced.append((None, None, None, [fn]))  # a barrier: after every record before it
        else:
            fn()

    def sync_collected(self, record: Collected) -> None:
        """The compacted log's view of a synced `Collected`: the keys go, the floors stay."""
        for key in record.keys:
            self.durable.pop((record.bucket, key), None)
        slot = ("", ("collected", record.bucket))
        counter, epoch = record.counter, record.epoch
        before = self.durable.get(slot)
        if type(before) is Collected:
            counter, epoch = max(counter, before.counter), max(epoch, before.epoch)
        self.durable[slot] = Collected(record.bucket, (), counter, epoch)

    # -- tombstone collection ---------------------------------------------------------

    def collect_tick(self) -> None:
        """Coordinate the collection of tombstones held here for ``tombstone_ttl``."""
        sim = self.sim
        self.timer(sim.config.collect_every, self.collect_tick)
        config = self.config
        if config is None or config.joint or not self.voting_member():
            return  # no configuration yet, or a change under way: nothing is dropped
        now = self.local()
        due: dict[str, list[Hashable]] = {}
        for slot in sim.workload.slots():
            ballot = self.acceptor.tombstone(*slot)
            if ballot is None:
                self.tombstones_seen.pop(slot, None)
                continue
            seen = self.tombstones_seen.get(slot)
            if seen is None or seen[0] != ballot:
                self.tombstones_seen[slot] = (ballot, now)
            elif now - seen[1] >= sim.config.tombstone_ttl:
                due.setdefault(slot[0], []).append(slot[1])
        for bucket, keys in due.items():
            sim.collection_seq += 1
            cid = sim.collection_seq
            self.collections[cid] = sim.mutations.collection_class()(bucket, keys, config.voters)
            self.timer(sim.config.round_timeout, self.collections.pop, cid, None)
            query = TombstoneQuery(cid, bucket, tuple(keys))
            for voter in config.voters:
                self.send(voter, query)

    def on_tombstone_query(self, src: str, msg: TombstoneQuery) -> None:
        if not self.voter or not self.acceptor.voting:
            return  # a learner's tombstones say nothing: the batch is skipped
        held = []
        for key in msg.keys:
            ballot = self.acceptor.tombstone(msg.bucket, key)
            if ballot is not None and not self.order.pending((msg.bucket, key)):  # durable only
                held.append((key, ballot))
        self.send(src, TombstoneReport(msg.cid, tuple(held)))

    def on_tombstone_report(self, src: str, msg: TombstoneReport) -> None:
        collection = self.collections.get(msg.cid)
        if collection is None:
            return
        collection.on_report(src, msg.held)
        if collection.complete:
            del self.collections[msg.cid]
            tombstones = collection.forget()
            if tombstones:
                for voter in collection.voters:
                    self.send(voter, Forget(collection.bucket, tombstones))

    def on_forget(self, msg: Forget) -> None:
        if not self.voter or not self.acceptor.voting:
            return
        record = self.acceptor.collect(msg.bucket, msg.tombstones)
        if record is None:
            return
        self.sim.count("collected")
        self.log(record)  # no reply waits for it

    def send_vote(self, dst: str, reply: Any, accepted: Accept | None, seq: int) -> None:
        """Send an acceptor reply, telling the promise checker what it promises (``seq``: the
        reply's place in the order the acceptor made its votes)."""
        kind = type(reply)
        if kind is Promise:
            self.sim.promises.voted(self.name, reply.bucket, reply.key, reply.ballot, reply.ballot, seq)
        elif kind is Accepted and accepted is not None:
            promised = accepted.next_ballot if reply.promised_next and accepted.next_ballot else reply.ballot
            self.sim.promises.voted(self.name, reply.bucket, reply.key, reply.ballot, max(promised, reply.ballot), seq)
        self.send(dst, reply)

    # -- leases and failure detection ------------------------------------------------

    def heartbeat(self) -> None:
        voters = self.lease.voters
        if self.config is None:
            self.tell_peers(ConfigHello(None, answer=True))  # a peer that missed our hello
        else:
            hb = self.lease.send_heartbeat(self.local())
            for voter in voters:
                self.send(voter, hb)
        for name in self.sim.nodes:
            if name != self.name and name not in voters:
                self.send(name, PING)
        self.timer(self.sim.config.heartbeat_every, self.heartbeat)
        self.perform(self.engine.view_changed(self.local(), resume=False))  # peers given up on since

    def lease_events(self, events: list[LeaseEvent]) -> None:
        for event in events:
            if isinstance(event, LeaseLost):
                self.sim.count("lease_lost_" + event.reason)
                self.kill_holders(self.holds.lost())
        if not self.lease_timer_armed and self.lease.expires_at is not None:
            self.lease_timer_armed = True
            self.timer(max(0.0, self.lease.expires_at - self.local()), self.lease_timer)

    def lease_timer(self) -> None:
        self.lease_timer_armed = False
        expires = self.lease.expires_at
        now = self.local()
        if expires is not None and now < expires and expires - now < 1e-9:
            now = expires  # float rounding of the timer
        self.lease_events(self.lease.poll(now))

    def suspects(self, node: str) -> bool:
        if node == self.name:
            return False
        heard = self.last_heard.get(node, self.booted_at)
        return self.local() - heard > self.sim.config.fd_timeout

    def superseded(self, pid: Pid) -> bool:
        """``pid`` belongs to an incarnation of its node that has since restarted."""
        if pid.node == self.name:
            return pid.incarnation < self.incarnation
        return pid.incarnation < self.known_incarnation.get(pid.node, 0)

    # -- membership: configurations, catch-up, changes left half-way (paxtor.paxos.membership) --

    def tell_peers(self, msg: Any) -> None:
        for name in self.sim.nodes:
            if name != self.name:
                self.send(name, msg)

    def install_config(self, config: VoterConfig) -> bool:
        """Use ``config`` (known chosen) if it is newer (`PaxosNode.install_config`): the
        acceptor installs it too, and the peers are told (a `MemberHello`). True if newer."""
        current = self.config
        if current is not None and config.version <= current.version:
            return False
        self.config = config
        self.lease.set_config(config)
        if self.voter:
            record = self.acceptor.install("sim", config)
            if record is not None:
                self.log(record, MEMBER_SLOT)
        self.tell_peers(ConfigHello(config))
        self.perform(self.engine.view_changed(self.local()))
        return True

    def voting_member(self) -> bool:
        """Whether this node votes now (`PaxosNode.voting`): its acceptor votes and its
        configuration names it."""
        config = self.config
        return self.voter and self.acceptor.voting and config is not None and config.is_member(self.name)

    def votes_now(self) -> bool:
        """What this node's hellos would say: an alive node whose acceptor votes."""
        return self.alive and self.voter and self.acceptor.voting

    def able(self, config: VoterConfig) -> list[str]:
        """The members of ``config`` that can answer now as far as this node can tell
        (`QuorumView.able`): itself if it votes, and the peers it hears that vote."""
        nodes = self.sim.nodes
        return [
            v
            for v in config.members
            if (self.votes_now() if v == self.name else not self.suspects(v) and nodes[v].votes_now())
        ]

    def membership_tick(self) -> None:
        self.timer(self.sim.config.membership_every, self.membership_tick)
        self._maybe_catch_up()
        self._maybe_finish_change()

    def _maybe_catch_up(self) -> None:
        """A learner catches up once enough of the other voters can answer (`reseat`)."""
        config = self.config
        if self.reseat is not None or self.acceptor.voting or config is None or not config.is_member(self.name):
            return
        sources = config.catch_up_sources(self.name, self.able(config))
        if sources is None:
            return
        self.reseat = Reseat(self, config, sources)
        self.reseat.start()

    def _maybe_finish_change(self) -> None:
        """The first member that can answer, once it has seen its configuration joint for
        ``resume_change_after``, finishes the change (`finish_left_change`)."""
        config = self.config
        if config is None or not config.joint:
            self.joint_since = None
            return
        now = self.local()
        if self.joint_since is None or self.joint_since[0] != config.version:
            self.joint_since = (config.version, now)
        able = self.able(config)
        waited = now - self.joint_since[1]
        if self.change is not None or not able or able[0] != self.name or waited < self.sim.config.resume_change_after:
            return
        self.change = self.sim.mutations.change_class()(self, joint=config)
        self.change.start()

    # -- calls to many voters, and the acceptor's side of them (paxtor.paxos.acceptor_server) --

    def gather(
        self,
        members: tuple[str, ...] | list[str],
        request: Callable[[int], Any],
        done: Callable[[dict[str, Any]], None],
        enough: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Call every member at once (``reconfig._gather``); ``done`` gets the answers. A call
        to a member this node takes for down fails at once (as one to a node the distribution
        layer declared down), else it waits up to ``call_timeout`` for the answer."""
        sim = self.sim
        sim.call_seq += 1
        tag = sim.call_seq
        gather = Gather(members, done, enough)
        self.gathers[tag] = gather
        msg = request(tag)
        down = [m for m in members if self.suspects(m)]
        for member in members:
            if member not in down:
                self.send(member, msg)
        self.timer(sim.config.call_timeout, self.call_timeout, tag)
        for member in down:
            if gather.over:
                break
            gather.on_answer(member, None)
        if not members:
            gather.finish()  # nobody to ask
        if gather.over:
            self.gathers.pop(tag, None)

    def on_answer(self, src: str, msg: Answer) -> None:
        gather = self.gathers.get(msg.tag)
        if gather is not None:
            gather.on_answer(src, msg.value)
            if gather.over:
                del self.gathers[msg.tag]

    def call_timeout(self, tag: int) -> None:
        gather = self.gathers.pop(tag, None)
        if gather is not None:
            gather.finish()

    def on_call(self, src: str, msg: Any) -> None:
        """A call of a voter change or catch-up; each answer waits until what it depends on is
        durable. A node without an acceptor fails the call at once."""
        tag = msg.tag
        if not self.voter:
            self.send(src, Answer(tag, None))
            return
        acceptor = self.acceptor
        kind = type(msg)
        if kind is Install:
            self.install_config(msg.config)
            self.when_synced(lambda: self.send(src, Answer(tag, acceptor.config_version)), (MEMBER_SLOT,))
        elif kind is KeyCount:
            self.send(src, Answer(tag, acceptor.key_count()))
        elif kind is FloorQuery:  # a learner's promises do not count: it says nothing
            self.send(src, Answer(tag, acceptor.promise_floor if acceptor.voting else None))
        elif kind is StateQuery:
            self.on_state_query(src, msg)
        elif kind is AdoptFloors:
            for record in acceptor.adopt(msg.rows, 0):
                self.log(record, COLLECTED_SLOT)
            self.when_synced(lambda: self.send(src, Answer(tag, True)), (COLLECTED_SLOT,))
        elif kind is BulkAccept:
            self.on_bulk_accept(src, msg)

    def snapshot(self) -> tuple[Any, ...]:
        return tuple(r for r in self.acceptor.snapshot() if type(r) is not MemberState)

    def on_state_query(self, src: str, msg: StateQuery) -> None:
        """A snapshot; with a ballot, promised for every key first (`Acceptor.fence`): the
        answer then waits until every record logged so far is durable (the floor that
        covers the promise, and the accepts whose values the snapshot reports). A learner
        answers nothing: wiped since it was asked its floor, its blank state would hide the
        values only it held."""
        if not self.acceptor.voting:
            self.send(src, Answer(msg.tag, None))
            return
        ballot = msg.ballot
        if ballot is None:
            self.send(src, Answer(msg.tag, self.snapshot()))
            return
        record = self.acceptor.fence(ballot)
        self.votes += 1
        seq = self.votes
        if record is not None:
            self.log(record, FLOOR_SLOT)

        def answer() -> None:
            self.sim.promises.fenced(self.name, ballot, self.sim.workload.slots(), seq)
            self.send(src, Answer(msg.tag, self.snapshot()))

        self.when_synced(answer)

    def on_bulk_accept(self, src: str, msg: BulkAccept) -> None:
        """Accept each item at the bulk round's ballot as an `Accept` would; the answer (the
        slots refused) waits for the accepts to be durable."""
        now = self.local()
        refused: list[Slot] = []
        accepted: list[Accept] = []
        slots: list[Slot] = [FLOOR_SLOT]
        self.votes += 1
        seq = self.votes
        for bucket, key, register in msg.items:
            accept = Accept(bucket, key, msg.ballot, register, None, msg.config)
            reply, record = self.acceptor.on_accept(accept, now)
            slot = (bucket, key)
            slots.append(slot)
            if type(reply) is not Accepted:
                refused.append(slot)
                continue
            self.sim.ballots.accepted(self.name, bucket, key, msg.ballot, register)
            accepted.append(accept)
            if record is not None:
                self.log(record, slot, accept)

        def answer() -> None:
            for accept in accepted:
                self.sim.promises.voted(self.name, accept.bucket, accept.key, accept.ballot, accept.ballot, seq)
            self.send(src, Answer(msg.tag, tuple(refused)))

        self.when_synced(answer, tuple(slots))

    def catch_up(self, records: list[Any], floor: int, on_voting: Callable[[], None]) -> None:
        """Take the state read from the other voters, vote once it is durable
        (`LocalAcceptor.catch_up`); ``on_voting`` once that is durable too."""
        for record in self.acceptor.adopt(records, floor):
            self.log(record)

        def durable() -> None:
            self.log(self.acceptor.start_voting(), MEMBER_SLOT)
            self.when_synced(on_voting)

        self.when_synced(durable)

    def read_rounds(self, slots: list[Slot], then: Callable[[], None]) -> None:
        """An identity round on each of ``slots`` (``api.propose(key, identity)``), then ``then``."""
        left = [len(slots)]

        def done(_op: Op, _register: Register) -> None:
            left[0] -= 1
            if left[0] == 0:
                then()

        if not slots:
            then()
        for bucket, key in slots:
            self.serial += 1
            self.submit(Op(bucket, key, ("get",), ("migrate", self.name, self.incarnation, self.serial), done))

    # -- rounds: the production proposer engine, fed by this node -----------------------

    def submit(self, op: Op) -> None:
        """Invoke ``op``: the engine runs it (queued behind the requests on its key)."""
        sim = self.sim
        if op.request == 0:
            op.request = sim.liveness.invoked(str(op.input[0]), self.name, sim.q.now)
        self.active[op.request] = op
        op.history = sim.open_history(op)  # invoked now, even if it waits for its key
        self._propose(op)

    def _propose(self, op: Op) -> None:
        if op.keep_going is not None and not op.keep_going():
            self.give_up(op)
            return
        if op.history is None:
            op.history = self.sim.open_history(op)
        request = ProposeRequest(
            op.bucket, op.key, op.change, op.timeout,
            ended=op.ended, claims_local=op.needs_lease, checked=True, attempt=op.attempt,
        )  # fmt: skip
        self.perform(self.engine.submit(request, op, self.local()))

    def _resubmit(self, op: Op) -> None:
        if self.active.get(op.request) is op:
            self._propose(op)

    def engine_timer(self, token: Any) -> None:
        self.perform(self.engine.on_timer(token, self.local()))

    def perform(self, effects: list[Any]) -> None:
        """Carry out the proposer engine's effects (see `paxtor.paxos.proposer_engine`)."""
        sim = self.sim
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self.send(effect.voter, effect.msg)
            elif kind is StartTimer:
                self.timer(effect.delay, self.engine_timer, effect.token)
            elif kind is Finish:
                self.finished(effect)
            elif kind is Started:
                effect.token.round = effect.round
            elif kind is Decided:
                sim.count(effect.decision.outcome)
                if effect.round.cached is not None:
                    sim.count("one_rtt_" + effect.decision.outcome)
                effect.token.retry_after = effect.decision.retry_after
                if not effect.decision.ok:
                    effect.token.attempt += 1
                if effect.decision.maybe_applied:
                    sim.note_accepts(effect.token)  # the request retries as one operation: exactly once
            elif kind is Kill:
                self.kill(effect.pid, effect.reason)
            elif kind is VouchRelease:
                self.vouched((effect.bucket, effect.key), effect.fence, effect.reason)
            elif kind is AskConfig:
                self.send(effect.voter, ConfigHello(self.config, answer=True))
            elif kind is TenureNow:  # a holder here that lost its tenure unawares dies
                self.kill_holders(self.holds.tenure_now((effect.bucket, effect.key), effect.epoch, effect.owner))
            # CancelTimer: a stale firing is ignored by the engine. HoldOrKill, WatchTenure:
            # a claim is granted when it finishes (`grant`), a dead owner's key released by
            # its node (`kill`). Learner: `able` reads who votes directly.

    def finished(self, effect: Finish) -> None:
        sim = self.sim
        op: Op = effect.token
        error = effect.error
        if error is None:
            assert effect.register is not None
            register = effect.register.visible()
            op.term = effect.term
            sim.close_history(op, register)
            sim.liveness.completed(op.request, sim.q.now)
            del self.active[op.request]
            if op.grant_pid is not None:
                self.grant(op, register)
            if op.ended is not None and op.input[0] == "release":
                self.wake_new_owner(op, register)
            if op.on_done is not None:
                op.on_done(op, register)
        elif isinstance(error, ChangeRejected):
            sim.violations.append(f"{self.name}: change rejected for {op.input!r}: {error}")
            self.give_up(op)
            if op.on_fail is not None:
                op.on_fail(op, error)
        elif op.on_fail is not None:  # its client decides what comes next (a lock home's batch)
            sim.close_history(op, None)
            sim.liveness.completed(op.request, sim.q.now)
            del self.active[op.request]
            op.on_fail(op, error)
        else:
            # gave up at its deadline (kept short of a collection of its op mark): maybe
            # applied; the client sends the same operation again as a new request, after
            # the wait its last round asked for (a backoff, or a veto's wait for a lease)
            sim.close_history(op, None)
            self.timer(op.retry_after or 0.0, self._resubmit, op)

    def give_up(self, op: Op) -> None:
        self.sim.close_history(op, None)
        self.sim.liveness.abandoned(op.request)
        self.active.pop(op.request, None)

    # -- processes and ownership -----------------------------------------------------

    def spawn(self, proc: Any) -> Pid:
        self.serial += 1
        pid = Pid(self.name, self.incarnation, self.serial)
        self.procs[pid] = proc
        return pid

    def grant(self, op: Op, register: Register) -> None:
        pid = op.grant_pid
        assert pid is not None
        binding = register.binding
        if binding is None or binding.pid != pid or pid in self.owners:
            return
        if pid not in self.procs:
            self.release(op.slot, register.epoch, binding, "noproc")
            return
        if not self.hold(pid, op.slot, register.epoch, binding, op.term):
            self.release(op.slot, register.epoch, binding, "lease_expired")
            self.kill(pid, "lease_expired")

    def hold(self, pid: Pid, slot: Slot, epoch: int, binding: Binding, term: int | None) -> bool:
        """The lease keeper's ``hold``: local ``pid`` owns tenure ``epoch`` of ``slot`` if it
        is alive and this node's lease is still in ``term`` (the one its round started in).
        A holder of an earlier tenure of the key here (a keeper whose claim passed to its
        child) holds it no more.

        The owner checker counts the holder from now on, unless its process says otherwise
        (``checked = False``: a singleton's keeper, whose claim protects the start of its
        child, not a singleton; it may go on holding the claim after its bind was chosen,
        until its node hears so. The singleton checker counts the child instead)."""
        proc = self.procs.get(pid)
        held, _ = self.holds.hold(pid, slot, epoch, term, self.lease.term_at(self.local()), proc is not None)
        if not held:
            return False
        checker = self.sim.owner_checker
        for other in [p for p, owner in self.owners.items() if owner.slot == slot and p != pid]:
            del self.owners[other]
            checker.stop(slot, other)
        checked = getattr(proc, "checked", True)
        self.owners[pid] = Owner(slot, epoch, binding, checked)
        if checked:
            checker.start(slot, pid, epoch, self.sim.q.now)
        return True

    def unhold(self, pid: Pid) -> Owner | None:
        """``pid`` gives its tenure up (``unlock``): it holds nothing here any more, and its
        tenure ends with its unlock round, or with its exit if that comes first."""
        owner = self.owners.pop(pid, None)
        if owner is not None:
            self.holds.unhold(pid, owner.slot, owner.epoch)
            self.sim.owner_checker.stop(owner.slot, pid)
            self.unlocking[pid] = owner
        return owner

    def kill_holders(self, effects: list[Any]) -> None:
        """Carry out the lease keeper engine's kills (`LeaseHolds`)."""
        for effect in effects:
            if type(effect) is KillHolder:
                self.kill(effect.pid, "lease_expired")

    def kill(self, pid: Pid, reason: str) -> None:
        """``pid`` exits with ``reason``; if it owned a key, release it (this node saw it die)."""
        self.holds.forget(pid)
        owner = self.owners.pop(pid, None)
        if owner is not None:
            self.sim.owner_checker.stop(owner.slot, pid)
        else:
            owner = self.unlocking.pop(pid, None)
        if owner is not None:
            self.release(owner.slot, owner.epoch, owner.binding, reason)
        proc = self.procs.pop(pid, None)
        if proc is not None:
            self.sim.workload.proc_exited(self, pid, proc, reason)

    def release(
        self, slot: Slot, epoch: int, binding: Binding, reason: str, keep_going: Callable[[], bool] | None = None
    ) -> None:
        """End tenure ``epoch`` bound to ``binding`` (PaxosKV's binding machinery: the owner
        exited, or is gone), by the bucket's release policy: a lock goes to its first waiter
        (``"release"``), a singleton's key is emptied (``"end"``)."""
        if self.releasing(slot, epoch):
            return  # one release of a tenure at a time here: it goes on until it is done
        self.serial += 1
        kind = "end" if kind_of(slot[0]) == NAME else "release"
        op = Op(
            slot[0],
            slot[1],
            (kind, epoch, binding, reason),
            process=("release", self.name, self.incarnation, self.serial),
            keep_going=keep_going,
        )
        self.submit(op)

    def reap(self, slot: Slot, register: Register) -> None:
        """Release a binding whose owner this node believes gone (noconnection, vetoed)."""
        binding = register.binding
        if binding is None or binding.pid is None:
            return
        pid = binding.pid
        if not (self.superseded(pid) or self.suspects(pid.node)):
            return
        mark = (slot, register.epoch)
        if mark in self.reaping or self.releasing(slot, register.epoch):
            return
        self.reaping[mark] = True

        def still_gone() -> bool:
            if self.superseded(pid) or self.suspects(pid.node):
                return True
            del self.reaping[mark]
            return False

        self.serial += 1
        op = Op(
            slot[0],
            slot[1],
            ("end" if kind_of(slot[0]) == NAME else "release", register.epoch, binding, "noconnection"),
            process=("reap", self.name, self.incarnation, self.serial),
            keep_going=still_gone,
        )
        op.on_done = lambda _op, _reg: self.reaping.pop(mark, None)
        self.submit(op)

    def releasing(self, slot: Slot, epoch: int) -> bool:
        """Whether a release of tenure ``epoch`` of ``slot`` is under way here."""
        return any(
            op.input[0] in ("release", "end") and op.input[1] == epoch and op.slot == slot
            for op in self.active.values()
        )

    def watch_binding(self, slot: Slot, epoch: int, binding: Binding) -> None:
        """A voter's binding watcher (`paxtor.paxos.bindings`) on a tenure its acceptor
        accepted: a pid found dead by its node (its monitor says "noproc": gone, or of an
        earlier incarnation) has its tenure released, staggered by this voter's rank. A
        lock request that reaches the home after its process died can bind a dead pid."""
        pid = binding.pid
        assert pid is not None
        owner_node = self.sim.nodes[pid.node]
        if not owner_node.alive or (pid.node != self.name and self.suspects(pid.node)):
            return  # its monitor would say "noconnection": the clients' reaping covers that
        if pid.incarnation == owner_node.incarnation and pid in owner_node.procs:
            return
        mark = (slot, epoch)
        if mark in self.reaping:
            return
        self.reaping[mark] = True
        config = self.config
        others = sorted(v for v in config.members if v != pid.node) if config is not None else []
        rank = others.index(self.name) if self.name in others else len(others)
        self.timer(self.sim.config.release_stagger * rank, self.release_dead, slot, epoch, binding)

    def release_dead(self, slot: Slot, epoch: int, binding: Binding) -> None:
        """The watcher's release, unless this voter's acceptor has accepted a register without
        that tenure meanwhile (another voter's release got there); it goes on while that holds."""

        def still_bound() -> bool:
            return self.acceptor.state(*slot).accepted.is_bound_to(epoch, binding)

        if still_bound():
            self.release(slot, epoch, binding, "noproc", still_bound)

    def vouched(self, slot: Slot, fence: LeaseFence, reason: str) -> None:
        """Release a fenced tenure of this node's pid for ``reason`` (the engine vouched for it:
        the pid is dead or was never granted here), once per tenure."""
        mark = (slot, fence.epoch)
        if mark in self.reaping:
            return
        self.reaping[mark] = True
        self.release(slot, fence.epoch, fence.binding, reason)

    def wake_new_owner(self, op: Op, register: Register) -> None:
        """The locks bucket's ``on_release`` (`paxtor.locks.home.wake_new_owner`) after a
        release round of this node that handed the lock on: wake the new owner."""
        if op.ended is None or register.epoch != op.ended.epoch + 1 or kind_of(op.bucket) != LOCK:
            return
        owner, grant = owner_of(register), grant_of(register)
        if owner is not None and grant is not None:
            self.send_wake(LockWake(owner, op.key, register.epoch, grant))  # type: ignore[arg-type]

    def send_wake(self, wake: LockWake) -> None:
        """To the lock agent of the new owner's node (`paxtor.locks.messages.send_wake`)."""
        if wake.pid.node == self.name:
            self.sim.workload.lock_wake(self, wake)
        else:
            self.send(wake.pid.node, wake)

    # -- lock rounds: the keys' homes and their batching engine (paxtor.locks.home) ----------

    def run_lock_op(
        self, key: bytes, op: LockOp, then: Callable[[Register], None], alive: Callable[[], bool]
    ) -> None:
        """`paxtor.locks.home.run_op`: ``op`` on lock ``key``, ``then`` gets the chosen register.

        A key this node has seen contended lately (an answer with waiters, or a round of its
        own that could not land within ``local_attempt``) goes to its home; any other is
        proposed here. Sent again after ``quorum_wait`` while no quorum answers, as long as
        its caller is ``alive``."""
        if not alive():
            return
        local = not self.is_hot(key)

        def answered(outcome: tuple[Any, ...]) -> None:
            if not alive():
                return
            kind = outcome[0]
            if kind == "ok":
                if has_waiters(outcome[1]):
                    self.mark_hot(key)
                then(outcome[1])
            elif kind == "no_quorum" and local:
                self.mark_hot(key)  # most likely dueling with the home's rounds: join them
                self.run_lock_op(key, op, then, alive)
            elif kind == "no_quorum":
                self.timer(self.sim.config.quorum_wait * self.sim.config.lease, self.run_lock_op, key, op, then, alive)
            else:
                self.sim.violations.append(f"{self.name}: lock operation {op!r} failed: {outcome[1]!r}")

        if local:
            self.apply_batch(key, op, answered)
        else:
            self.lock_call(key, op, answered)

    def is_hot(self, key: bytes) -> bool:
        until = self.hot.get(key)
        return until is not None and until > self.local()

    def mark_hot(self, key: bytes) -> None:
        self.hot[key] = self.local() + self.sim.config.hot_ttl * self.sim.config.lease

    def apply_batch(self, key: bytes, op: LockOp, then: Callable[[tuple[Any, ...]], None]) -> None:
        """`paxtor.locks.home.apply_batch` of ``op`` alone, proposed here within
        ``local_attempt``; a release that hands the lock on wakes the new owner."""
        cfg = self.sim.config
        self.sim.count("lock_local_rounds")

        def done(_op: Op, register: Register) -> None:
            wake = wake_for_batch(key, [op], register)
            if wake is not None:
                self.send_wake(wake)
            then(("ok", register))

        def failed(_op: Op, error: BaseException) -> None:
            then(("no_quorum", str(error)) if isinstance(error, NoQuorum) else ("error", error))

        self.serial += 1
        self.submit(
            Op(
                bucket_of(LOCK, key), key, ("batch", (op,)), ("local", self.name, self.incarnation, self.serial),
                done, given=batch_change([op]), timeout=cfg.local_attempt * cfg.lease, on_fail=failed,
            )
        )  # fmt: skip

    def lock_home_of(self, key: bytes) -> str:
        """The node whose lock home proposes ``key``'s rounds: rendezvous hashing over the
        acceptor nodes this one hears, itself included (`LockRouting.home_of` over the
        connected voters); this node alone if it hears none."""
        candidates = [
            name
            for name, node in self.sim.nodes.items()
            if node.voter and (name == self.name or not self.suspects(name))
        ]
        return rendezvous_order(key, candidates or [self.name])[0]

    def lock_call(self, key: bytes, op: LockOp, then: Callable[[tuple[Any, ...]], None]) -> None:
        """One try of `paxtor.locks.home.run_op` for a contended key: ``op`` goes to the key's
        home, and ``then`` gets its answer, or ``("no_quorum", why)`` if none comes within
        ``lock_call_timeout``."""
        sim = self.sim
        sim.call_seq += 1
        tag = sim.call_seq
        self.lock_calls[tag] = then
        self.timer(sim.config.lock_call_timeout, self.lock_answered, tag, ("no_quorum", "no answer from the home"))
        home = self.lock_home_of(key)
        if home == self.name:
            self.perform_home(self.lock_home.request(key, (self.name, tag), op, None))
        else:
            self.send(home, LockCall(tag, key, op, None))

    def lock_answered(self, tag: int, result: tuple[Any, ...]) -> None:
        then = self.lock_calls.pop(tag, None)
        if then is not None:
            then(result)

    def perform_home(self, effects: list[Any]) -> None:
        """Carry out the lock home engine's effects, as `paxtor.locks.home.LockHome` does."""
        for effect in effects:
            kind = type(effect)
            if kind is ProposeBatch:
                self.propose_batch(effect)
            elif kind is HomeAnswer:
                dst, tag = effect.token
                if dst == self.name:
                    self.lock_answered(tag, effect.result)
                else:
                    self.send(dst, LockReply(tag, effect.result))
            elif kind is Wake:
                self.send_wake(effect.wake)
            elif kind is StartDelay:
                self.sim.call_seq += 1
                self.home_delays[effect.key] = self.sim.call_seq
                self.timer(effect.delay, self.home_deferred, effect.key, self.sim.call_seq)
            elif kind is CancelDelay:
                self.home_delays.pop(effect.key, None)

    def home_deferred(self, key: bytes, serial: int) -> None:
        if self.home_delays.get(key) == serial:
            del self.home_delays[key]
            self.perform_home(self.lock_home.deferred(key))

    def propose_batch(self, batch: ProposeBatch) -> None:
        """A batch's round, by this node's proposer engine: the engine's own change, recorded
        in the history as one operation (``("batch", ops)``: the model applies
        ``batch_change(ops)``)."""
        key, tag = batch.key, batch.tag
        self.sim.count("lock_batches")
        if len(batch.ops) > 1:
            self.sim.count("lock_batches_shared")

        def done(_op: Op, register: Register) -> None:
            self.perform_home(self.lock_home.round_done(key, tag, register, None))

        def failed(_op: Op, error: BaseException) -> None:
            self.perform_home(self.lock_home.round_done(key, tag, None, error))

        op = Op(
            bucket_of(LOCK, key), key, ("batch", batch.ops), ("home", self.name, self.incarnation, tag), done,
            given=(batch.change, batch.ended), timeout=batch.timeout, on_fail=failed,
        )  # fmt: skip
        self.submit(op)


class SimHost:
    """What the proposer engine reads of a simulated node (`ProposerHost`)."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    def voter_config(self) -> VoterConfig | None:
        return self.node.config

    def able(self) -> list[str]:
        config = self.node.config
        return self.node.able(config) if config is not None else []

    def has_quorum(self) -> bool:
        config = self.node.config
        return config is not None and config.is_quorum(self.node.able(config))

    def connected_others(self) -> list[str]:
        name = self.node.name
        return [v for v in self.able() if v != name]

    def down_members(self) -> list[str]:
        config = self.node.config
        if config is None:
            return []
        able = self.able()
        return [v for v in config.members if v not in able]

    def votes_here(self) -> bool:
        return self.node.voting_member()

    def lease_term(self, now: float) -> int | None:
        return self.node.lease.term_at(now)

    def promised(self, bucket: str, key: Hashable) -> Ballot | None:
        node = self.node
        return node.acceptor.promised(bucket, key) if node.voter else None

    def is_local(self, pid: Pid) -> bool:
        return pid.node == self.node.name and pid.incarnation == self.node.incarnation

    def holds_key(self, slot: Slot) -> bool:
        return slot in self.node.holds.held_by

    def holds_tenure(self, pid: Pid, bucket: str, key: Hashable, epoch: int) -> bool:
        return self.node.holds.holds_tenure(pid, (bucket, key), epoch)

    def is_alive(self, pid: Pid) -> bool:
        return pid in self.node.procs


class Cluster:
    """One seed's world: fault plan, network, nodes, workload and checkers."""

    def __init__(
        self,
        seed: int,
        config: SimConfig = SimConfig(),
        mutations: Mutations = Mutations(),
        plan: FaultPlan | None = None,
    ) -> None:
        from paxtor.sim.workload import Workload  # workload drives nodes: import late

        self.seed = seed
        self.config = config
        self.mutations = mutations
        self.rng = random.Random(seed)
        if plan is None:  # ``plan``: a scenario written by hand; the seed draws the rest
            plan = plan_faults(
                self.rng,
                lease=config.lease,
                fault_time=config.fault_time,
                clock_spread=config.spread,
                kinds=config.faults,
            )
        self.plan: FaultPlan = plan
        self.voters = self.plan.voters  # the founding voters
        #: the configuration register: every configuration chosen, by version, and the latest
        self.voter_config = VoterConfig.initial(self.voters)
        self.configs: dict[int, VoterConfig] = {1: self.voter_config}
        self.q = EventQueue()
        self.net = Network(self.rng, self.plan.net)
        self.end = config.fault_time + config.tail
        self.violations: list[str] = []
        self.ballots = BallotChecker()
        self.promises = PromiseChecker()
        self.chosen = ChosenChecker(self.configs)
        self.owner_checker = OwnerChecker()
        self.singleton_checker = OwnerChecker()  # singletons alive (from their start), not holders
        self.liveness = LivenessChecker(config.fault_time + config.settle, config.op_bound)
        self.history: list[list[Any]] = []
        self.messages = 0
        self.events = 0
        self.collection_seq = 0
        self.max_request_time = max_request_time(config.tombstone_ttl, config.max_drift)
        self.call_seq = 0  # tags of calls to many voters
        self.cut_victim: str | None = None  # the node the last `_cut` isolated
        self.stats: dict[str, int] = {}
        self._trace = hashlib.blake2b(digest_size=16)
        self.nodes = {
            name: SimNode(
                self,
                name,
                name in self.plan.acceptors,
                self.plan.clock_rates[name],
                self.plan.clock_offsets[name],
            )
            for name in self.plan.nodes
        }
        self.workload = Workload(self)
        self._schedule_faults()

    # -- faults ------------------------------------------------------------------------

    def _schedule_faults(self) -> None:
        q = self.q
        for node in self.nodes.values():
            q.at(0.0, node.boot)
        for start, end, name, blocked in self.plan.partitions:
            q.at(start, self.net.partition, name, blocked)
            q.at(end, self.net.heal)
        for name, at, down in self.plan.crashes:
            q.at(at, self._crash, name, down)
        for name, at, down in self.plan.wipes:
            q.at(at, self._wipe, name, down)
        for name, at, length in self.plan.pauses:
            q.at(at, self.nodes[name].pause, length)
        for at, kind, coordinator, victim in self.plan.changes:
            q.at(at, self._change, kind, coordinator, victim)
        for at, end, victim in self.plan.cuts:
            q.at(at, self._cut, end, victim)
        q.at(self.plan.heal_at, self._final_heal)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def count_by(self, what: str, n: int) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def choose_config(self, expected: VoterConfig, new: VoterConfig) -> VoterConfig:
        """The configuration register's round (``set_config``): ``expected`` -> ``new``, else
        keep; the register's value after it (chosen atomically, as that round would)."""
        if self.voter_config == expected:
            self.voter_config = new
            self.configs[new.version] = new
            self.count("configs_chosen")
            if expected.joint:  # bounds count once the voters are stable again (see LivenessChecker)
                self.liveness.start = max(self.liveness.start, self.q.now + self.config.settle)
        return self.voter_config

    def _cut(self, end: float, victim: str | None) -> None:
        """Isolate ``victim`` until ``end``; None: a node that holds a lock, if any does."""
        if victim is None:
            owning = [name for name, node in self.nodes.items() if node.alive and node.owners]
            victim = self.rng.choice(owning or list(self.nodes))
        self.cut_victim = victim
        self.net.partition(f"isolate({victim})", isolate(victim, list(self.nodes)))
        self.q.at(end, self.net.heal)

    def _change(self, kind: str, coordinator: str, victim: str | None) -> None:
        """An operator changes the voters from ``coordinator`` (see `pick_voters`)."""
        if kind == "replace_cut":
            victim = self.cut_victim
        node = self.nodes[coordinator]
        if not node.alive or node.paused or node.change is not None:
            self.count("changes_skipped")
            return
        acceptors = self.plan.acceptors

        def pick(current: VoterConfig) -> tuple[str, ...] | None:
            return pick_voters(kind, current, acceptors, self.rng, victim)

        node.change = self.mutations.change_class()(node, pick=pick)
        node.change.start()

    def _crash(self, name: str, down: float) -> None:
        node = self.nodes[name]
        if node.alive:
            node.crash()
            self.q.after(down, node.boot)

    def _wipe(self, name: str, down: float) -> None:
        """Crash ``name`` and lose its disk, unless that would lose a majority's disks
        (another voter is still catching up or down with a lost disk): no system survives that."""
        node = self.nodes[name]
        config = self.voter_config
        if any(n.lost_disk and config.is_member(n.name) for n in self.nodes.values() if n is not node):
            return
        if not node.alive or not node.acceptor.voting:
            return
        node.crash()
        node.durable = {}
        node.lost_disk = True
        self.promises.forget(name)  # what it promised is ended by the new configuration version
        self.count("wipes")
        self.q.after(down, node.boot)

    def operator_wipe(self, name: str) -> None:
        """An operator wipes the data directory of ``name`` (no voter now) and starts it again."""
        node = self.nodes[name]
        if not node.alive or self.voter_config.is_member(name):
            return
        node.crash()
        node.durable = {}
        self.promises.forget(name)
        self.count("operator_wipes")
        self.q.after(0.1 * self.config.lease, node.boot)

    def _final_heal(self) -> None:
        self.net.heal()
        self.net.faults = self.plan.calm

    # -- messages ------------------------------------------------------------------------

    def transmit(self, src: str, src_incarnation: int, dst: str, msg: Any) -> None:
        self.messages += 1
        for delay in self.net.delays(src, dst):
            self.q.after(delay, self._deliver, src, src_incarnation, dst, msg)

    def _deliver(self, src: str, src_incarnation: int, dst: str, msg: Any) -> None:
        if src != dst and self.net.is_blocked(src, dst):
            return
        self.nodes[dst].deliver(src, src_incarnation, msg)

    # -- history ---------------------------------------------------------------------------

    def open_history(self, op: Op) -> list[Any]:
        # process, key, input, output, invoke, complete, ballots of its rounds that sent accepts
        entry = [op.process, op.slot, op.input, None, self.q.now, None, []]
        self.history.append(entry)
        return entry

    def close_history(self, op: Op, output: Register | None) -> None:
        """Complete ``op``'s current history entry (``output`` None: maybe applied)."""
        entry = op.history
        if entry is None:
            return
        op.history = None
        if output is not None:
            entry[3] = output
            entry[5] = self.q.now
        else:
            self.note_accepts(op, entry)

    def note_accepts(self, op: Op, entry: list[Any] | None = None) -> None:
        """Record the ballot of ``op``'s current round in its history entry if it sent accepts."""
        entry = entry or op.history
        if entry is not None and op.round is not None and op.round.proposed is not None:
            entry[6].append(op.round.ballot)

    def client_history(self) -> list[tuple[Any, ...]]:
        """The history for the linearizability check, minus requests that provably did nothing.

        A request that failed is "maybe applied" only if some acceptor accepted
        its round's ballot: a value no acceptor ever accepted cannot be chosen
        or adopted. The simulator sees every accept, so it can drop the rest
        (which keeps the search small); a real client could not.
        """
        out = []
        for process, slot, op_input, output, invoke, complete, ballots in self.history:
            if complete is None and not any(self.ballots.was_accepted(slot[0], slot[1], b) for b in ballots):
                continue
            out.append((process, slot, op_input, output, invoke, complete))
        return out

    # -- running ---------------------------------------------------------------------------

    def run(self) -> None:
        q = self.q
        trace = self._trace
        pack = struct.Struct("<d").pack
        end = self.end
        events = 0
        while True:
            item = q.pop()
            if item is None or item[0] > end:
                break
            when, fn, args = item
            events += 1
            trace.update(pack(when))
            trace.update(fn.__name__.encode())
            fn(*args)
        self.events = events
        self.q.now = end

    def trace_hash(self) -> str:
        final = self._trace.copy()
        for entry in self.history:
            final.update(repr(entry).encode())
        return final.hexdigest()
