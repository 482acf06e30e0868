"""Lease arithmetic: the owner's LeaseClock, the acceptor's SilenceTracker, the bound."""

from __future__ import annotations

import pytest

from paxtor.actors.ids import Pid
from paxtor.paxos.acceptor import Accept, Acceptor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import (
    HeartbeatAck,
    LeaseClock,
    LeaseGained,
    LeaseLost,
    SilenceTracker,
    silence_threshold,
)
from paxtor.paxos.register import Binding, LeaseFence, Register
from paxtor.paxos.voter_config import VoterConfig
from paxtor.sim.mutations import UnfencedLeaseClock

VOTERS = ("a", "b", "c")
L = 1.0


def ack(voter: str, seq: int, fence: int = 0, incarnation: int = 1) -> HeartbeatAck:
    return HeartbeatAck(seq, (voter, incarnation), fence)


def clock_with_lease(t_sent: float = 10.0, cls: type[LeaseClock] = LeaseClock) -> LeaseClock:
    lc = cls(VoterConfig.initial(VOTERS), L)
    hb = lc.send_heartbeat(t_sent)
    lc.on_ack("a", ack("a", hb.seq), t_sent + 0.01)
    lc.on_ack("b", ack("b", hb.seq), t_sent + 0.02)
    return lc


@pytest.mark.parametrize(
    ("lease", "drift", "margin", "expected"),
    [(1.0, 0.0, 0.0, 1.0), (1.0, 1.0, 0.0, 4.0), (2.0, 0.5, 0.25, 4.75), (10.0, 0.1, 0.0, 12.1)],
)
def test_silence_threshold(lease: float, drift: float, margin: float, expected: float) -> None:
    assert silence_threshold(lease, drift, margin) == pytest.approx(expected)


@pytest.mark.parametrize(("lease", "drift", "margin"), [(0, 0, 0), (1, -0.1, 0), (1, 0, -1)])
def test_silence_threshold_refuses_nonsense(lease: float, drift: float, margin: float) -> None:
    with pytest.raises(ValueError):
        silence_threshold(lease, drift, margin)


