"""The proposer engine: per-key queues, waiting for a quorum, deadlines, thrifty phases and the
ballot skip after a conflict, driven by hand with real in-memory acceptors."""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from typing import Any

from paxtor.actors.ids import Pid
from paxtor.paxos.acceptor import Accept, Accepted, Acceptor, Nack, Prepare
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import VouchRelease
from paxtor.paxos.errors import NoQuorum
from paxtor.paxos.lease import SilenceTracker
from paxtor.paxos.proposer import ProposerState
from paxtor.paxos.proposer_engine import (
    BALLOT_SKIP,
    Finish,
    ProposerEngine,
    ProposeRequest,
    Send,
    StartTimer,
)
from paxtor.paxos.register import Binding, LeaseFence, Register, identity, put_if_empty
from paxtor.paxos.voter_config import VoterConfig

VOTERS = ("a", "b", "c")


class Host:
    """A node named ``p`` (no acceptor of its own) that sees ``able`` voters."""

    def __init__(self, able: Iterable[str] = VOTERS) -> None:
        self.config = VoterConfig.initial(VOTERS)
        self.able_now = list(able)

    def voter_config(self) -> VoterConfig | None:
        return self.config

    def able(self) -> list[str]:
        return self.able_now

    def has_quorum(self) -> bool:
        return self.config.is_quorum(self.able_now)

    def connected_others(self) -> list[str]:
        return [v for v in self.config.members if v in self.able_now]

    def down_members(self) -> list[str]:
        return [v for v in self.config.members if v not in self.able_now]

    def votes_here(self) -> bool:
        return False

    def lease_term(self, now: float) -> int | None:
        return 1

    def promised(self, bucket: str, key: Hashable) -> Ballot | None:
        return None

    def is_local(self, pid: Pid) -> bool:
        return False

    def holds_key(self, slot: Any) -> bool:
        return False

    def holds_tenure(self, pid: Pid, bucket: str, key: Hashable, epoch: int) -> bool:
        return False

    def is_alive(self, pid: Pid) -> bool:
        return False


def engine(host: Host, thrifty_after: float | None = None) -> ProposerEngine:
    return ProposerEngine(
        host,
        name="p",
        identity=("p", 1),
        incarnation=1,
        state=ProposerState(("p", 1)),
        rng=random.Random(1),
        default_timeout=5.0,
        attempt_timeout=1.0,
        wait_interval=0.25,
        thrifty_after=thrifty_after,
    )


class Voters:
    """In-memory acceptors that answer every `Send` at once (``muted``: never)."""

    def __init__(self) -> None:
        self.acceptors = {v: Acceptor((v, 1), SilenceTracker(4.0, 0.0), voting=True) for v in VOTERS}
        self.muted: set[str] = set()
        self.sent: list[Send] = []

    def run(self, eng: ProposerEngine, effects: list[Any], now: float = 0.0) -> list[Any]:
        """Deliver sends and their answers until none is left; the other effects, in order."""
        rest: list[Any] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if type(effect) is not Send:
                rest.append(effect)
                continue
            self.sent.append(effect)
            if effect.voter in self.muted:
                continue
            acceptor = self.acceptors[effect.voter]
            msg = effect.msg
            answer = acceptor.on_prepare(msg, now)[0] if type(msg) is Prepare else acceptor.on_accept(msg, now)[0]
            queue.extend(eng.on_reply(effect.voter, answer, now))
        return rest


def put(key: str, value: Any) -> ProposeRequest:
    return ProposeRequest("b", key, put_if_empty(value))


def finishes(effects: list[Any]) -> list[Finish]:
    return [e for e in effects if type(e) is Finish]


def test_requests_on_one_key_run_one_at_a_time_and_a_stalled_one_yields():
    voters, eng = Voters(), engine(Host())
    voters.muted = set(VOTERS)  # the first request's round hangs: the second must wait for it
    first = voters.run(eng, eng.submit(put("k", 1), "first", 0.0))
    second = voters.run(eng, eng.submit(put("k", 2), "second", 0.0))
    assert finishes(first) == finishes(second) == []
    assert {type(e.msg) for e in voters.sent} == {Prepare}
    assert len(voters.sent) == 3  # only the first request's prepare went out
    voters.muted = set()
    timer = next(e for e in first if type(e) is StartTimer)
    done = finishes(voters.run(eng, eng.on_timer(timer.token, 1.0), 1.0))
    # the first timed out before any accept went out: the request queued behind it goes first
    assert [(d.token, d.register.value) for d in done] == [("second", 2), ("first", 2)]
    assert [d.applied for d in done] == [True, False]


def test_a_request_without_a_quorum_sends_nothing_and_fails_at_its_deadline():
    host = Host(able=["a"])
    voters, eng = Voters(), engine(host)
    effects = voters.run(eng, eng.submit(put("k", 1), "t", 0.0))
    assert voters.sent == []
    timer = next(e for e in effects if type(e) is StartTimer)
    assert timer.delay == 0.25  # waits for a quorum, re-checked each wait_interval
    done = finishes(voters.run(eng, eng.on_timer(timer.token, 5.0), 5.0))
    assert len(done) == 1 and isinstance(done[0].error, NoQuorum)
    assert not done[0].error.maybe_applied


