"""The pure Paxos acceptor of one node, and the messages of a round.

Contract for the driver (the acceptor process):

- For every message received from node N (incarnation i), whatever it is,
  call ``acceptor.heard(N, i, now)`` first: the lease veto depends on it.
- ``on_prepare(msg, now)`` and ``on_accept(msg, now)`` return ``(reply, record)``.
  ``record`` is None, a `KeyRecord` (the key's complete new state) or a
  `PromiseFloor`. The driver must append it to the durable log and fsync it
  (group commit is fine) BEFORE sending ``reply``. A reply with
  ``record=None`` changes nothing durable but may depend on a pending record
  OF ITS KEY (the accepted value a promise reports) or on a pending
  `PromiseFloor`, so it waits behind the last of those; replies never
  overtake such a record.
- ``on_heartbeat(N, i, hb, now)`` returns a `HeartbeatAck` to send at once
  (heartbeat state is volatile by design).
- On restart, rebuild with ``Acceptor(identity, silence, records=log)`` where
  ``log`` is every record ever synced, in order (the last `KeyRecord` per key
  wins, the highest `PromiseFloor` counts), or `Acceptor.snapshot()`. A fresh
  `SilenceTracker` started at the restart time is required and safe. An
  acceptor that lost its records must not vote (amnesia breaks Paxos): one
  rebuilt from nothing is *blank* and refuses every round ("learner") until it
  is made a voter (`found`, `install`, `adopt` + `start_voting`; see
  `MemberState`). ``voting=True`` makes one that votes from the start.
- Every round message carries the proposer's voter configuration version; an
  acceptor refuses one older than the configuration it installed ("config"),
  which is what ends an old configuration's rounds (`paxtor.paxos.reconfig`).

Rules: promise a ballot >= every ballot promised so far; accept a ballot >=
the promise, unless the register carries a `LeaseFence` the `SilenceTracker`
vetoes. A prepare for a noconnection release names the tenure (``lease_fence``)
and is refused the same way, without a promise: its accept would be vetoed,
and a release accepted by a minority only would be adopted by later rounds
and vetoed in turn for as long as the owner is heard (one-way partitions).
The check at accept time is the one safety rests on. An accept may ask for a
promise of ``next_ballot`` in the same step (CASPaxos 1-RTT): the proposer
that wrote a key last may then skip phase 1. Refusing (Nack) never harms safety.

Promises cost no fsync of their own. The acceptor keeps a durable
`PromiseFloor`, a ballot counter above every promise it has made: a prepare
whose counter is at or below it is promised in memory only, and one above it
raises the floor by `FLOOR_STRIDE` first (one small record, rarely). A
restarted acceptor refuses every ballot whose counter is at or below the floor
it replays, so a promise it forgot can never be broken; proposers fast-forward
past the floor once (their counter is node-wide). Accepts stay durable before
their reply: the value is what gets chosen.

Tombstones are collected (CASPaxos section 2.3, with floors instead of
proposer ages): once EVERY voter durably holds a key's tombstone at the same
ballot (``tombstone``), each drops it (``collect``) and logs a `Collected`
record. A key it does not hold then counts as promised above every ballot it
had promised or accepted for a dropped key (stale accepts are refused), and
reads as empty at the bucket's epoch floor (epochs keep growing). Since every
voter held the tombstone, "absent" is that tombstone for any quorum; a voter
that crashes before its `Collected` record is durable replays the tombstone,
which says the same.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from paxtor.actors.wire import wire_type
from paxtor.paxos.ballot import Ballot, NodeId
from paxtor.paxos.lease import Heartbeat, HeartbeatAck, SilenceTracker
from paxtor.paxos.register import LeaseFence, Register
from paxtor.paxos.voter_config import VoterConfig

__all__ = [
    "Accept",
    "Accepted",
    "Acceptor",
    "Collected",
    "KeyRecord",
    "LogRecord",
    "Nack",
    "Prepare",
    "Promise",
    "PromiseFloor",
    "FLOOR_STRIDE",
    "NACK_BALLOT",
    "NACK_CONFIG",
    "NACK_LEARNER",
    "NACK_LEASE_VETO",
    "MemberState",
]

NACK_BALLOT = "ballot"
NACK_LEASE_VETO = "lease_veto"
NACK_CONFIG = "config"
NACK_LEARNER = "learner"

FLOOR_STRIDE = 1 << 32
"""How far above a prepare's counter a raised floor goes: raises are rare even
though contended rounds skip ahead 2**16 at a time, and 2**64 counters last
2**32 restarts."""


@wire_type(name="paxos.Prepare")
@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a; ``lease_fence``: the round would release this tenure for noconnection."""

    bucket: str
    key: Hashable
    ballot: Ballot
    lease_fence: LeaseFence | None = None
    config: int = 0  # the proposer's voter configuration version


