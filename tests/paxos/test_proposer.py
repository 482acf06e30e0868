"""One round as a state machine, and the per-node ProposerState (ballots, 1-RTT cache)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from paxtor.actors.ids import Pid
from paxtor.paxos.acceptor import (
    NACK_LEASE_VETO,
    Accept,
    Accepted,
    Acceptor,
    Nack,
    Prepare,
    Promise,
)
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import SilenceTracker
from paxtor.paxos.proposer import (
    CHOSEN,
    CONFLICT,
    NO_QUORUM,
    REJECTED,
    VETOED,
    Backoff,
    Decision,
    ExactlyOnce,
    Proposer,
    ProposerState,
    Step,
    majority,
)
from paxtor.paxos.register import (
    NOCONNECTION,
    Binding,
    EndedBinding,
    LeaseFence,
    Register,
    identity,
    put_if_empty,
    release_if_bound,
)
from paxtor.paxos.voter_config import VoterConfig

VOTERS = ("a", "b", "c")
CONFIG = VoterConfig.initial(VOTERS)
BK, KEY = "default", "k"
ME = ("p", 1)
BALLOT = Ballot(5, ME)
P = Pid("o", 1, 1)
OWNED = Register.empty().claim("v", pid=P)


def round_(change=identity, ballot=BALLOT, **kw) -> Proposer:  # type: ignore[no-untyped-def]
    return Proposer(BK, KEY, change, ballot, CONFIG, **kw)


def promise(accepted_ballot: Ballot = Ballot.ZERO, reg: Register | None = None, ballot: Ballot = BALLOT) -> Promise:
    return Promise(BK, KEY, ballot, accepted_ballot, reg if reg is not None else Register.empty())


def targets(step: Step) -> list[str]:
    return [voter for voter, _ in step.send]


class Cluster:
    """Three in-memory acceptors and synchronous delivery: enough to run whole rounds."""

    def __init__(self, voters: Sequence[str] = VOTERS, silence: float = 4.0) -> None:
        self.acceptors = {v: Acceptor((v, 1), SilenceTracker(silence, 0.0), voting=True) for v in voters}
        self.down: set[str] = set()

    def run(self, rnd: Proposer, now: float = 0.0) -> Decision:
        queue = list(rnd.start().send)
        while queue:
            voter, msg = queue.pop(0)
            if voter in self.down:
                continue
            step = self.vote(rnd, voter, msg, now)
            queue.extend(step.send)
            if step.decision is not None:
                return step.decision
        return rnd.on_timeout().decision  # type: ignore[return-value]

    def vote(self, rnd: Proposer, voter: str, msg: Prepare | Accept, now: float = 0.0) -> Step:
        """``voter`` answers ``msg``; the round's step on that answer."""
        acc = self.acceptors[voter]
        reply = acc.on_prepare(msg, now)[0] if isinstance(msg, Prepare) else acc.on_accept(msg, now)[0]
        if isinstance(reply, Promise):
            return rnd.on_promise(voter, reply)
        if isinstance(reply, Accepted):
            return rnd.on_accepted(voter, reply)
        return rnd.on_nack(voter, reply)

    def deliver(self, rnd: Proposer, step: Step, to: Sequence[str]) -> Step:
        """Deliver ``step``'s messages to the voters ``to`` only; the first step the round
        takes in answer (messages to send or a decision)."""
        for voter, msg in step.send:
            if voter in to:
                answer = self.vote(rnd, voter, msg)
                if answer.send or answer.decision is not None:
                    return answer
        return Step()


