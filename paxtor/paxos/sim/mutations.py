"""Deliberate bugs (negative controls): the simulator must catch each of them.

They live here, as subclasses, never in the production classes. A
`Mutations` value switches them on for a run; ``python -m paxtor.paxos.sim
--mutation NAME`` runs seeds with one on.

- ``forget_on_restart``: a restarted acceptor comes back empty and votes at once
  (amnesia: the voter whose disk was wiped is not held back as a learner).
- ``wiped_voter_votes``: a voter whose disk was wiped votes at once instead of
  catching up as a learner first.
- ``unfloored_promises``: promises are kept in memory only and no promise
  floor is ever synced, so a restarted acceptor may break a promise it made.
- ``naive_delete``: a release empties whatever tenure the key holds now,
  instead of "if still bound to X" (its justification is forged to match).
- ``wrong_ballot_promise``: the proposer counts promises made for any ballot,
  e.g. a late promise from one of its earlier rounds on the key.
- ``no_lease_veto``: acceptors accept noconnection releases at once.
- ``no_op_marks``: rounds do not mark the register with their op, so a
  retry cannot tell that an earlier attempt's value was adopted and applies
  its change again (an increment counted twice).
- ``collect_on_quorum``: tombstones are dropped once a quorum of voters
  (not all of them) holds them: a voter that missed the tombstone still
  holds an older value, which a later quorum may bring back.
- ``unfloored_collection``: a voter that dropped a tombstone does not count
  the key as promised above its old ballots: a stale accept (delayed,
  duplicated) is accepted into the empty key.
- ``no_epoch_floor``: dropped tombstones do not raise the bucket's epoch
  floor, so a key used again starts its epochs (fencing tokens) over.
- ``no_heartbeat_fence``: owners ignore the fence generation in heartbeat
  acks (an acceptor that voted a release can then still extend a lease with
  a heartbeat that was in flight during its silence window).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from paxtor.paxos.acceptor import Acceptor, Collected, Promise, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.collection import Collection
from paxtor.paxos.lease import HeartbeatAck, LeaseClock
from paxtor.paxos.proposer import Proposer, Step
from paxtor.paxos.register import EndedBinding, LeaseFence, Register
from paxtor.paxos.sim.model import fifo_handoff

__all__ = ["MUTATIONS", "Mutations"]


@dataclass(frozen=True)
class Mutations:
    forget_on_restart: bool = False
    wiped_voter_votes: bool = False
    unfloored_promises: bool = False
    naive_delete: bool = False
    wrong_ballot_promise: bool = False
    no_lease_veto: bool = False
    no_heartbeat_fence: bool = False
    no_op_marks: bool = False
    collect_on_quorum: bool = False
    unfloored_collection: bool = False
    no_epoch_floor: bool = False

    @classmethod
    def only(cls, name: str | None) -> Mutations:
        if not name:
            return cls()
        if name not in MUTATIONS:
            raise ValueError(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")
        return cls(**{name: True})

    def active(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    def acceptor_class(self) -> type[Acceptor]:
        if self.unfloored_promises:
            return UnflooredAcceptor
        if self.unfloored_collection:
            return UnflooredCollectionAcceptor
        if self.no_epoch_floor:
            return NoEpochFloorAcceptor
        return NoVetoAcceptor if self.no_lease_veto else Acceptor

    def collection_class(self) -> type[Collection]:
        return QuorumCollection if self.collect_on_quorum else Collection

    def lease_class(self) -> type[LeaseClock]:
        return UnfencedLeaseClock if self.no_heartbeat_fence else LeaseClock

    def proposer_class(self, release: bool) -> type[Proposer]:
        if self.wrong_ballot_promise:
            return AnyBallotProposer
        if self.naive_delete and release:
            return NaiveDeleteProposer
        if self.no_op_marks:
            return UnmarkedProposer
        return Proposer


MUTATIONS = tuple(f.name for f in fields(Mutations))


class UnflooredAcceptor(Acceptor):
    def _cover(self, ballot: Ballot) -> PromiseFloor | None:
        return None


class UnflooredCollectionAcceptor(Acceptor):
    def _raise_absent_promise(self) -> None:
        pass


class NoEpochFloorAcceptor(Acceptor):
    def _drop(self, collected: Collected) -> None:
        super()._drop(Collected(collected.bucket, collected.keys, collected.counter, 0))


class QuorumCollection(Collection):
    """Forgets what the voters that answered so far hold, once they are a majority."""

    @property
    def complete(self) -> bool:
        return len(self._reports) > len(self.voters) // 2

    def forget(self) -> tuple:
        if not self.complete:
            return ()
        reports = list(self._reports.values())
        return tuple(
            (key, ballot)
            for key in self.keys
            if (ballot := reports[0].get(key)) is not None and all(r.get(key) == ballot for r in reports)
        )


class NoVetoAcceptor(Acceptor):
    def _vetoes(self, fence: LeaseFence, now: float) -> bool:
        return False


class UnfencedLeaseClock(LeaseClock):
    def _fence_check(self, voter: str, ack: HeartbeatAck) -> str:
        return "ok"


class AnyBallotProposer(Proposer):
    def _counts(self, voter: str, msg: Promise) -> bool:
        return voter in self.voters


class UnmarkedProposer(Proposer):
    def _with_marks(self, base: Register, new: Register) -> Register:
        return new


class NaiveDeleteProposer(Proposer):
    """Releases whatever tenure the key holds, forging the justification to match."""

    def _propose(self, base: Register, base_chosen: bool, may_skip: bool = True) -> Step:
        if base.filled and base.binding is not None and self.ended is not None:
            self.ended = EndedBinding(base.epoch, base.binding, self.ended.reason)
            forged = self.ended
            self.change = lambda r: fifo_handoff(r, forged)
        return super()._propose(base, base_chosen, may_skip)
