"""Voter configurations (pure): quorums of stable and joint configurations, the catch-up
rule for a learner, and why a learner must end the old configuration's rounds (a new
version installed on the others) before it votes: reading their state is not enough."""

from __future__ import annotations

import pytest

from paxtor.paxos.acceptor import NACK_CONFIG, NACK_LEARNER, Accept, Accepted, Acceptor, Nack, Prepare, Promise
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import SilenceTracker
from paxtor.paxos.proposer import Decision, Proposer, ProposerState
from paxtor.paxos.register import Register, identity, put_if_empty
from paxtor.paxos.voter_config import VoterConfig

B, K = "default", "key"
V1 = VoterConfig.initial(("L", "B", "C"))


def test_a_joint_quorum_needs_a_majority_of_both_sets() -> None:
    joint = V1.change_to(("L", "B", "D", "E", "F"))
    assert joint.joint and joint.version == 2 and joint.members == ("L", "B", "D", "E", "F", "C")
    assert not joint.is_quorum({"L", "B"})  # old majority, new minority
    assert not joint.is_quorum({"D", "E", "F"})  # new majority, old minority
    assert joint.is_quorum({"L", "D", "E", "C"})
    assert joint.quorum_size() == 3 and joint.is_quorum({"L", "B", "D"})
    final = joint.finished()
    assert final == VoterConfig(3, ("L", "B", "D", "E", "F")) and not final.joint


def test_configurations_refuse_what_makes_no_sense() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        VoterConfig(1, ("a", "a"))
    with pytest.raises(ValueError, match="already"):
        V1.change_to(("C", "B", "L"))
    with pytest.raises(ValueError, match="under way"):
        V1.change_to(("L", "B")).change_to(("L",))
    with pytest.raises(ValueError, match="not a change"):
        V1.finished()


@pytest.mark.parametrize(
    ("voters", "able", "sources"),
    [
        (("L", "B", "C"), {"B", "C"}, ("B", "C")),
        (("L", "B", "C"), {"B"}, None),  # {L, C} is a quorum without B: C may hold what L lost
        (("L", "B", "C", "D", "E"), {"B", "C", "D"}, ("B", "C", "D")),
        (("L", "B", "C", "D", "E"), {"B", "C"}, None),
        (("L", "B", "C", "D"), {"B", "C"}, None),  # meets every quorum, but is none: no round
        (("L", "B", "C", "D"), {"B", "C", "D"}, ("B", "C", "D")),
    ],
)
def test_what_a_learner_may_copy_from(voters, able, sources) -> None:
    assert VoterConfig.initial(voters).catch_up_sources("L", able) == sources


def _acceptor(name: str, *, voting: bool | None = True, config: VoterConfig = V1) -> Acceptor:
    acceptor = Acceptor((name, 1), SilenceTracker(4.0, 0.0), voting=voting)
    acceptor.install("c", config)
    return acceptor


def _choose(ballot: Ballot, value: str, config: VoterConfig, *voters: Acceptor) -> set[str]:
    """A whole round at ``ballot`` with ``voters``: the names that accepted ``value``."""
    promised = [a for a in voters if type(a.on_prepare(Prepare(B, K, ballot, None, config.version))[0]) is Promise]
    if not config.is_quorum([a.identity[0] for a in promised]):
        return set()
    accept = Accept(B, K, ballot, Register.empty().claim(value), None, config.version)
    return {a.identity[0] for a in promised if type(a.on_accept(accept, 0.0)[0]) is Accepted}


@pytest.mark.parametrize("new_version_first", [False, True])
def test_a_learner_that_only_reads_lets_a_round_of_its_lost_promise_choose_twice(new_version_first: bool) -> None:
    L, Bv, C = _acceptor("L"), _acceptor("B"), _acceptor("C")
    high, low = Ballot(2**50, ("p2", 1)), Ballot(2**50 - 7, ("p1", 1))
    # p2's prepare reaches L; its copy to B is still on the way when L's disk is wiped
    assert type(L.on_prepare(Prepare(B, K, high, None, 1))[0]) is Promise
    L = _acceptor("L", voting=None)  # blank: a learner
    assert L.on_prepare(Prepare(B, K, low, None, 1))[0].reason == NACK_LEARNER  # type: ignore[union-attr]
    config = V1
    if new_version_first:  # what `reseat` does: a new version, installed on the others first
        config = VoterConfig(2, V1.voters)
        Bv.install("c", config)
        C.install("c", config)
        L.install("c", config)
    L.adopt([*Bv.snapshot(), *C.snapshot()], 0)
    L.start_voting()
    # p1 (a lower ballot, the current configuration) chooses "one" with L and C
    assert _choose(low, "one", config, L, C) == {"L", "C"}
    # p2's delayed prepare reaches B: with L's old promise, p2 holds a quorum of promises
    reply, _ = Bv.on_prepare(Prepare(B, K, high, None, 1))
    if new_version_first:
        assert type(reply) is Nack and reply.reason == NACK_CONFIG  # version 1's rounds are over
        return
    assert type(reply) is Promise and reply.accepted_ballot == Ballot.ZERO  # nothing accepted
    accept = Accept(B, K, high, Register.empty().claim("two"), None, 1)
    took = {a.identity[0] for a in (L, Bv) if type(a.on_accept(accept, 0.0)[0]) is Accepted}
    assert took == {"L", "B"}  # "two" is chosen too: two values chosen for one key