def test_a_round_prepares_then_accepts_then_decides() -> None:
    rnd = round_(put_if_empty("v"))
    step = rnd.start()
    assert targets(step) == list(VOTERS)
    assert all(msg == Prepare(BK, KEY, BALLOT, None, CONFIG.version) for _, msg in step.send)
    assert rnd.on_promise("a", promise()).send == ()
    step = rnd.on_promise("b", promise())
    assert targets(step) == list(VOTERS)  # phase 2 goes to every voter
    accept = step.send[0][1]
    assert isinstance(accept, Accept) and accept.register == Register.empty().claim("v")
    assert rnd.on_accepted("c", Accepted(BK, KEY, BALLOT, False)).decision is None
    decision = rnd.on_accepted("a", Accepted(BK, KEY, BALLOT, False)).decision
    assert decision is not None and decision.outcome == CHOSEN and decision.ok
    assert decision.register == Register.empty().claim("v")
    # late replies change nothing
    assert rnd.on_accepted("b", Accepted(BK, KEY, BALLOT, False)) == Step()
    assert rnd.on_timeout() == Step()


@pytest.mark.parametrize(
    ("voter", "msg"),
    [
        ("a", promise()),  # the same voter twice
        ("z", promise()),  # not a configured voter (a connected client node, say)
        ("b", promise(ballot=Ballot(4, ME))),  # a late promise of an earlier round
        ("b", promise(ballot=Ballot(6, ("q", 1)))),  # another proposer's ballot
    ],
)
def test_only_promises_for_this_ballot_from_distinct_voters_count(voter: str, msg: Promise) -> None:
    rnd = round_()
    rnd.start()
    rnd.on_promise("a", promise())
    assert rnd.on_promise(voter, msg) == Step()
    assert rnd.phase == "prepare"


def test_quorum_is_a_majority_of_configured_voters() -> None:
    assert [majority(("a",) * n) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 2, 3, 3, 4]
    with pytest.raises(ValueError):
        VoterConfig.initial(("a", "a", "b"))


def test_change_applies_to_the_highest_accepted_ballot() -> None:
    rnd = round_(lambda r: r.with_value(r.value + "!"))
    rnd.start()
    older = Register.empty().claim("old")
    newer = Register.empty().claim("new")
    rnd.on_promise("a", promise(Ballot(2, ("q", 1)), older))
    step = rnd.on_promise("c", promise(Ballot(3, ("q", 1)), newer))
    assert step.send[0][1].register.value == "new!"


def test_a_read_of_a_value_a_quorum_holds_skips_phase_two() -> None:
    rnd = round_(identity)
    rnd.start()
    held = Register.empty().claim("v")
    rnd.on_promise("a", promise(Ballot(3, ("q", 1)), held))
    step = rnd.on_promise("b", promise(Ballot(3, ("q", 1)), held))
    assert step.send == () and step.decision is not None
    assert step.decision.outcome == CHOSEN and step.decision.register == held


def test_a_read_of_an_unsettled_value_writes_it_back() -> None:
    rnd = round_(identity)
    rnd.start()
    held = Register.empty().claim("v")
    rnd.on_promise("a", promise(Ballot(3, ("q", 1)), held))
    step = rnd.on_promise("b", promise(Ballot(2, ("q", 1)), Register.empty()))
    assert [type(m) for _, m in step.send] == [Accept] * 3