def test_a_quorum_coming_back_resumes_a_waiting_request_at_once():
    host = Host(able=["a"])
    voters, eng = Voters(), engine(host)
    voters.run(eng, eng.submit(put("k", 1), "t", 0.0))
    host.able_now = list(VOTERS)
    done = finishes(voters.run(eng, eng.view_changed(0.1), 0.1))
    assert [d.register.value for d in done] == [1]


def test_thrifty_phases_go_to_a_quorum_first_and_to_the_rest_on_a_timer():
    voters, eng = Voters(), engine(Host(), thrifty_after=0.01)
    voters.muted = {"a", "b", "c"}
    effects = voters.run(eng, eng.submit(put("k", 1), "t", 0.0))
    assert len(voters.sent) == 2  # a majority of three
    thrifty = [e for e in effects if type(e) is StartTimer and e.token[0] == "thrifty"]
    assert [e.delay for e in thrifty] == [0.01]
    voters.run(eng, eng.on_timer(thrifty[0].token, 0.01), 0.01)
    assert sorted(e.voter for e in voters.sent) == sorted(VOTERS)


def test_a_keys_first_voters_are_remembered_until_the_voters_able_to_answer_change():
    host = Host()
    voters, eng = Voters(), engine(host, thrifty_after=0.01)
    voters.run(eng, eng.submit(put("k", 1), "t", 0.0))
    first = {e.voter for e in voters.sent}
    assert len(first) == 2
    voters.sent.clear()
    voters.run(eng, eng.submit(put("k", 2), "t", 0.1), 0.1)  # a new round on the key: the same quorum
    assert {e.voter for e in voters.sent} == first
    host.able_now = [v for v in VOTERS if v not in first] + [sorted(first)[0]]  # one of them is gone
    voters.run(eng, eng.view_changed(0.2), 0.2)
    voters.sent.clear()
    voters.run(eng, eng.submit(put("k", 3), "t", 0.3), 0.3)
    assert {e.voter for e in voters.sent} == set(host.able_now)  # the gone voter is not asked first


def test_a_new_voter_configuration_forgets_the_remembered_first_voters():
    host = Host()
    voters, eng = Voters(), engine(host, thrifty_after=0.01)
    voters.run(eng, eng.submit(put("k", 1), "t", 0.0))
    assert len({e.voter for e in voters.sent}) == 2  # a majority of three
    host.config = VoterConfig.initial(("a", "b", "c", "d", "e"))  # before any view change says so
    voters.muted = set(VOTERS)
    voters.sent.clear()
    voters.run(eng, eng.submit(put("k2", 1), "t", 0.1), 0.1)
    voters.sent.clear()
    voters.run(eng, eng.submit(put("k", 2), "t", 0.2), 0.2)
    assert len({e.voter for e in voters.sent}) == 3  # a majority of five, not the two remembered


def test_a_conflict_skips_the_ballot_counter_past_the_winner_by_blocks():
    voters, eng = Voters(), engine(Host())
    winner = Ballot(7 * BALLOT_SKIP + 3, ("q", 1))
    for acceptor in voters.acceptors.values():
        acceptor.on_prepare(Prepare("b", "k", winner), 0.0)
    effects = voters.run(eng, eng.submit(put("k", 1), "t", 0.0))
    retry = next(e for e in effects if type(e) is StartTimer and e.token[0] == "retry")
    voters.sent.clear()
    done = finishes(voters.run(eng, eng.on_timer(retry.token, retry.delay), retry.delay))
    ballot = voters.sent[0].msg.ballot
    assert ballot.counter >= 8 * BALLOT_SKIP  # past the winner's block, not just one above it
    assert [d.register.value for d in done] == [1]


def timed_round(voters: Voters, eng: ProposerEngine, key: str, start: float, took: float) -> None:
    """A request on ``key`` whose prepares are answered ``took`` seconds after they went out
    (its accepts at once): phase 1 takes ``took``."""
    voters.muted, voters.sent = set(VOTERS), []
    voters.run(eng, eng.submit(put(key, 1), key, start), start)
    voters.muted, now = set(), start + took
    effects: list[Any] = []
    for send in voters.sent:
        effects += eng.on_reply(send.voter, voters.acceptors[send.voter].on_prepare(send.msg, now)[0], now)
    assert [d.register.value for d in finishes(voters.run(eng, effects, now))] == [1]


