"""Voter configurations (pure): quorums of stable and joint configurations, the catch-up
rule for a learner, and why a learner must end the old configuration's rounds (a new
version installed on the others) before it votes: reading their state is not enough."""

from __future__ import annotations

import pytest

from paxtor.paxos.acceptor import NACK_CONFIG, NACK_LEARNER, Accept, Accepted, Acceptor, Nack, Prepare, Promise
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import SilenceTracker
from paxtor.paxos.register import Register
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