def test_a_retry_whose_earlier_attempt_may_be_adopted_writes_its_answer() -> None:
    """A retry that finds the chosen value without its earlier attempt's change must not skip
    phase 2 as a read: that attempt's value, accepted by a minority at a higher ballot, would
    be adopted by a later round after the request had answered (applied twice)."""
    cluster = Cluster()
    other = ("q", 1)
    old = Register.empty().claim("old")
    for acc in cluster.acceptors.values():  # "old" is chosen at ballot 1
        acc.on_accept(Accept(BK, KEY, Ballot(1, other), old, None, CONFIG.version), 0.0)
    # another node's delete reaches "a" only
    cluster.acceptors["a"].on_accept(Accept(BK, KEY, Ballot(2, other), old.release(), None, CONFIG.version), 0.0)

    once = ExactlyOnce(put_if_empty("v"), ME)
    first = Proposer(BK, KEY, once, Ballot(3, ME), CONFIG, op=once.begin(1, None))
    step = cluster.deliver(first, first.start(), ["a", "b"])  # built on the delete ...
    assert step.send[0][1].register.value == "v"
    cluster.deliver(first, step, ["a"])  # ... and accepted by "a" alone
    assert first.on_timeout().decision.maybe_applied  # type: ignore[union-attr]

    retry = Proposer(BK, KEY, once, Ballot(4, ME), CONFIG, op=once.begin(2, None))
    step = cluster.deliver(retry, retry.start(), ["b", "c"])  # "old", chosen: put changes nothing
    assert [type(msg) for _, msg in step.send] == [Accept] * 3  # written back, not skipped
    decision = cluster.deliver(retry, step, ["b", "c"]).decision
    assert decision is not None and decision.ok and once.adopted is None
    assert decision.register.visible() == old  # type: ignore[union-attr]  # the request's answer

    reader = Proposer(BK, KEY, identity, Ballot(5, other), CONFIG)
    step = cluster.deliver(reader, reader.start(), ["a", "b"])
    read = step.decision or cluster.deliver(reader, step, VOTERS).decision
    assert read is not None and read.register.visible() == old  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("nacks", "outcome"),
    [
        ([NACK_LEASE_VETO, NACK_LEASE_VETO], VETOED),
        (["ballot", NACK_LEASE_VETO], CONFLICT),
        (["ballot", "ballot"], CONFLICT),
    ],
)
def test_refusals_end_the_round_when_no_quorum_is_left(nacks: list[str], outcome: str) -> None:
    backoff = Backoff(base=0.1, cap=10.0, veto=2.0)
    rnd = round_(put_if_empty("v"), attempt=3, backoff_draw=0.5, backoff=backoff)
    rnd.start()
    rnd.on_promise("a", promise())
    rnd.on_promise("b", promise())  # now in phase 2
    higher = Ballot(9, ("q", 1))
    first = rnd.on_nack("a", Nack(BK, KEY, BALLOT, higher, nacks[0]))
    assert first.decision is None  # b and c could still make a quorum
    decision = rnd.on_nack("b", Nack(BK, KEY, BALLOT, higher, nacks[1])).decision
    assert decision is not None and decision.outcome == outcome
    assert decision.highest_seen == higher and decision.maybe_applied
    assert decision.proposed == Register.empty().claim("v")
    expected = backoff.veto_delay(0.5) if outcome == VETOED else backoff.delay(3, 0.5)
    assert decision.retry_after == expected


def test_backoff_is_a_pure_function_of_its_inputs() -> None:
    b = Backoff(base=0.01, cap=1.0, veto=2.0)
    assert [b.delay(n, 1.0) for n in (0, 1, 2, 10)] == [0.01, 0.02, 0.04, 1.0]
    assert b.delay(5, 0.0) == 0.0 and b.delay(10_000, 0.5) == 0.5
    assert (b.veto_delay(0.0), b.veto_delay(1.0)) == (1.0, 2.0)
    with pytest.raises(ValueError):
        b.delay(1, 1.5)


def test_the_backoff_floor_is_a_round_time_once_a_few_phases_were_timed() -> None:
    """A retry after the first waits at least a round's time (twice the median phase 1): a
    phase stretched by a pause of the node does not set it, and none is waited before three
    phases were timed."""
    state = ProposerState(("p", 1), backoff=Backoff(base=0.01, cap=0.1))
    state.phase_took(0.05)
    state.phase_took(4.0)  # this node was paused while its promises came in
    assert state.round_time == 0.0 and state.retry_backoff.delay(1, 0.0) == 0.0
    for took in (0.06, 0.05, 0.04):
        state.phase_took(took)
    assert state.round_time == 0.1
    backoff = state.retry_backoff
    assert backoff.delay(0, 1.0) == 0.01  # a first loss may be a collision: retry at once
    assert (backoff.delay(1, 0.0), backoff.delay(10, 1.0)) == (0.1, pytest.approx(0.2))
    rnd = state.new_round(BK, KEY, put_if_empty("v"), CONFIG, attempt=1, backoff_draw=0.0)
    rnd.start()
    winner = Ballot(10**9, ("q", 1))
    steps = [rnd.on_nack(voter, Nack(BK, KEY, rnd.ballot, winner, "ballot")) for voter in ("a", "b")]
    decision = steps[-1].decision
    assert decision is not None and decision.outcome == CONFLICT and decision.retry_after == 0.1