def _round(ballot: Ballot, register: Register, config: VoterConfig, *voters: Acceptor) -> None:
    """``register`` promised and accepted at ``ballot`` by every one of ``voters``."""
    for a in voters:
        assert type(a.on_prepare(Prepare(B, K, ballot, None, config.version))[0]) is Promise
        assert type(a.on_accept(Accept(B, K, ballot, register, None, config.version), 0.0)[0]) is Accepted


def _read(ballot: Ballot, config: VoterConfig, *voters: Acceptor) -> Register | None:
    """What a read by ``voters`` (a quorum of ``config``) proposes: None if it needs no phase 2."""
    round_ = Proposer(B, K, identity, ballot, config)
    prepares = dict(round_.start().send)
    for a in voters:
        reply, _ = a.on_prepare(prepares[a.identity[0]])  # type: ignore[arg-type]
        assert type(reply) is Promise
        step = round_.on_promise(a.identity[0], reply)
    return step.send[0][1].register if step.send else None  # type: ignore[union-attr]


@pytest.mark.parametrize("wiped_first", [False, True])
def test_a_voter_added_back_with_what_it_held_brings_back_a_collected_key(wiped_first: bool) -> None:
    """Why a change refuses to add a voter that holds keys: D kept K's value when it was
    removed; the voters emptied K since and collected its tombstone; in the joint
    configuration that adds D back, D's is the only value a quorum reports, and a round
    takes it for the latest. Wiped first, D holds nothing and K stays empty."""
    p = ("p", 1)
    v1 = VoterConfig.initial(("A", "B", "C", "D"))
    a, b, c, d = (_acceptor(n, config=v1) for n in "ABCD")
    held = Register.empty().claim("x")
    _round(Ballot(10, p), held, v1, a, b, c, d)
    v3 = v1.change_to(("A", "B", "C")).finished()  # D removed (it never heard of it)
    for acceptor in (a, b, c):
        acceptor.install("c", v3)
    tombstone = held.release()
    _round(Ballot(20, p), tombstone, v3, a, b, c)
    for acceptor in (a, b, c):
        assert acceptor.collect(B, [(K, Ballot(20, p))]) is not None  # every voter held it
    if wiped_first:
        d = _acceptor("D", voting=None, config=v3)  # blank, and no voter of v3: new
    v4 = v3.change_to(("A", "B", "C", "D"))
    for acceptor in (a, b, c, d):
        acceptor.install("c", v4)
    assert d.voting and d.key_count() == (0 if wiped_first else 1)
    proposed = _read(Ballot(30, p), v4, a, b, d)  # two of A..C and three of A..D
    if wiped_first:
        assert proposed is not None and not proposed.filled  # the tombstone, as it was
    else:
        assert proposed == held  # "x" is back, at the epoch its tombstone had ended


def _run(round_: Proposer, *voters: Acceptor) -> Decision:
    """Drive ``round_`` to its decision with ``voters`` answering every message."""
    pending = list(round_.start().send)
    by_name = {a.identity[0]: a for a in voters}
    while pending:
        name, msg = pending.pop(0)
        acceptor = by_name.get(name)
        if acceptor is None:
            continue
        if type(msg) is Prepare:
            reply, _ = acceptor.on_prepare(msg)
            step = round_.on_promise(name, reply) if type(reply) is Promise else round_.on_nack(name, reply)
        else:
            reply, _ = acceptor.on_accept(msg, 0.0)  # type: ignore[arg-type]
            step = round_.on_accepted(name, reply) if type(reply) is Accepted else round_.on_nack(name, reply)
        if step.decision is not None:
            return step.decision
        pending.extend(step.send)
    raise AssertionError("no decision")


def test_a_one_round_trip_promise_holds_only_in_the_configuration_that_made_it() -> None:
    """A 1-RTT round skips phase 1 on a promise a quorum made in an earlier round. Made by
    the old voters, it means nothing to new ones: after the old voters emptied the key and
    collected its tombstone, the stale accept finds new voters that promised nothing, and
    a round of the joint configuration reads its value back as the latest."""
    v1 = VoterConfig.initial(("A", "B", "C"))
    a, b, c = (_acceptor(n, config=v1) for n in "ABC")
    d = _acceptor("D", voting=None, config=v1)  # a spare: it knows the cluster, votes on nothing
    proposer = ProposerState(("P", 1))
    first = proposer.new_round(B, K, put_if_empty("x"), v1)
    decision = _run(first, a, b, c)
    proposer.on_decision(first, decision)
    assert decision.ok and decision.next_ballot is not None and proposer.cached(B, K) is not None
    # another node empties the key; the voters collect its tombstone
    emptied = decision.register.release()  # type: ignore[union-attr]
    _round(Ballot(2**40, ("q", 1)), emptied, v1, a, b, c)
    for acceptor in (a, b, c):
        assert acceptor.collect(B, [(K, Ballot(2**40, ("q", 1)))]) is not None
    joint = v1.change_to(("A", "B", "C", "D"))
    for acceptor in (a, b, c, d):
        acceptor.install("c", joint)
    stale = Accept(B, K, decision.next_ballot, decision.register, None, joint.version)  # type: ignore[arg-type]
    assert type(d.on_accept(stale, 0.0)[0]) is Accepted  # D promised nothing: it takes it
    proposed = _read(Ballot(2**41, ("r", 1)), joint, a, b, d)
    assert proposed is not None and proposed.value == "x"  # the emptied value is back
    # so a round of the joint configuration does not use the old voters' promise
    second = proposer.new_round(B, K, identity, joint)
    assert second.cached is None and all(type(m) is Prepare for _, m in second.start().send)
