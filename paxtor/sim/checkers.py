"""Invariant checkers fed by the simulator as it runs; each collects violations as text.

- `BallotChecker`: no two different registers accepted for one ballot of one key.
- `PromiseChecker`: no acceptor ever votes (promises or accepts) below a
  ballot it promised before, in this life or an earlier one: the acceptor's
  half of Paxos, checked directly rather than waiting for a lost promise to
  cost a chosen value.
- `ChosenChecker`: omniscient view of what is chosen (DURABLE accepts of one
  ballot by a quorum of the voter configuration its round counted with: the
  version the accepts carry); along each key's chosen values in ballot order the
  epoch never decreases, one epoch never has two owners, and an unbound
  value never changes within an epoch.
- `OwnerChecker`: at most one live owner per key at any virtual instant. An
  owner is live from the moment its node grants it (its claim was chosen and
  the node's lease held in one term since the round started) until it exits,
  is killed (lease lost, node crash) or its node is paused (a frozen process
  does nothing; what it could do after waking is what fencing tokens are for,
  and the node kills it first thing if its lease ran out meanwhile). The
  cluster keeps a second one for singletons: a singleton's child is live from
  its start (under its keeper's held claim) until it exits or is killed.
- `LivenessChecker`: after the final heal (plus a settle time), every client
  request completes within a bound, and every lock waiter is eventually served.
  A change of the voters still under way at the heal moves the start to its
  end (plus the settle time): a joint configuration needs a majority of both
  voter sets, and with a member down or catching up every other member must
  answer, so contended keys may take longer than the bound meanwhile.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from paxtor.actors.ids import Pid
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Register
from paxtor.paxos.voter_config import VoterConfig

__all__ = ["BallotChecker", "ChosenChecker", "LivenessChecker", "OwnerChecker", "PromiseChecker"]

Slot = tuple[str, Hashable]  # (bucket, key)


class BallotChecker:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self._values: dict[tuple[str, Hashable, Ballot], Register] = {}

    def was_accepted(self, bucket: str, key: Hashable, ballot: Ballot | None) -> bool:
        """Whether any acceptor ever accepted ``ballot`` for the key."""
        return ballot is not None and (bucket, key, ballot) in self._values

    def accepted(self, voter: str, bucket: str, key: Hashable, ballot: Ballot, reg: Register) -> None:
        slot = (bucket, key, ballot)
        known = self._values.setdefault(slot, reg)
        if known != reg:
            self.violations.append(
                f"two values accepted for {bucket}/{key} at {ballot!r}: {known!r} and {reg!r} ({voter})"
            )


class PromiseChecker:
    def __init__(self) -> None:
        self.violations: list[str] = []
        # per (voter, bucket, key): the highest ballot promised in a reply sent, and the place
        # of that reply in the order the voter made its votes
        self._promised: dict[tuple[str, str, Hashable], tuple[Ballot, int]] = {}

    def forget(self, voter: str) -> None:
        """``voter`` lost its disk: its promises are ended by a new configuration version
        (rounds of the old one are refused), which the value checkers hold to account."""
        for slot in [s for s in self._promised if s[0] == voter]:
            del self._promised[slot]

    def fenced(self, voter: str, ballot: Ballot, slots: Iterable[Slot], seq: int) -> None:
        """``voter`` promised ``ballot`` for every key at once (a bulk round's phase 1, its
        vote number ``seq``); keys it had promised higher keep their promise."""
        for bucket, key in slots:
            slot = (voter, bucket, key)
            before = self._promised.get(slot)
            if before is None or ballot > before[0]:
                self._promised[slot] = (ballot, seq)

    def voted(self, voter: str, bucket: str, key: Hashable, ballot: Ballot, promised: Ballot, seq: int) -> None:
        """``voter`` sent a vote for ``ballot`` that promises ``promised`` (>= ``ballot``).

        ``seq`` numbers the voter's votes in the order it made them (across restarts): a
        vote made before a promise may be sent after it (it waited for the sync of another
        record of the key), and breaks nothing; one made after it must respect it."""
        slot = (voter, bucket, key)
        before = self._promised.get(slot)
        if before is not None and ballot < before[0] and seq > before[1]:
            self.violations.append(
                f"{voter} voted for {bucket}/{key} at {ballot!r} after promising {before[0]!r}"
            )
        if before is None or promised > before[0]:
            self._promised[slot] = (promised, seq)


@dataclass
class _Chosen:
    ballot: Ballot
    register: Register
    at: float


class ChosenChecker:
    def __init__(self, configs: Mapping[int, VoterConfig]) -> None:
        self.configs = configs  # every voter configuration chosen so far, by version
        self.violations: list[str] = []
        self._votes: dict[tuple[str, Hashable, Ballot], list[str] | None] = {}  # None: chosen
        self.chosen: dict[Slot, list[_Chosen]] = {}

    def durable_accept(
        self, voter: str, bucket: str, key: Hashable, ballot: Ballot, reg: Register, config: int, now: float
    ) -> None:
        """``voter`` durably accepted ``reg`` at ``ballot`` in a round of configuration
        version ``config``."""
        slot = (bucket, key, ballot)
        votes = self._votes.get(slot, [])
        if votes is None or voter in votes:
            return
        votes.append(voter)
        self._votes[slot] = votes
        if self.configs[config].is_quorum(votes):
            self._votes[slot] = None
            self.chosen.setdefault((bucket, key), []).append(_Chosen(ballot, reg, now))

    def finish(self) -> None:
        for (bucket, key), items in self.chosen.items():
            items = sorted(items, key=lambda c: c.ballot)
            for prev, cur in itertools.pairwise(items):
                problem = _epoch_problem(prev.register, cur.register)
                if problem:
                    self.violations.append(
                        f"{bucket}/{key}: chosen {prev.register.visible()!r} at {prev.ballot!r} then "
                        f"{cur.register.visible()!r} at {cur.ballot!r}: {problem}"
                    )


def _epoch_problem(a: Register, b: Register) -> str | None:
    if b.epoch < a.epoch:
        return "epoch went backwards"
    if b.epoch == a.epoch and a.filled and b.filled:
        if a.binding != b.binding:
            return "two owners with one epoch"
        if a.binding is None and a.value != b.value:
            return "two values with one epoch"
    return None


class OwnerChecker:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self._live: dict[Slot, dict[Pid, tuple[int, float]]] = {}
        self.grants = 0

    def start(self, slot: Slot, pid: Pid, epoch: int, now: float) -> None:
        live = self._live.setdefault(slot, {})
        for other, (other_epoch, since) in live.items():
            if other != pid:
                self.violations.append(
                    f"{slot[0]}/{slot[1]}: {pid!r} (epoch {epoch}) became live at {now:.4f} "
                    f"while {other!r} (epoch {other_epoch}) is live since {since:.4f}"
                )
        live[pid] = (epoch, now)
        self.grants += 1

    def stop(self, slot: Slot, pid: Pid) -> None:
        self._live.get(slot, {}).pop(pid, None)


class LivenessChecker:
    def __init__(self, start: float, bound: float) -> None:
        self.start = start  # requests invoked (or still open) after this must finish in time
        self.bound = bound
        self.violations: list[str] = []
        self._open: dict[int, tuple[str, float, str]] = {}
        self._ids = 0

    def invoked(self, what: str, node: str, now: float) -> int:
        self._ids += 1
        self._open[self._ids] = (what, now, node)
        return self._ids

    def completed(self, ident: int, now: float) -> None:
        entry = self._open.pop(ident, None)
        if entry is None:
            return
        what, invoked, node = entry
        began = max(invoked, self.start)
        if now - began > self.bound:
            self.violations.append(
                f"{what} on {node} took {now - invoked:.3f}s (invoked {invoked:.3f}, "
                f"bound {self.bound}s after {self.start:.3f})"
            )

    def abandoned(self, ident: int) -> None:
        """A request whose process died (crash): it owes no answer."""
        self._open.pop(ident, None)

    def finish(self, now: float) -> None:
        for what, invoked, node in self._open.values():
            if now - max(invoked, self.start) > self.bound:
                self.violations.append(
                    f"{what} on {node} invoked at {invoked:.3f} never completed (end {now:.3f})"
                )