@pytest.mark.parametrize(("phase2", "maybe_applied"), [(False, False), (True, True)])
def test_timeout_means_no_quorum(phase2: bool, maybe_applied: bool) -> None:
    rnd = round_(put_if_empty("v"))
    rnd.start()
    if phase2:
        rnd.on_promise("a", promise())
        rnd.on_promise("b", promise())
    decision = rnd.on_timeout().decision
    assert decision is not None and decision.outcome == NO_QUORUM
    assert decision.maybe_applied == maybe_applied


def _raises(register: Register) -> Register:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (_raises, "boom"),
        (lambda r: "nope", "must return a Register"),
        (lambda r: Register(epoch=3, filled=True, value="v"), "handoff must take epoch 2"),
        (lambda r: r.release(), "without a matching EndedBinding"),  # an unjustified release
    ],
)
def test_bad_change_functions_are_rejected_and_nothing_is_sent(change, why: str) -> None:  # type: ignore[no-untyped-def]
    rnd = round_(change)
    rnd.start()
    rnd.on_promise("a", promise(Ballot(1, ("q", 1)), OWNED))
    step = rnd.on_promise("b", promise())
    assert step.send == ()
    assert step.decision is not None and step.decision.outcome == REJECTED
    assert why in (step.decision.error or "")


# -- lease fences (the justification travels in the register) ------------------


def _base_round(change, ended, base: Register, chosen: bool) -> Register:  # type: ignore[no-untyped-def]
    rnd = round_(change, ended=ended)
    rnd.start()
    rnd.on_promise("a", promise(Ballot(1, ("q", 1)), base))
    step = rnd.on_promise("b", promise(Ballot(1, ("q", 1)) if chosen else Ballot.ZERO, base if chosen else None))
    return step.send[0][1].register


ENDED_NOCONN = EndedBinding(1, Binding(pid=P), NOCONNECTION)
ENDED_EXIT = EndedBinding(1, Binding(pid=P), "normal")
FENCE = LeaseFence(1, Binding(pid=P))


def test_a_noconnection_release_carries_a_fence() -> None:
    out = _base_round(release_if_bound(ENDED_NOCONN), ENDED_NOCONN, OWNED, chosen=False)
    assert out.is_empty and out.epoch == 1 and out.lease_fences == (FENCE,)


def test_a_release_for_a_real_reason_carries_none_and_clears_its_fence() -> None:
    out = _base_round(release_if_bound(ENDED_EXIT), ENDED_EXIT, OWNED, chosen=False)
    assert out.lease_fences == ()
    fenced = Register(epoch=1, lease_fences=(FENCE,))
    # the owner's node vouches for the tenure: the stuck release is freed
    out = _base_round(release_if_bound(ENDED_EXIT), ENDED_EXIT, fenced, chosen=False)
    assert out.lease_fences == ()


def test_fences_survive_adoption_until_the_release_is_known_chosen() -> None:
    fenced = Register(epoch=1, lease_fences=(FENCE,))
    claim = put_if_empty("next")
    adopted = _base_round(claim, None, fenced, chosen=False)
    assert adopted.value == "next" and adopted.epoch == 2 and adopted.lease_fences == (FENCE,)
    settled = _base_round(claim, None, fenced, chosen=True)
    assert settled.lease_fences == ()


def test_change_functions_cannot_forge_or_drop_fences() -> None:
    fenced = Register(epoch=1, lease_fences=(FENCE,))
    out = _base_round(lambda r: Register(epoch=1), None, fenced, chosen=False)
    assert out.lease_fences == (FENCE,)