def test_a_request_that_lost_again_retries_only_after_the_round_that_beat_it_can_be_done():
    """Rounds here take 0.2 s (phase 1 alone 0.1 s). A loser's retry goes out at a ballot
    skipped above the winner's: sent within the backoff window alone (0.02 s after a second
    loss), it lands while the winner's round runs and preempts it, and contenders on a slow
    key only take turns preempting each other. The first retry goes at once (a collision);
    after a second loss the request waits a round."""
    voters, eng = Voters(), engine(Host())
    for i in range(3):
        timed_round(voters, eng, f"w{i}", start=float(i), took=0.1)

    def rival(counter: int, now: float) -> None:  # q's round on k is under way
        for acceptor in voters.acceptors.values():
            acceptor.on_prepare(Prepare("b", "k", Ballot(counter, ("q", 1))), now)

    def retry_timer(effects: list[Any]) -> StartTimer:
        return next(e for e in effects if type(e) is StartTimer and e.token[0] == "retry")

    rival(7 * BALLOT_SKIP, 5.0)
    first = retry_timer(voters.run(eng, eng.submit(put("k", 1), "t", 5.0), 5.0))
    assert first.delay <= 0.01
    rival(100 * BALLOT_SKIP, 5.0 + first.delay)
    second = retry_timer(voters.run(eng, eng.on_timer(first.token, 5.0 + first.delay), 5.0 + first.delay))
    assert 0.2 <= second.delay <= 0.2 + 0.02


def test_a_refusal_after_the_round_was_chosen_still_lifts_the_next_ballot_above_it():
    """A voter that lags on a key refuses the round the others choose; the next round (a
    spread that must reach that voter too) goes above its promise, not 1-RTT below it."""
    voters, eng = Voters(), engine(Host())
    high = Ballot(50, ("q", 1))
    voters.acceptors["c"].on_prepare(Prepare("b", "k", high), 0.0)
    voters.muted = {"c"}  # c answers only after a and b chose the value
    assert [d.register.value for d in finishes(voters.run(eng, eng.submit(put("k", 1), "t", 0.0)))] == [1]
    accept = next(s.msg for s in voters.sent if s.voter == "c" and type(s.msg) is Accept)
    refusal = voters.acceptors["c"].on_accept(accept, 0.0)[0]
    assert type(refusal) is Nack
    assert voters.run(eng, eng.on_reply("c", refusal, 0.0)) == []
    voters.muted, voters.sent = set(), []
    spread = ProposeRequest("b", "k", identity, spread=True)
    done = finishes(voters.run(eng, eng.submit(spread, "s", 0.0)))
    assert voters.sent[0].msg.ballot > high
    assert [d.register.value for d in done] == [1]
    # every voter, c too, now holds the value at the spread's ballot
    assert {a.state("b", "k").accepted_ballot for a in voters.acceptors.values()} == {voters.sent[-1].msg.ballot}


def test_a_proposed_value_too_large_fails_the_request_and_sends_no_accept():
    voters = Voters()
    eng = engine(Host())
    eng.max_request_bytes = 1024
    done = finishes(voters.run(eng, eng.submit(put("k", "x" * 4096), "t", 0.0)))
    assert len(done) == 1 and isinstance(done[0].error, ValueError)
    assert not any(type(e.msg) is Accept for e in voters.sent)
    assert Register.empty().is_empty


def test_a_fence_of_this_nodes_own_is_vouched_for_when_a_ballot_refusal_joins_the_vetoes():
    """A key left fenced with a pid of this node (bound while it was cut off) is freed only
    by this node's vouching. Voters that hear the node veto the fenced value; with rivals on
    the key another voter refuses it by ballot, and the round decides CONFLICT, not VETOED:
    it must vouch all the same, or the key stays fenced for as long as the rivals try."""
    voters, eng = Voters(), engine(Host())
    fence = LeaseFence(3, Binding(pid=Pid("p", 1, 5)))  # a pid of this node, not alive here
    fenced = Register(epoch=3, filled=False, lease_fences=(fence,))
    old = Ballot(2, ("q", 1))
    for name in ("a", "c"):  # a noconnection release accepted by two, chosen by none known
        voters.acceptors[name].on_prepare(Prepare("b", "k", old), 10.0)
        assert type(voters.acceptors[name].on_accept(Accept("b", "k", old, fenced), 10.0)[0]) is Accepted
    for acceptor in voters.acceptors.values():
        acceptor.heard("p", 1, 10.0)  # they hear p again: they veto the release
    eng.state.observe(Ballot(50, ("q", 1)))
    voters.acceptors["c"].on_prepare(Prepare("b", "k", Ballot(99, ("q", 1))), 10.0)  # a rival
    effects = voters.run(eng, eng.submit(ProposeRequest("b", "k", identity), "t", 10.5), 10.5)
    assert [type(e.msg) for e in voters.sent].count(Accept) == 3  # phase 2 went out, and ...
    retry = [e for e in effects if type(e) is StartTimer and e.token[0] == "retry"]
    assert retry  # ... the round lost: a CONFLICT (a and b vetoed, c refused by ballot)
    assert [(e.fence, e.reason) for e in effects if type(e) is VouchRelease] == [(fence, "noproc")]
