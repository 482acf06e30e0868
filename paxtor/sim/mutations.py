"""Deliberate bugs (negative controls): the simulator must catch each of them.

They live here, as subclasses of the production classes (the acceptor, the
proposer, the lock home's engine, ...) or as the change function the cluster
runs instead of the production one, never in the production code. The
simulator builds its nodes from the classes and functions a `Mutations` value
hands out, so a mutation runs in the real code path; the model of the
linearizability checker always applies the production change functions.
``python -m paxtor.sim --mutation NAME`` runs seeds with one on.

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
- ``no_migration``: a change of the voters skips the bulk round: a value that
  lives only on voters being removed, or on too few of the new ones, is not
  copied, and the new voters alone may decide without it.
- ``no_change_wait``: a change chooses its final configuration as soon as the
  keys are copied, without waiting the silence threshold: an owner whose
  lease was counted by the old voters alone may still hold it when new
  voters, which never heard from its node, release its key for noconnection.
  Caught in the ``owner_cut`` scenario (a lock owner's node cut off just
  before two voters of three are replaced), rarely in the swarm: there the
  release must also come before the owner's lease runs out, less than a
  lease after the cut, while waiters notice a silent owner only after the
  failure detector's timeout and retry their claim every 1.5 leases.
  (The other way to break the same argument, a lease that counts the ack
  of a voter on a newer configuration as if it were on its own, goes
  uncaught: a node that hears such acks learns the configuration at once,
  from the voters' hellos and from the refusals of its own rounds, so the
  miscount lasts a message delay, and the change's wait covers it.)
- ``readd_with_state``: a change adds a voter without checking that it holds
  no key: a voter removed earlier comes back with the values it held then,
  and a key whose tombstone the voters collected meanwhile comes back to
  life (the bulk round, or any round, takes its value as the latest).
- ``one_rtt_across_configs``: a proposer skips phase 1 on a promise made by a
  quorum of an earlier voter configuration: its stale accept reaches new
  voters that promised nothing, and for a key the old voters emptied and
  dropped since, a round of the new configuration reads it back.
- ``no_joint``: a change switches from the old voters straight to the new
  ones (chosen and installed where the joint configuration would be, keys
  then copied to it): until the copy is done, quorums of new voters decide
  without the values only old voters hold.
- ``wake_next_waiter``: the lock home (`paxtor.locks.home_engine.LockHomeEngine`)
  wakes the request queued behind the new owner instead of the new owner: a
  woken process holds the lock on the wake-up alone, while the real owner
  finds it owns the lock when it next reads it.
- ``reversed_batch``: the lock home applies the requests of a batch newest
  first (the batch still names them in arrival order): two queue-ups in one
  batch join the queue swapped.
- ``unchecked_bind``: the name register's ``bind_child`` does not check that
  the keeper's claim (its pid and epoch) is still in place: a bind that comes
  after the claim ended hands the key to the child all the same (claims it,
  if it is free). A bind sent again after its first request timed out finds
  the key bound to the child already: the register rules refuse the second
  handoff (``driver``). One that comes after the child's tenure ended claims
  the free key for a dead child (``linearizability``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from typing import Any

from paxtor.actors.ids import Pid
from paxtor.locks.home_engine import LockHomeEngine, ProposeBatch, Wake
from paxtor.locks.messages import LockWake
from paxtor.locks.register import batch_change, hand_to_next, waiters_of
from paxtor.paxos.acceptor import Acceptor, Collected, Promise, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.collection import Collection
from paxtor.paxos.lease import HeartbeatAck, LeaseClock
from paxtor.paxos.proposer import Proposer, ProposerState, Step
from paxtor.paxos.register import ChangeFunction, EndedBinding, LeaseFence, Register, empty_released
from paxtor.paxos.voter_config import VoterConfig
from paxtor.sim.reconfig import VoterChange
from paxtor.singletons.register import RUNNING, bind_child

__all__ = ["CONTROLS", "MUTATIONS", "UNCAUGHT", "Mutations"]


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
    no_migration: bool = False
    no_change_wait: bool = False
    readd_with_state: bool = False
    one_rtt_across_configs: bool = False
    no_joint: bool = False
    wake_next_waiter: bool = False
    reversed_batch: bool = False
    unchecked_bind: bool = False

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

    def change_class(self) -> type[VoterChange]:
        if self.no_migration:
            return UnmigratedChange
        if self.no_change_wait:
            return UnwaitedChange
        if self.readd_with_state:
            return UncheckedChange
        return DirectChange if self.no_joint else VoterChange

    def lock_home_class(self) -> type[LockHomeEngine]:
        if self.reversed_batch:
            return ReversedBatchHomeEngine
        return WrongWakeHomeEngine if self.wake_next_waiter else LockHomeEngine

    def bind_child(self, epoch: int, keeper: Pid, child: Pid, node: str) -> ChangeFunction:
        """The change a keeper proposes to hand its claim to its child."""
        if self.unchecked_bind:
            return unchecked_bind_child(epoch, keeper, child, node)
        return bind_child(epoch, keeper, child, node)

    def proposer_state_class(self) -> type[ProposerState]:
        return AnyConfigProposerState if self.one_rtt_across_configs else ProposerState

    def proposer_class(self, release: bool) -> type[Proposer]:
        if self.wrong_ballot_promise:
            return AnyBallotProposer
        if self.naive_delete and release:
            return NaiveDeleteProposer
        if self.no_op_marks:
            return UnmarkedProposer
        return Proposer


MUTATIONS = tuple(f.name for f in fields(Mutations))

#: Each negative control: the checkers that may catch it, and the scenario it needs
#: (`paxtor.sim.faults.SCENARIOS`; None: the swarm of each seed's random faults).
CONTROLS: dict[str, tuple[frozenset[str], str | None]] = {
    "forget_on_restart": (frozenset({"epochs", "linearizability", "owners", "promises"}), None),
    "wiped_voter_votes": (frozenset({"epochs", "linearizability", "owners"}), None),
    "unfloored_promises": (frozenset({"promises", "epochs", "linearizability"}), None),
    "naive_delete": (frozenset({"linearizability", "owners"}), None),
    "wrong_ballot_promise": (frozenset({"linearizability", "epochs", "ballot"}), None),
    "no_lease_veto": (frozenset({"owners"}), None),
    "no_op_marks": (frozenset({"linearizability"}), None),
    "collect_on_quorum": (frozenset({"linearizability", "epochs"}), None),
    "unfloored_collection": (frozenset({"promises", "linearizability", "epochs"}), None),
    "no_epoch_floor": (frozenset({"epochs", "linearizability"}), None),
    "no_migration": (frozenset({"linearizability", "epochs"}), None),
    "no_joint": (frozenset({"linearizability", "epochs"}), None),
    "readd_with_state": (frozenset({"linearizability", "epochs"}), "readd"),
    "no_change_wait": (frozenset({"owners"}), "owner_cut"),
    "wake_next_waiter": (frozenset({"owners"}), None),
    "reversed_batch": (frozenset({"linearizability"}), None),
    "unchecked_bind": (frozenset({"linearizability", "driver"}), None),
}

#: Deliberate bugs the swarm catches too rarely to be a test (none in 600 seeds), kept all
#: the same: one_rtt_across_configs needs a key emptied and collected while a node keeps a
#: 1-RTT promise for it, then a change, then that node's next round on it (seed 4424 of
#: 5000 is one; tests/paxos/test_voter_config.py shows it without the simulator).
UNCAUGHT = frozenset({"no_heartbeat_fence", "one_rtt_across_configs"})


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
            policy = hand_to_next if self.bucket.startswith("lock.") else empty_released
            self.change = lambda r: policy(r, forged)
        return super()._propose(base, base_chosen, may_skip)


class AnyConfigProposerState(ProposerState):
    def new_round(self, bucket: str, key: Hashable, change: ChangeFunction, config: VoterConfig, **kw: Any) -> Proposer:
        entry = self._cache.get((bucket, key))
        if entry is not None:  # as if the promise had been made in this configuration
            self._cache[(bucket, key)] = (entry[0], entry[1], config.version)
        return super().new_round(bucket, key, change, config, **kw)


class UnmigratedChange(VoterChange):
    def migrate(self, joint: VoterConfig, then: Callable[[], None]) -> None:
        then()


class UncheckedChange(VoterChange):
    def _checked(self, current: VoterConfig, joint: VoterConfig, added: list[str], counts: dict[str, int]) -> None:
        super()._checked(current, joint, added, dict.fromkeys(added, 0))


class UnwaitedChange(VoterChange):
    def wait_out_leases(self) -> None:
        self._choose_final()


class DirectChange(VoterChange):
    """Old voters -> new voters in one configuration: chosen, installed where the joint one
    would be (meeting every old quorum), then every key copied to it."""

    old: VoterConfig | None = None

    def change_voters(self) -> None:
        current = self.read_config()
        if current.joint:  # left by a run of the correct change: finish it as it would
            self.finish_change(current, self.change_voters)
            return
        if self.target is None:
            assert self.pick is not None
            self.target = self.pick(current)
        if self.target is None or set(current.voters) == set(self.target):
            self.end()
            return
        new = VoterConfig(current.version + 1, self.target)
        if self.choose(current, new) != new:
            self.change_voters()
            return
        self.sim.count("changes_started")
        self.old = current

        def enough(acks: list[str]) -> bool:
            return new.is_quorum(acks) and not current.is_quorum([v for v in current.members if v not in acks])

        def installed() -> None:
            self.node.install_config(new)
            self.migrate(new, self._copied)

        self.install_on(new, enough, installed)

    def migrate_members(self, joint: VoterConfig) -> tuple[str, ...]:
        old = self.old.members if self.old is not None else ()
        return joint.members + tuple(v for v in old if v not in joint.members)

    def _copied(self) -> None:
        self.sim.count("changes_done")
        self.end()


class WrongWakeHomeEngine(LockHomeEngine):
    """Wakes the request queued behind the new owner (if any) instead of the new owner."""

    def round_done(self, key: bytes, tag: int, register: Register | None, error: BaseException | None) -> list[Any]:
        out = super().round_done(key, tag, register, error)
        waiters = waiters_of(register.visible()) if register is not None else ()
        if not waiters:
            return out
        pid, ref = waiters[0]
        return [Wake(LockWake(pid, key, e.wake.epoch, ref)) if type(e) is Wake else e for e in out]


def unchecked_bind_child(epoch: int, keeper: Pid, child: Pid, node: str) -> ChangeFunction:
    """`bind_child` without its check that tenure ``epoch`` is still bound to ``keeper``."""

    def change(register: Register) -> Register:
        if register.is_empty:
            return register.claim((RUNNING, node), pid=child)
        return register.handoff((RUNNING, node), pid=child)

    return change


class ReversedBatchHomeEngine(LockHomeEngine):
    """Applies the requests of a batch newest first (the batch still names them in arrival order)."""

    def _start(self, key: bytes, state: Any) -> None:
        super()._start(key, state)
        out = self._out
        if out and type(out[-1]) is ProposeBatch and len(out[-1].ops) > 1:
            batch = out[-1]
            change, _ = batch_change(list(reversed(batch.ops)))
            out[-1] = ProposeBatch(batch.key, batch.tag, change, batch.ended, batch.timeout, batch.ops)