def test_end_to_end_release_is_vetoed_then_accepted() -> None:
    cluster = Cluster()
    state = ProposerState(ME)
    claim = state.new_round(BK, KEY, put_if_empty("v", Binding(pid=P)), CONFIG)
    assert cluster.run(claim).register.binding == Binding(pid=P)
    ended = EndedBinding(1, Binding(pid=P), NOCONNECTION)
    for acc in cluster.acceptors.values():
        acc.heard("o", 1, 1.0)  # the owner's node talks to everyone
    release = state.new_round(BK, KEY, release_if_bound(ended), CONFIG, ended=ended)
    decision = cluster.run(release, now=2.0)
    assert decision.outcome == VETOED
    assert decision.proposed is None  # refused at phase 1: no accept any later round could adopt
    assert not any(acc.state(BK, KEY).accepted.lease_fences for acc in cluster.acceptors.values())
    state.on_decision(release, decision)
    release = state.new_round(BK, KEY, release_if_bound(ended), CONFIG, ended=ended)
    decision = cluster.run(release, now=5.0)  # silent for 4.0 since 1.0
    assert decision.outcome == CHOSEN and decision.register.is_empty
    assert decision.register.lease_fences == (LeaseFence(1, Binding(pid=P)),)


# -- ProposerState -----------------------------------------------------------------


def test_ballots_are_unique_and_fast_forward() -> None:
    state = ProposerState(ME, one_rtt=False)
    first = state.new_round(BK, KEY, identity, CONFIG).ballot
    second = state.new_round(BK, KEY, identity, CONFIG).ballot  # concurrent, same key
    assert first < second and first.node == second.node == ME
    state.observe(Ballot(40, ("q", 7)))
    assert state.new_round(BK, KEY, identity, CONFIG).ballot == Ballot(41, ME)


def test_conflict_fast_forwards_the_next_round() -> None:
    state = ProposerState(ME)
    rnd = state.new_round(BK, KEY, identity, CONFIG)
    decision = Decision(CONFLICT, rnd.ballot, highest_seen=Ballot(70, ("q", 1)))
    state.on_decision(rnd, decision)
    assert state.new_round(BK, KEY, identity, CONFIG).ballot.counter == 71


def test_one_rtt_after_writing_a_key_last() -> None:
    cluster = Cluster()
    state = ProposerState(ME)
    first = state.new_round(BK, KEY, put_if_empty("v"), CONFIG)
    decision = cluster.run(first)
    state.on_decision(first, decision)
    assert decision.next_ballot is not None and state.cached(BK, KEY) == decision.register
    second = state.new_round(BK, KEY, lambda r: r.with_value("w"), CONFIG)
    assert second.ballot == decision.next_ballot
    assert [type(m) for _, m in second.start().send] == [Accept] * 3  # no phase 1
    second = state.new_round(BK, KEY, lambda r: r.with_value("w"), CONFIG)  # cache consumed
    assert [type(m) for _, m in second.start().send] == [Prepare] * 3


def test_one_rtt_after_another_proposer_wrote_fails_safely() -> None:
    cluster = Cluster()
    mine, theirs = ProposerState(ME), ProposerState(("q", 1))
    first = mine.new_round(BK, KEY, put_if_empty("v"), CONFIG)
    mine.on_decision(first, cluster.run(first))
    other = theirs.new_round(BK, KEY, lambda r: r.with_value("theirs"), CONFIG)
    other.ballot = Ballot(100, ("q", 1))
    assert cluster.run(other).ok
    stale = mine.new_round(BK, KEY, lambda r: r.with_value("mine"), CONFIG)
    decision = cluster.run(stale)
    assert decision.outcome == CONFLICT  # the cached promise was superseded
    mine.on_decision(stale, decision)
    assert mine.cached(BK, KEY) is None
    retry = mine.new_round(BK, KEY, lambda r: r.with_value(r.value + "+mine"), CONFIG)
    assert cluster.run(retry).register.value == "theirs+mine"


def test_a_known_higher_promise_skips_a_stale_cache() -> None:
    cluster = Cluster()
    state = ProposerState(ME)
    first = state.new_round(BK, KEY, put_if_empty("v"), CONFIG)
    state.on_decision(first, cluster.run(first))
    rnd = state.new_round(BK, KEY, identity, CONFIG, known_promised=Ballot(99, ("q", 1)))
    assert rnd.cached is None
    assert [type(m) for _, m in rnd.start().send] == [Prepare] * 3