@wire_type(name="paxos.Promise")
@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the acceptor promised ``ballot`` and reports what it accepted last."""

    bucket: str
    key: Hashable
    ballot: Ballot
    accepted_ballot: Ballot
    accepted: Register


@wire_type(name="paxos.Accept")
@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a; ``next_ballot`` asks for a promise of the proposer's next ballot (1-RTT)."""

    bucket: str
    key: Hashable
    ballot: Ballot
    register: Register
    next_ballot: Ballot | None = None
    config: int = 0  # the proposer's voter configuration version


@wire_type(name="paxos.Accepted")
@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b; ``promised_next``: the acceptor also promised the requested next ballot."""

    bucket: str
    key: Hashable
    ballot: Ballot
    promised_next: bool


@wire_type(name="paxos.Nack")
@dataclass(frozen=True, slots=True)
class Nack:
    """Refusal of ``ballot``: a higher ballot was promised, the lease veto applies, the
    proposer's voter configuration is older than ``config`` (this acceptor's), or this
    acceptor does not vote (a learner)."""

    bucket: str
    key: Hashable
    ballot: Ballot
    promised: Ballot
    reason: str = NACK_BALLOT
    config: int = 0


@wire_type(name="paxos.KeyRecord")
@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The durable state of one key at one acceptor (a log record and a snapshot row)."""

    bucket: str
    key: Hashable
    promised: Ballot
    accepted_ballot: Ballot
    accepted: Register


@wire_type(name="paxos.PromiseFloor")
@dataclass(frozen=True, slots=True)
class PromiseFloor:
    """A durable bound: every promise made so far has a ballot counter <= ``counter``."""

    counter: int


@wire_type(name="paxos.Collected")
@dataclass(frozen=True, slots=True)
class Collected:
    """A durable record: the tombstones of ``keys`` in ``bucket`` were dropped.

    Every key this acceptor does not hold counts as promised above ballot
    counter ``counter``, and ``bucket``'s epochs stay above ``epoch``. A
    snapshot keeps the floors as rows without keys.
    """

    bucket: str
    keys: tuple[Hashable, ...]
    counter: int
    epoch: int


@wire_type(name="paxos.MemberState")
@dataclass(frozen=True, slots=True)
class MemberState:
    """A durable record: the cluster this acceptor belongs to, the newest voter
    configuration it installed, and whether it votes. ``voting`` is False while its
    state may be incomplete: it lost it (a wiped disk), or it never joined."""

    cluster: str
    config: VoterConfig | None
    voting: bool
    node: str = ""  # the node whose acceptor this is: a log copied to another node is refused


LogRecord = KeyRecord | PromiseFloor | Collected | MemberState


