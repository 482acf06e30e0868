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
  acceptor that lost its records must not vote (amnesia breaks Paxos).

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
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from paxtor.actors.wire import wire_type
from paxtor.paxos.ballot import Ballot, NodeId
from paxtor.paxos.lease import Heartbeat, HeartbeatAck, SilenceTracker
from paxtor.paxos.register import LeaseFence, Register

__all__ = [
    "Accept",
    "Accepted",
    "Acceptor",
    "KeyRecord",
    "Nack",
    "Prepare",
    "Promise",
    "PromiseFloor",
    "FLOOR_STRIDE",
    "NACK_BALLOT",
    "NACK_LEASE_VETO",
]

NACK_BALLOT = "ballot"
NACK_LEASE_VETO = "lease_veto"

FLOOR_STRIDE = 1 << 32
"""How far above a prepare's counter a raised floor goes: raises are rare even
though contended rounds skip ahead 2**16 at a time, and 2**64 counters last
2**32 restarts."""


@wire_type
@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a; ``lease_fence``: the round would release this tenure for noconnection."""

    bucket: str
    key: Hashable
    ballot: Ballot
    lease_fence: LeaseFence | None = None


@wire_type
@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the acceptor promised ``ballot`` and reports what it accepted last."""

    bucket: str
    key: Hashable
    ballot: Ballot
    accepted_ballot: Ballot
    accepted: Register


@wire_type
@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a; ``next_ballot`` asks for a promise of the proposer's next ballot (1-RTT)."""

    bucket: str
    key: Hashable
    ballot: Ballot
    register: Register
    next_ballot: Ballot | None = None


@wire_type
@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b; ``promised_next``: the acceptor also promised the requested next ballot."""

    bucket: str
    key: Hashable
    ballot: Ballot
    promised_next: bool


@wire_type
@dataclass(frozen=True, slots=True)
class Nack:
    """Refusal of ``ballot``: a higher ballot was promised, or the lease veto applies."""

    bucket: str
    key: Hashable
    ballot: Ballot
    promised: Ballot
    reason: str = NACK_BALLOT


@wire_type
@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The durable state of one key at one acceptor (a log record and a snapshot row)."""

    bucket: str
    key: Hashable
    promised: Ballot
    accepted_ballot: Ballot
    accepted: Register


@wire_type
@dataclass(frozen=True, slots=True)
class PromiseFloor:
    """A durable bound: every promise made so far has a ballot counter <= ``counter``."""

    counter: int


class Acceptor:
    """All (bucket, key) registers one voter holds; pure, see the module docstring."""

    def __init__(
        self,
        identity: NodeId,
        silence: SilenceTracker,
        records: Iterable[KeyRecord | PromiseFloor] = (),
        epoch_floors: Mapping[str, int] | None = None,
    ) -> None:
        self.identity = identity
        self.silence = silence
        self._keys: dict[tuple[str, Hashable], KeyRecord] = {}
        self._floors: dict[str, int] = dict(epoch_floors or {})
        floor = 0
        for record in records:
            if record.__class__ is PromiseFloor:
                floor = max(floor, record.counter)  # type: ignore[union-attr]
            else:
                self._keys[(record.bucket, record.key)] = record  # type: ignore[union-attr]
        # promises in memory may go up to `promise_floor` (durable once its record is)
        self.promise_floor = floor
        # what this life's predecessors may have promised and forgotten, refused for good:
        # every key starts promised to the lowest ballot above counter `floor` (no node
        # name is "": no proposer issues it)
        self.restart_floor = floor
        self._restart_promise = Ballot(floor + 1, ("", 0)) if floor else Ballot.ZERO

    # -- inspection / snapshots -------------------------------------------

    def state(self, bucket: str, key: Hashable) -> KeyRecord:
        """The key's current state (a never-seen key is empty at the bucket's epoch floor;
        no key is promised below what the restart floor stands for)."""
        record = self._keys.get((bucket, key))
        if record is None:
            return KeyRecord(
                bucket, key, self._restart_promise, Ballot.ZERO, Register.empty(self.epoch_floor(bucket))
            )
        if record.promised < self._restart_promise:  # untouched since the restart
            return KeyRecord(bucket, key, self._restart_promise, record.accepted_ballot, record.accepted)
        return record

    def promised(self, bucket: str, key: Hashable) -> Ballot:
        """``state(bucket, key).promised``, without building a record (proposers ask per round)."""
        record = self._keys.get((bucket, key))
        if record is None or record.promised < self._restart_promise:
            return self._restart_promise
        return record.promised

    def records(self) -> list[KeyRecord]:
        """Every key's state, in first-touched order."""
        return list(self._keys.values())

    def snapshot(self) -> list[KeyRecord | PromiseFloor]:
        """What a compacted log must hold to rebuild this acceptor: the floor and every key."""
        return [PromiseFloor(self.promise_floor), *self._keys.values()]

    def epoch_floor(self, bucket: str) -> int:
        """The highest epoch of any tombstone ever collected in ``bucket`` (0 if none).

        Tombstone collection is not implemented; a collector must raise the
        floor first (and persist it) so that epochs keep growing.
        """
        return self._floors.get(bucket, 0)

    # -- liveness of peers --------------------------------------------------

    def heard(self, node: str, incarnation: int, now: float) -> None:
        """Feed every message from any node here (the lease veto depends on it)."""
        self.silence.heard(node, incarnation, now)

    def on_heartbeat(self, node: str, incarnation: int, hb: Heartbeat, now: float) -> HeartbeatAck:
        self.silence.heard(node, incarnation, now)
        return HeartbeatAck(hb.seq, self.identity, self.silence.fence_generation(node))

    # -- Paxos ----------------------------------------------------------------

    def on_prepare(
        self, msg: Prepare, now: float | None = None
    ) -> tuple[Promise | Nack, PromiseFloor | None]:
        state = self.state(msg.bucket, msg.key)
        if msg.ballot < state.promised:
            return Nack(msg.bucket, msg.key, msg.ballot, state.promised), None
        fence = msg.lease_fence
        if fence is not None:
            if now is None:
                raise ValueError("on_prepare of a fenced release needs `now` (the lease veto)")
            if self._vetoes(fence, now):
                return Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_LEASE_VETO), None
        record = None
        if msg.ballot != state.promised:
            self._put(KeyRecord(state.bucket, state.key, msg.ballot, state.accepted_ballot, state.accepted))
            record = self._cover(msg.ballot)
        reply = Promise(msg.bucket, msg.key, msg.ballot, state.accepted_ballot, state.accepted)
        return reply, record

    def on_accept(self, msg: Accept, now: float) -> tuple[Accepted | Nack, KeyRecord | None]:
        state = self.state(msg.bucket, msg.key)
        if msg.ballot < state.promised:
            return Nack(msg.bucket, msg.key, msg.ballot, state.promised), None
        if msg.ballot == state.accepted_ballot and state.accepted_ballot != Ballot.ZERO:
            if msg.register != state.accepted:  # one ballot, two values: a broken proposer
                return Nack(msg.bucket, msg.key, msg.ballot, state.promised), None
            # a duplicate: already accepted, nothing new to persist
            promised_next = msg.next_ballot is not None and state.promised == msg.next_ballot
            return Accepted(msg.bucket, msg.key, msg.ballot, promised_next), None
        if self._lease_veto(msg.register, now):
            return (
                Nack(msg.bucket, msg.key, msg.ballot, state.promised, NACK_LEASE_VETO),
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
