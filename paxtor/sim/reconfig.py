"""Voter changes and catch-up in the simulator: event-driven models of `paxtor.paxos.reconfig`.

`VoterChange` is ``change_voters`` (and ``finish_left_change``): choose the
joint configuration, ``install_on`` its members until they meet every quorum
of the old configuration and are a quorum of the joint one, ``migrate`` every
key with one bulk Paxos round, wait the silence threshold since the install
ended, then choose and install the final configuration. `Reseat` is
``reseat``: a learner's new configuration version, installed on the voters it
copies from, then their state read and adopted before it votes. Method names
follow the production functions, step for step; each step that waits for
answers continues in a callback.

Each production call to many voters (``_gather``) is a `Gather`: one request
per member, answers counted until every member answered, they are
``enough``, or ``SimConfig.call_timeout`` passes (a member that does not
answer in time gives no answer, as a failed call does; an answer of None is
none). Requests and the `Answer` are sim-only messages named after the
acceptor server's calls (``install``, ``floor``, ``snapshot``,
``adopt_floors``, ``bulk_accept``); the acceptor side (`SimNode.on_call`)
answers each once what it depends on is durable, as the driver contract asks.

The configuration register is ``Cluster.voter_config``: a change is chosen
atomically by compare-and-set, as the register round (``set_config``) would.
Nodes learn configurations as the membership servers tell each other:
`ConfigHello` when two nodes meet (here: at boot) and whenever a node
installs a newer one, and on request (a "config" refusal or a heartbeat ack
of a newer version makes a node ask the voter that sent it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paxtor.paxos.acceptor import FLOOR_STRIDE, Collected, KeyRecord, LogRecord, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Register
from paxtor.paxos.voter_config import VoterConfig

if TYPE_CHECKING:
    from paxtor.sim.cluster import SimNode

__all__ = [
    "AdoptFloors",
    "Answer",
    "BulkAccept",
    "CALLS",
    "ConfigHello",
    "FloorQuery",
    "Gather",
    "Install",
    "KeyCount",
    "Reseat",
    "StateQuery",
    "StateRead",
    "VoterChange",
    "pick_voters",
]

Slot = tuple[str, Hashable]
MIN_VOTERS, MAX_VOTERS = 3, 5  # a learner needs a quorum of the others: never fewer than 3


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigHello:
    """Sim-only (the membership server's ``MemberHello``): the newest configuration the
    sender knows; ``answer``: send yours back."""

    config: VoterConfig | None
    answer: bool = False


@dataclass(frozen=True, slots=True)
class Install:
    """``("install", cluster, config)``: install a newer configuration, answer once durable."""

    tag: int
    config: VoterConfig


@dataclass(frozen=True, slots=True)
class KeyCount:
    """``("key_count",)``: how many keys the acceptor holds."""

    tag: int


@dataclass(frozen=True, slots=True)
class FloorQuery:
    """``("floor",)``: the promise floor (None from a learner)."""

    tag: int


@dataclass(frozen=True, slots=True)
class StateQuery:
    """``("snapshot", ballot)`` and its pages: promise ``ballot`` for every key (if given),
    then the acceptor's state."""

    tag: int
    ballot: Ballot | None = None


@dataclass(frozen=True, slots=True)
class AdoptFloors:
    """``("adopt_floors", rows)``: take other voters' floors of dropped keys."""

    tag: int
    rows: tuple[Collected, ...]


@dataclass(frozen=True, slots=True)
class BulkAccept:
    """``("bulk_accept", ballot, config, items)``: accept each ``(bucket, key, register)``;
    the answer is the slots refused."""

    tag: int
    ballot: Ballot
    config: int
    items: tuple[tuple[str, Hashable, Register], ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to one of the calls above (None: the call failed)."""

    tag: int
    value: Any


CALLS = (Install, KeyCount, FloorQuery, StateQuery, AdoptFloors, BulkAccept)


# -- calls to many members ----------------------------------------------------------------------


class Gather:
    """One call to every member at once (production ``_gather``); ``done`` gets the answers."""

    def __init__(
        self,
        members: Sequence[str],
        done: Callable[[dict[str, Any]], None],
        enough: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.members = tuple(members)
        self.done = done
        self.enough = enough
        self.answers: dict[str, Any] = {}
        self.heard: list[str] = []
        self.over = False

    def on_answer(self, member: str, value: Any) -> None:
        if self.over or member not in self.members or member in self.heard:
            return  # late, or a duplicate
        self.heard.append(member)
        if value is not None:
            self.answers[member] = value
        if len(self.heard) == len(self.members) or (self.enough is not None and self.enough(self.answers)):
            self.finish()

    def finish(self) -> None:
        """Every member answered, enough did, or the time is up."""
        if not self.over:
            self.over = True
            self.done(self.answers)


class StateRead:
    """What ``read_state`` gathered: per key, the state with the highest accepted ballot."""

    def __init__(self) -> None:
        self.best: dict[Slot, KeyRecord] = {}
        self.collected: list[Collected] = []
        self.floor = 0
        self.contested: dict[Slot, None] = {}  # promised above the read's ballot (in order)

    def records(self) -> list[LogRecord]:
        return [*self.collected, *self.best.values()]

    def take(self, record: Any, ballot: Ballot | None) -> None:
        cls = type(record)
        if cls is KeyRecord:
            slot = (record.bucket, record.key)
            if ballot is not None and record.promised > ballot:
                self.contested[slot] = None
            mine = self.best.get(slot)
            if mine is None or record.accepted_ballot > mine.accepted_ballot:
                self.best[slot] = record
        elif cls is PromiseFloor:
            self.floor = max(self.floor, record.counter)
        elif cls is Collected:
            self.collected.append(record)


def read_answers(sources: Sequence[str], answers: dict[str, Any], ballot: Ballot | None) -> StateRead | None:
    """The state read from every source's snapshot, or None if one did not answer (a
    production ``read_state`` call raises then)."""
    if any(s not in answers for s in sources):
        return None
    read = StateRead()
    for source in sources:
        for record in answers[source]:
            read.take(record, ballot)
    return read


# -- a change of the voters ---------------------------------------------------------------------


def pick_voters(
    kind: str, current: VoterConfig, acceptors: Sequence[str], rng: random.Random, victim: str | None = None
) -> tuple[str, ...] | None:
    """The voters a planned change of ``kind`` moves ``current`` to (None: nothing to do).

    Between `MIN_VOTERS` and `MAX_VOTERS` voters; a kind that does not fit the
    current size turns into one that does. ``shrink`` removes ``victim`` if given;
    ``replace_dead`` swaps out ``victim``;
    ``replace_cut`` swaps out two voters (one if there is one spare), ``victim`` among
    them if it is one.
    """
    voters = list(current.voters)
    spare = [n for n in acceptors if n not in voters]
    if kind == "replace_dead" and victim in voters and spare:
        new = rng.choice(spare)
        return tuple(new if v == victim else v for v in voters)
    if kind == "replace_cut" and spare:
        count = min(2, len(spare))
        gone = [victim] if victim in voters else []
        gone += rng.sample([v for v in voters if v not in gone], count - len(gone))
        added = rng.sample(spare, count)
        return tuple([v for v in voters if v not in gone] + added)
    if kind == "shrink" and victim in voters and len(voters) > MIN_VOTERS:
        return tuple(v for v in voters if v != victim)
    if kind == "shrink" and len(voters) <= MIN_VOTERS:
        kind = "grow"
    if kind == "grow" and (len(voters) >= MAX_VOTERS or not spare):
        kind = "shrink" if len(voters) > MIN_VOTERS else "replace"
    if kind == "grow":
        added = rng.sample(spare, min(rng.randint(1, 2), len(spare), MAX_VOTERS - len(voters)))
        return tuple(voters + added)
    if kind == "shrink":
        gone = rng.sample(voters, min(rng.randint(1, 2), len(voters) - MIN_VOTERS))
        return tuple(v for v in voters if v not in gone)
    if not spare:
        return None
    count = rng.randint(1, min(2, len(spare)))
    gone, added = rng.sample(voters, count), rng.sample(spare, count)
    return tuple([v for v in voters if v not in gone] + added)


class VoterChange:
    """One run of ``change_voters`` on a node, or (``joint`` given) of
    ``finish_left_change``: a voter finishing a change whose coordinator went away.

    A step that fails (too few answers in time) ends the run, as ``NoQuorum``
    does; an operator's run (``pick`` given) is started again a few times, as an
    operator would run the command again.
    """

    retries = 3

    def __init__(
        self,
        node: SimNode,
        pick: Callable[[VoterConfig], tuple[str, ...] | None] | None = None,
        joint: VoterConfig | None = None,
    ) -> None:
        self.node = node
        self.sim = node.sim
        self.pick = pick
        self.target: tuple[str, ...] | None = None
        self.joint = joint
        self.installed = 0.0  # when the joint configuration was installed (the node's clock)
        self.failures = 0
        self.then: Callable[[], None] = self.end

    def start(self) -> None:
        if self.joint is not None:
            self.sim.count("changes_resumed")
            self.finish_change(self.joint, self.end)
        else:
            self.change_voters()

    # -- change_voters ------------------------------------------------------------------------

    def change_voters(self) -> None:
        """Finish a change under way, then go from the current configuration to the target."""
        current = self.read_config()
        if current.joint:
            self.finish_change(current, self.change_voters)
            return
        if self.target is None:
            assert self.pick is not None
            self.target = self.pick(current)
            if self.target is None:
                self.end()
                return
        if set(current.voters) == set(self.target) or self.sim.q.now >= self.sim.config.fault_time:
            self.end()  # done, or the operator stopped at the final heal: no new change starts
            return
        joint = current.change_to(self.target)
        added = [v for v in self.target if not current.is_member(v)]
        self.node.gather(added, KeyCount, lambda counts: self._checked(current, joint, added, counts))

    def _checked(self, current: VoterConfig, joint: VoterConfig, added: list[str], counts: dict[str, int]) -> None:
        """``check_new_voters``: a voter added must hold no key (one that voted before, and
        was removed since, holds values the others may have collected as tombstones)."""
        if any(v not in counts for v in added):
            self.fail()  # one could not be asked (``NoQuorum``)
            return
        unfit = [v for v in added if counts[v] != 0]
        if unfit:
            self.sim.count("changes_refused")
            self.refused(unfit)
            return
        if self.choose(current, joint) == joint:
            self.sim.count("changes_started")
            self.finish_change(joint, self.end)
        else:
            self.change_voters()  # the register moved on: read it again

    def refused(self, unfit: list[str]) -> None:
        """The operator wipes the refused nodes' data directories, then runs the change again."""
        for name in unfit:
            self.sim.operator_wipe(name)
        self.fail()

    def read_config(self) -> VoterConfig:
        """The register's configuration (a linearizable read), installed here too."""
        current = self.sim.voter_config
        self.node.install_config(current)
        return current

    def choose(self, expected: VoterConfig, new: VoterConfig) -> VoterConfig:
        """The register round of ``set_config(expected, new)``: the register's value after it."""
        return self.sim.choose_config(expected, new)

    # -- finish_change --------------------------------------------------------------------------

    def finish_change(self, joint: VoterConfig, then: Callable[[], None]) -> None:
        """Carry ``joint`` through to its stable end (idempotent), then ``then``."""
        assert joint.previous is not None
        self.joint, self.then = joint, then
        old = VoterConfig(joint.version - 1, joint.previous)

        def enough(acks: list[str]) -> bool:
            return joint.is_quorum(acks) and not old.is_quorum([v for v in old.members if v not in acks])

        self.install_on(joint, enough, self._joint_installed)

    def _joint_installed(self) -> None:
        assert self.joint is not None
        self.installed = self.node.local()
        self.node.install_config(self.joint)
        self.migrate(self.joint, self.wait_out_leases)

    def wait_out_leases(self) -> None:
        """Leases counted by the old quorums alone rest on acks sent before the joint
        configuration was installed: they must have run out before the new voters decide
        alone, so wait the silence threshold since the install ended."""
        wait = self.sim.config.silence - (self.node.local() - self.installed)
        if wait > 0:
            self.node.timer(wait, self._choose_final)
        else:
            self._choose_final()

    def _choose_final(self) -> None:
        joint = self.joint
        assert joint is not None
        final = joint.finished()
        now = self.choose(joint, final)
        if now != final:
            self.node.install_config(now)  # another node finished it (or moved on) meanwhile
            self.then()
            return
        self.install_on(final, final.is_quorum, self._final_installed)

    def _final_installed(self) -> None:
        assert self.joint is not None
        self.node.install_config(self.joint.finished())
        self.sim.count("changes_done")
        self.then()

    def install_on(self, config: VoterConfig, enough: Callable[[list[str]], bool], then: Callable[[], None]) -> None:
        """Install ``config`` on its members until those that did satisfy ``enough``."""

        def done(answers: dict[str, Any]) -> None:
            if enough(list(answers)):
                then()
            else:
                self.fail()

        self.node.gather(config.members, lambda tag: Install(tag, config), done, enough=lambda a: enough(list(a)))

    # -- migrate ------------------------------------------------------------------------------------

    def migrate(self, joint: VoterConfig, then: Callable[[], None]) -> None:
        """Copy every key to a quorum of ``joint`` in one bulk round, then ``then``."""
        members = self.migrate_members(joint)

        def floors_in(floors: dict[str, int]) -> None:
            if not joint.is_quorum(list(floors)):
                self.fail()
                return
            ballot = Ballot(max(floors.values()) + FLOOR_STRIDE, self.node.ident)
            sources = [m for m in members if m in floors]
            self.node.gather(sources, lambda tag: StateQuery(tag, ballot), lambda a: read_in(sources, a, ballot))

        def read_in(sources: list[str], answers: dict[str, Any], ballot: Ballot) -> None:
            read = read_answers(sources, answers, ballot)
            if read is None:
                self.fail()
                return
            rows = tuple(read.collected)
            self.node.gather(
                members, lambda tag: AdoptFloors(tag, rows), lambda _: self._bulk_round(joint, ballot, read, then)
            )

        self.node.gather(members, FloorQuery, floors_in)

    def migrate_members(self, joint: VoterConfig) -> tuple[str, ...]:
        return joint.members

    def _bulk_round(self, joint: VoterConfig, ballot: Ballot, read: StateRead, then: Callable[[], None]) -> None:
        """Phase 2 in pages; the keys a quorum did not take (and those contested) get a
        round of their own."""
        leftover: list[Slot] = sorted(read.contested, key=repr)
        items = [
            (slot[0], slot[1], record.accepted)
            for slot, record in read.best.items()
            if slot not in read.contested and record.accepted_ballot != Ballot.ZERO
        ]
        size = self.sim.config.migrate_page
        pages = [tuple(items[i : i + size]) for i in range(0, len(items), size)]
        members = self.migrate_members(joint)

        def next_page(index: int) -> None:
            if index == len(pages):
                self.sim.count_by("keys_by_round", len(leftover))
                self.node.read_rounds(leftover, then)
                return
            page = pages[index]

            def taken(answers: dict[str, Any]) -> None:
                for bucket, key, _ in page:
                    took = [m for m, refused in answers.items() if (bucket, key) not in refused]
                    if joint.is_quorum(took):
                        self.sim.count("keys_moved")
                    else:
                        leftover.append((bucket, key))
                next_page(index + 1)

            self.node.gather(members, lambda tag: BulkAccept(tag, ballot, joint.version, page), taken)

        next_page(0)

    # -- the end ------------------------------------------------------------------------------------

    def fail(self) -> None:
        """A step got too few answers in time (``NoQuorum``): the operator tries again."""
        self.sim.count("change_failed")
        self.failures += 1
        if self.pick is not None and self.failures <= self.retries:
            self.node.timer(self.sim.config.lease, self.change_voters)
        else:
            self.end()

    def end(self) -> None:
        if self.node.change is self:
            self.node.change = None


class Reseat:
    """A learner's catch-up (``reseat``): a new version of its configuration, chosen and
    installed on ``sources``, then their state read and adopted; then it votes."""

    def __init__(self, node: SimNode, config: VoterConfig, sources: tuple[str, ...]) -> None:
        self.node = node
        self.sim = node.sim
        self.config = config
        self.sources = sources
        self.new = VoterConfig(config.version + 1, config.voters)

    def start(self) -> None:
        chosen = self.sim.choose_config(self.config, self.new)
        if chosen != self.new:
            self.node.install_config(chosen)  # the cluster moved on: start again from there
            self.end()
            return
        self.sim.count("catch_up_configs")
        self.node.gather(self.sources, lambda tag: Install(tag, self.new), self._installed)

    def _installed(self, answers: dict[str, Any]) -> None:
        if any(s not in answers for s in self.sources):
            self.end()
            return
        self.node.install_config(self.new)
        self.node.gather(self.sources, StateQuery, self._read)

    def _read(self, answers: dict[str, Any]) -> None:
        read = read_answers(self.sources, answers, None)
        if read is None:
            self.end()
            return
        self.node.catch_up(read.records(), read.floor, self._voting)

    def _voting(self) -> None:
        self.node.lost_disk = False
        self.sim.count("caught_up")
        self.end()

    def end(self) -> None:
        if self.node.reseat is self:
            self.node.reseat = None