class Acceptor:
    """All (bucket, key) registers one voter holds; pure, see the module docstring."""

    def __init__(
        self,
        identity: NodeId,
        silence: SilenceTracker,
        records: Iterable[LogRecord] = (),
        epoch_floors: Mapping[str, int] | None = None,
        *,
        voting: bool | None = None,
    ) -> None:
        self.identity = identity
        self.silence = silence
        self._keys: dict[tuple[str, Hashable], KeyRecord] = {}
        self._floors: dict[str, int] = dict(epoch_floors or {})
        #: every dropped tombstone was promised and accepted at ballot counters <= this
        self.collected_floor = 0
        floor = 0
        member: MemberState | None = None
        replayed = False
        for record in records:
            replayed = True
            cls = record.__class__
            if cls is PromiseFloor:
                floor = max(floor, record.counter)  # type: ignore[union-attr]
            elif cls is Collected:
                self._drop(record)  # type: ignore[arg-type]
            elif cls is MemberState:
                member = record  # type: ignore[assignment]  # cls is MemberState
            else:
                self._keys[(record.bucket, record.key)] = record  # type: ignore[union-attr, assignment]
        #: a log that never recorded a membership but holds votes is from before clusters had
        #: ids: it voted, so it still does; a log with nothing in it is blank and does not vote
        #: (``voting``: say otherwise, for an acceptor of a cluster of its own, e.g. in tests)
        self.member = member if member is not None else MemberState("", None, replayed)
        if voting is not None:
            self.member = MemberState(self.member.cluster, self.member.config, voting)
        #: True if this acceptor never recorded anything (a new or wiped data directory)
        self.blank = not replayed and voting is None
        # promises in memory may go up to `promise_floor` (durable once its record is)
        self.promise_floor = floor
        # what this life's predecessors may have promised and forgotten, refused for good:
        # every key starts promised to the lowest ballot above counter `floor` (no node
        # name is "": no proposer issues it)
        self.restart_floor = floor
        self._restart_promise = Ballot(floor + 1, ("", 0)) if floor else Ballot.ZERO
        self._absent_promise = self._restart_promise
        self._raise_absent_promise()

    # -- inspection / snapshots -------------------------------------------

    def state(self, bucket: str, key: Hashable) -> KeyRecord:
        """The key's current state (a never-seen key is empty at the bucket's epoch floor;
        no key is promised below what the restart floor stands for)."""
        record = self._keys.get((bucket, key))
        if record is None:
            return KeyRecord(
                bucket, key, self._absent_promise, Ballot.ZERO, Register.empty(self.epoch_floor(bucket))
            )
        if record.promised < self._restart_promise:  # untouched since the restart
            return KeyRecord(bucket, key, self._restart_promise, record.accepted_ballot, record.accepted)
        return record

    def promised(self, bucket: str, key: Hashable) -> Ballot:
        """``state(bucket, key).promised``, without building a record (proposers ask per round)."""
        record = self._keys.get((bucket, key))
        if record is None:
            return self._absent_promise
        if record.promised < self._restart_promise:
            return self._restart_promise
        return record.promised

    def records(self) -> list[KeyRecord]:
        """Every key's state, in first-touched order."""
        return list(self._keys.values())

    def snapshot(self) -> list[LogRecord]:
        """What a compacted log must hold to rebuild this acceptor: the floors and every key."""
        floors: list[LogRecord] = [PromiseFloor(self.promise_floor)]
        if not self.blank:
            floors.append(self.member)
        if self.collected_floor:
            floors.append(Collected("", (), self.collected_floor, 0))
        floors.extend(Collected(bucket, (), 0, epoch) for bucket, epoch in self._floors.items())
        return [*floors, *self._keys.values()]

    # -- membership -------------------------------------------------------------------

    @property
    def voting(self) -> bool:
        """Whether this acceptor answers rounds and heartbeats (see `MemberState`)."""
        return self.member.voting

    @property
    def config_version(self) -> int:
        config = self.member.config
        return config.version if config is not None else 0

    def found(self, cluster: str, config: VoterConfig, voting: bool = True) -> MemberState:
        """A new cluster is founded with this acceptor among its voters. It votes if it
        voted before (a log from before clusters had ids) or if ``voting`` (every
        founding voter was blank: nobody can have lost anything)."""
        if self.member.cluster:
            raise ValueError(f"this acceptor already belongs to cluster {self.member.cluster!r}")
        return self._set_member(MemberState(cluster, config, voting or self.member.voting))

    def install(self, cluster: str, config: VoterConfig) -> MemberState | None:
        """Install a newer voter configuration (known chosen); the record to log, or None.

        A blank acceptor never votes on what it learns: named in ``config``, it
        lost its state and must catch up (`adopt`); not named, it is new, and
        votes from the first configuration that adds it (it never voted before).
        """
        member = self.member
        if config.version <= self.config_version:
            return None
        voting = member.voting
        if not voting and member.config is not None and not member.config.is_member(self.identity[0]):
            voting = config.is_member(self.identity[0])  # added: it has nothing to forget
        self.blank = False
        return self._set_member(MemberState(cluster or member.cluster, config, voting))

    def adopt(self, records: Iterable[LogRecord], floor: int) -> list[LogRecord]:
        """Take the state a catch-up read from other voters (records) and refuse every
        ballot up to ``floor`` (they were fenced there); the records to log, in order.
        The caller logs a voting `MemberState` after them once they are durable."""
        out: list[LogRecord] = []
        if floor > self.promise_floor:
            self.promise_floor = self.restart_floor = floor
            self._restart_promise = max(self._restart_promise, Ballot(floor + 1, ("", 0)))
            self._absent_promise = max(self._absent_promise, self._restart_promise)
            out.append(PromiseFloor(floor))
        for record in records:
            cls = record.__class__
            if cls is Collected:
                self._drop(record)  # type: ignore[arg-type]
                self._raise_absent_promise()
                out.append(record)
            elif cls is KeyRecord:
                mine = self._keys.get((record.bucket, record.key))  # type: ignore[union-attr]
                if mine is None or record.accepted_ballot > mine.accepted_ballot:  # type: ignore[union-attr]
                    out.append(self._put(record))  # type: ignore[arg-type]
        return out

    def start_voting(self) -> MemberState:
        """Caught up (`adopt`'s records are durable): vote from now on."""
        return self._set_member(MemberState(self.member.cluster, self.member.config, True))

    def _set_member(self, member: MemberState) -> MemberState:
        if member.node != self.identity[0]:
            member = MemberState(member.cluster, member.config, member.voting, self.identity[0])
        self.member = member
        self.blank = False
        return member

    def fence(self, ballot: Ballot) -> PromiseFloor | None:
        """Promise ``ballot`` for every key at once (a bulk phase 1: catch-up and voter changes).

        Keys promised higher keep their promise. Returns the floor record the
        promise must wait for (a restart refuses every ballot at or under it)."""
        if ballot > self._restart_promise:
            self._restart_promise = ballot
            if ballot > self._absent_promise:
                self._absent_promise = ballot
        return self._cover(ballot)

    def epoch_floor(self, bucket: str) -> int:
        """The highest epoch of any tombstone ever collected in ``bucket`` (0 if none)."""
        return self._floors.get(bucket, 0)

    def key_count(self) -> int:
        """How many keys this acceptor holds (tombstones included)."""
        return len(self._keys)

    # -- tombstone collection ---------------------------------------------------

    def tombstone(self, bucket: str, key: Hashable) -> Ballot | None:
        """The ballot of the tombstone (an empty register) this acceptor accepted last
        for ``key``, or None if it holds anything else (a value, nothing, a promise only)."""
        record = self._keys.get((bucket, key))
        if record is None or record.accepted.filled or record.accepted_ballot == Ballot.ZERO:
            return None
        return record.accepted_ballot

    def collect(self, bucket: str, tombstones: Iterable[tuple[Hashable, Ballot]]) -> Collected | None:
        """Drop each ``(key, ballot)`` whose tombstone is still the one accepted at ``ballot``.

        Only for tombstones EVERY voter was seen to hold durably (see the module
        docstring). Returns the record to log (None if nothing was dropped). Its
        replies need not wait for it: until it is durable, a restart brings back
        the tombstones, which answer the same.
        """
        keys = []
        counter = self.collected_floor
        epoch = self.epoch_floor(bucket)
        for key, ballot in tombstones:
            if self.tombstone(bucket, key) != ballot:
                continue  # changed since the check (a newer round): not garbage any more
            record = self._keys[(bucket, key)]
            counter = max(counter, record.promised.counter, ballot.counter)
            epoch = max(epoch, record.accepted.epoch)
            keys.append(key)
        if not keys:
            return None
        collected = Collected(bucket, tuple(keys), counter, epoch)
        self._drop(collected)
        self._raise_absent_promise()
        return collected

    def _drop(self, collected: Collected) -> None:
        bucket = collected.bucket
        for key in collected.keys:
            self._keys.pop((bucket, key), None)
        self.collected_floor = max(self.collected_floor, collected.counter)
        if collected.epoch > self._floors.get(bucket, 0):
            self._floors[bucket] = collected.epoch

    def _raise_absent_promise(self) -> None:
        """Keys not held are promised above the restart floor and every dropped key's ballots."""
        if self.collected_floor and self.collected_floor >= self._absent_promise.counter:
            self._absent_promise = Ballot(self.collected_floor + 1, ("", 0))

    # -- liveness of peers --------------------------------------------------

    def heard(self, node: str, incarnation: int, now: float) -> None:
        """Feed every message from any node here (the lease veto depends on it)."""
        self.silence.heard(node, incarnation, now)

    def on_heartbeat(self, node: str, incarnation: int, hb: Heartbeat, now: float) -> HeartbeatAck | None:
        """The ack to send at once; None from an acceptor that does not vote (its ack must
        not count towards a lease: it takes no part in the releases a lease fends off)."""
        self.silence.heard(node, incarnation, now)
        if not self.member.voting:
            return None
        return HeartbeatAck(hb.seq, self.identity, self.silence.fence_generation(node), self.config_version)

    # -- Paxos ----------------------------------------------------------------

    def on_prepare(
        self, msg: Prepare, now: float | None = None
    ) -> tuple[Promise | Nack, PromiseFloor | None]:
        refusal = self._refusal(msg)
        if refusal is not None:
            return refusal, None
        state = self.state(msg.bucket, msg.key)
        if msg.ballot < state.promised:
            return Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_BALLOT, self.config_version), None
        fence = msg.lease_fence
        if fence is not None:
            if now is None:
                raise ValueError("on_prepare of a fenced release needs `now` (the lease veto)")
            if self._vetoes(fence, now):
                return Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_LEASE_VETO, self.config_version), None
        record = None
        if msg.ballot != state.promised:
            self._put(KeyRecord(state.bucket, state.key, msg.ballot, state.accepted_ballot, state.accepted))
            record = self._cover(msg.ballot)
        reply = Promise(msg.bucket, msg.key, msg.ballot, state.accepted_ballot, state.accepted)
        return reply, record

    def on_accept(self, msg: Accept, now: float) -> tuple[Accepted | Nack, KeyRecord | None]:
        refusal = self._refusal(msg)
        if refusal is not None:
            return refusal, None
        state = self.state(msg.bucket, msg.key)
        if msg.ballot < state.promised:
            return Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_BALLOT, self.config_version), None
        if msg.ballot == state.accepted_ballot and state.accepted_ballot != Ballot.ZERO:
            if msg.register != state.accepted:  # one ballot, two values: a broken proposer
                return Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_BALLOT, self.config_version), None
            # a duplicate: already accepted, nothing new to persist
            promised_next = msg.next_ballot is not None and state.promised == msg.next_ballot
            return Accepted(msg.bucket, msg.key, msg.ballot, promised_next), None
        if self._lease_veto(msg.register, now):
            return (
                Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_LEASE_VETO, self.config_version),
                None,
            )
        for fence in msg.register.lease_fences:
            if not self.silence.superseded(fence.node, fence.incarnation):
                self.silence.record_release(fence.node)
        promised = msg.ballot
        if msg.next_ballot is not None and msg.next_ballot > promised:
            promised = msg.next_ballot
        # built directly: `dataclasses.replace` costs several times more, on every accept
        record = self._put(KeyRecord(state.bucket, state.key, promised, msg.ballot, msg.register))
        reply = Accepted(msg.bucket, msg.key, msg.ballot, msg.next_ballot is not None)
        return reply, record

    def _refusal(self, msg: Prepare | Accept) -> Nack | None:
        """A learner answers nothing but "learner"; a round of an older voter configuration
        than this acceptor installed is refused (that configuration's quorums are over)."""
        member = self.member
        if not member.voting:
            return Nack(msg.bucket, msg.key, msg.ballot, Ballot.ZERO, NACK_LEARNER, self.config_version)
        if msg.config < self.config_version:
            return Nack(msg.bucket, msg.key, msg.ballot, Ballot.ZERO, NACK_CONFIG, self.config_version)
        return None

    def _cover(self, ballot: Ballot) -> PromiseFloor | None:
        """The floor record a promise of ``ballot`` must wait for, if the floor is below it."""
        if ballot.counter <= self.promise_floor:
            return None
        self.promise_floor = ballot.counter + FLOOR_STRIDE
        return PromiseFloor(self.promise_floor)

    def _lease_veto(self, register: Register, now: float) -> bool:
        """True if ``register`` releases a tenure whose owner may still hold its lease."""
        return any(self._vetoes(f, now) for f in register.lease_fences)

    def _vetoes(self, fence: LeaseFence, now: float) -> bool:
        """True while the fenced tenure's owner's node may still hold its lease."""
        return not self.silence.may_release_noconnection(fence.node, fence.incarnation, now)

    def _put(self, record: KeyRecord) -> KeyRecord:
        self._keys[(record.bucket, record.key)] = record
        return record