@pytest.mark.parametrize("drift", [0.0, 0.01, 0.1, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("margin", [0.001, 0.05])
def test_no_release_while_the_owner_believes_its_lease(drift: float, margin: float) -> None:
    """The worst case of the proof: the owner's clock at 1/(1+d), the acceptor's at 1+d.

    The owner's heartbeat leaves at real time 0 and reaches the acceptor at
    once (the latest it can hear the owner and still count it). The owner
    believes its lease for L local seconds; the acceptor releases after W
    local seconds of silence. In real time the release must come later.
    """
    owner_rate, acceptor_rate = 1.0 / (1.0 + drift), 1.0 + drift
    lease_ends_real = L / owner_rate
    w = silence_threshold(L, drift, margin)
    release_real = w / acceptor_rate
    assert release_real > lease_ends_real
    # (1 + d) alone, as a relative-rate bound would suggest, is not enough here
    if drift > 0:
        naive = (L * (1 + drift)) / acceptor_rate
        assert naive < lease_ends_real


def test_lease_from_a_quorum_of_acks() -> None:
    lc = LeaseClock(VoterConfig.initial(VOTERS), L)
    assert not lc.valid(0.0) and lc.expires_at is None and lc.term_at(0.0) is None
    hb = lc.send_heartbeat(10.0)
    assert lc.on_ack("a", ack("a", hb.seq), 10.1) == []  # one is not a quorum
    assert lc.on_ack("a", ack("a", hb.seq), 10.2) == []  # the same voter twice neither
    assert lc.on_ack("x", ack("x", hb.seq), 10.2) == []  # nor a stranger
    events = lc.on_ack("b", ack("b", hb.seq), 10.3)
    assert events == [LeaseGained(1, 11.0)]  # from t_sent, not from the ack
    assert lc.valid(10.99) and not lc.valid(11.0)
    assert lc.term_at(10.5) == 1


def test_lease_lost_at_expiry_and_a_new_term_after() -> None:
    lc = clock_with_lease(10.0)
    assert lc.poll(10.9) == []
    assert lc.poll(11.0) == [LeaseLost(1, "expired")]
    assert lc.poll(11.5) == []  # reported once
    hb = lc.send_heartbeat(12.0)
    lc.on_ack("a", ack("a", hb.seq), 12.1)
    assert lc.on_ack("c", ack("c", hb.seq), 12.1) == [LeaseGained(2, 13.0)]
    assert lc.term_at(12.5) == 2


def test_renewal_extends_the_same_term() -> None:
    lc = clock_with_lease(10.0)
    hb = lc.send_heartbeat(10.5)
    lc.on_ack("b", ack("b", hb.seq), 10.6)
    assert lc.on_ack("c", ack("c", hb.seq), 10.7) == []
    assert lc.expires_at == 11.5 and lc.term_at(11.2) == 1


def test_an_unnoticed_lapse_still_starts_a_new_term() -> None:
    """No poll between expiry and renewal: the term must change anyway."""
    lc = clock_with_lease(10.0)
    hb = lc.send_heartbeat(11.2)
    events = lc.on_ack("a", ack("a", hb.seq), 11.3)
    events += lc.on_ack("b", ack("b", hb.seq), 11.4)
    assert events == [LeaseLost(1, "expired"), LeaseGained(2, 12.2)]


def test_acks_of_an_already_expired_round_give_nothing() -> None:
    lc = LeaseClock(VoterConfig.initial(VOTERS), L)
    hb = lc.send_heartbeat(10.0)
    lc.on_ack("a", ack("a", hb.seq), 11.5)
    assert lc.on_ack("b", ack("b", hb.seq), 11.6) == []
    assert not lc.valid(11.6)


@pytest.mark.parametrize(
    ("first_fence", "second_fence", "lost"),
    [
        (0, 0, False),
        (0, 1, True),  # the voter voted a noconnection release against us since
        (2, 2, False),
        (2, 1, False),  # an older ack overtaken by a newer one: it predates the vote
    ],
)
def test_fence_in_acks(first_fence: int, second_fence: int, lost: bool) -> None:
    lc = LeaseClock(VoterConfig.initial(VOTERS), L)
    hb = lc.send_heartbeat(0.0)
    lc.on_ack("a", ack("a", hb.seq, first_fence), 0.1)  # may itself be a fence: not counted
    lc.on_ack("b", ack("b", hb.seq), 0.1)
    hb = lc.send_heartbeat(0.3)
    lc.on_ack("a", ack("a", hb.seq, first_fence), 0.35)
    lc.on_ack("b", ack("b", hb.seq), 0.35)
    assert lc.valid(0.4)
    hb = lc.send_heartbeat(0.5)
    events = lc.on_ack("a", ack("a", hb.seq, second_fence), 0.6)
    assert (LeaseLost(1, "fenced") in events) == lost
    assert lc.valid(0.7) != lost


def test_a_fenced_ack_voids_pending_rounds_and_later_rounds_count() -> None:
    lc = clock_with_lease(0.0)
    hb_old = lc.send_heartbeat(0.5)
    assert lc.on_ack("a", ack("a", hb_old.seq, fence=1), 0.6) == [LeaseLost(1, "fenced")]
    assert lc.on_ack("b", ack("b", hb_old.seq), 0.6) == []
    assert lc.on_ack("c", ack("c", hb_old.seq), 0.6) == []  # round voided: sent before the news
    hb = lc.send_heartbeat(0.7)
    lc.on_ack("a", ack("a", hb.seq, fence=1), 0.8)
    assert lc.on_ack("b", ack("b", hb.seq), 0.8) == [LeaseGained(2, 1.7)]


def test_voter_incarnations() -> None:
    lc = clock_with_lease(0.0)
    hb = lc.send_heartbeat(0.5)
    # a restarted voter's generations start again at 0: not a fence
    assert lc.on_ack("a", ack("a", hb.seq, 0, incarnation=2), 0.6) == []
    assert lc.valid(0.9)
    # ... but one that voted a release already is
    hb = lc.send_heartbeat(0.7)
    assert lc.on_ack("b", ack("b", hb.seq, 1, incarnation=2), 0.8) == [LeaseLost(1, "fenced")]
    # an ack from a voter incarnation that has since restarted is ignored
    hb = lc.send_heartbeat(0.9)
    assert lc.on_ack("a", ack("a", hb.seq, 5, incarnation=1), 1.0) == []
    lc.on_ack("c", ack("c", hb.seq), 1.0)
    assert not lc.valid(1.0)


def test_a_lease_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LeaseClock(VoterConfig.initial(VOTERS), 0.0)


def test_silence_tracker() -> None:
    st = SilenceTracker(threshold=4.0, started_at=100.0)
    assert st.last_heard("n9") == 100.0  # never heard: as if heard at start
    assert not st.may_release_noconnection("n9", 1, 103.9)
    assert st.may_release_noconnection("n9", 1, 104.0)
    st.heard("n9", 3, 110.0)
    st.heard("n9", 2, 105.0)  # a late message: neither clock nor incarnation go back
    assert (st.last_heard("n9"), st.newest_incarnation("n9")) == (110.0, 3)
    assert not st.may_release_noconnection("n9", 3, 113.0)
    assert st.may_release_noconnection("n9", 2, 110.0)  # incarnation 2 is dead
    assert st.may_release_noconnection("n9", None, 114.0)
    assert not st.superseded("n9", None)
    assert st.fence_generation("n9") == 0
    st.record_release("n9")
    st.record_release("n9")
    assert st.fence_generation("n9") == 2


def test_case_two_of_the_proof_a_heartbeat_in_flight_during_the_vote() -> None:
    """An acceptor votes a noconnection release, THEN gets the owner's delayed heartbeat.

    With the fence the owner loses its lease; without it (the mutation the
    simulator uses as a negative control) the late ack extends a lease the
    vote has already voided.
    """
    threshold = silence_threshold(L, 0.0, 0.1)
    owner = Pid("o", 1, 1)
    fenced = Register(epoch=1, lease_fences=(LeaseFence(1, Binding(pid=owner)),))
    for clock_class, keeps_lease in ((LeaseClock, False), (UnfencedLeaseClock, True)):
        acceptors = {
            v: Acceptor((v, 1), SilenceTracker(threshold, started_at=0.0), voting=True) for v in VOTERS
        }
        lc = clock_with_lease(0.0, clock_class)  # valid until 1.0 on the owner's clock
        # a and b heard nothing from the owner since 0: they vote the release at 1.2
        for v in ("a", "b"):
            reply, _ = acceptors[v].on_accept(Accept("b", "k", Ballot(1, ("x", 1)), fenced), 1.2)
            assert reply.__class__.__name__ == "Accepted"
        # a heartbeat the owner sent at 0.95 (its clock, lease still valid) was delayed:
        # it reaches a and b at 1.25 (their clocks), after their votes
        hb = lc.send_heartbeat(0.95)
        for v in ("a", "b"):
            lc.on_ack(v, acceptors[v].on_heartbeat("o", 1, hb, 1.25), 0.99)
        assert lc.valid(1.5) == keeps_lease