def test_quorum_survives_a_minority_down_but_not_a_majority() -> None:
    cluster = Cluster()
    state = ProposerState(ME)
    cluster.down = {"c"}
    assert cluster.run(state.new_round(BK, KEY, put_if_empty("v"), CONFIG)).ok
    cluster.down = {"b", "c"}
    decision = cluster.run(state.new_round(BK, "k2", put_if_empty("v"), CONFIG))
    assert decision.outcome == NO_QUORUM and not decision.maybe_applied


def test_a_noconnection_release_skips_the_one_rtt_cache_and_names_its_tenure() -> None:
    cluster = Cluster()
    state = ProposerState(ME)
    claim = state.new_round(BK, KEY, put_if_empty("v", Binding(pid=P)), CONFIG)
    state.on_decision(claim, cluster.run(claim))
    assert state.cached(BK, KEY) is not None  # the next round of ours could skip phase 1 ...
    ended = EndedBinding(1, Binding(pid=P), NOCONNECTION)
    release = state.new_round(BK, KEY, release_if_bound(ended), CONFIG, ended=ended)
    step = release.start()  # ... but a noconnection release asks the acceptors first
    assert {type(msg) for _, msg in step.send} == {Prepare}
    assert all(msg.lease_fence == LeaseFence(1, Binding(pid=P)) for _, msg in step.send)


def test_a_round_given_an_op_marks_what_its_change_changed() -> None:
    cluster = Cluster()
    state = ProposerState(ME, one_rtt=False)
    other = ("q", 2, 99)
    cluster.run(state.new_round(BK, KEY, put_if_empty("v"), CONFIG, op=other))
    write = state.new_round(BK, KEY, lambda r: r.with_value("w"), CONFIG, op=("me", 1, 7))
    written = cluster.run(write).register
    assert written.value == "w" and written.op_marks == (("me", 1, 7), other)  # one per node
    assert written.op_mark("me") == ("me", 1, 7) and written.visible().op_marks == ()
    read = state.new_round(BK, KEY, identity, CONFIG, op=("me", 1, 8))
    assert cluster.run(read).register.op_marks == written.op_marks  # a read changes nothing


def test_a_retry_that_changes_nothing_still_writes_when_an_earlier_attempt_changed_the_key():
    """Attempt 1 of a put meets a tombstone and proposes a value that only one voter takes;
    attempt 2's quorum reports the chosen value (filled: the put changes nothing). A read
    there would leave attempt 1's accept lingering at a higher ballot, to be adopted after
    the request answered "unchanged": attempt 2 must write at its own ballot instead."""
    once = ExactlyOnce(put_if_empty(530), ME)
    chosen, chosen_at = Register.empty().claim(312), Ballot(3, ("q", 1))
    tomb = chosen.release()
    first = round_(once, Ballot(7, ME), op=once.begin(1, None))
    first.on_promise("a", promise(Ballot(4, ("r", 1)), tomb, Ballot(7, ME)))
    step = first.on_promise("b", promise(chosen_at, chosen, Ballot(7, ME)))
    assert step.send and step.send[0][1].register.value == 530  # attempt 1 changed the key
    second = round_(once, Ballot(9, ME), op=once.begin(2, None))
    second.on_promise("b", promise(chosen_at, chosen, Ballot(9, ME)))
    step = second.on_promise("c", promise(chosen_at, chosen, Ballot(9, ME)))
    assert step.decision is None  # not a read: phase 2 goes out
    assert {type(msg) for _, msg in step.send} == {Accept}
    assert step.send[0][1].register.value == 312
    fresh = ExactlyOnce(put_if_empty(530), ME)  # a first attempt may still read
    third = round_(fresh, Ballot(11, ME), op=fresh.begin(3, None))
    third.on_promise("b", promise(chosen_at, chosen, Ballot(11, ME)))
    step = third.on_promise("c", promise(chosen_at, chosen, Ballot(11, ME)))
    assert step.decision is not None and step.decision.outcome == CHOSEN and not step.send

