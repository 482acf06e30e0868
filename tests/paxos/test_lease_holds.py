"""The lease keeper's policy: holds granted only within the round's lease term, every holder
killed when the lease is lost, a holder that lost its tenure unawares killed too."""

from __future__ import annotations

from paxtor.actors.ids import Pid
from paxtor.paxos.lease_holds import KillHolder, LeaseHolds, Unwatch, Watch

A, B = Pid("n1", 1, 1), Pid("n1", 1, 2)
K = ("b", "k")


def test_a_hold_needs_the_rounds_term_to_be_current_and_the_pid_alive():
    holds = LeaseHolds()
    assert holds.hold(A, K, 3, term=1, term_now=2, alive=True) == (False, [])
    assert holds.hold(A, K, 3, term=None, term_now=None, alive=True) == (False, [])
    assert holds.hold(A, K, 3, term=1, term_now=1, alive=False) == (False, [])
    assert holds.hold(A, K, 3, term=1, term_now=1, alive=True) == (True, [Watch(A)])
    assert holds.holds_tenure(A, K, 3) and holds.held_by == {K: A}
    assert holds.hold_or_kill(B, K, 4, term=1, term_now=2, alive=True) == [KillHolder(B, "outside_lease", K, 4)]
    assert holds.holds_tenure(A, K, 3)  # a refused grant takes nothing from the holder


def test_a_lost_lease_kills_every_holder_and_a_tenure_that_moved_on_kills_its_holder():
    holds = LeaseHolds()
    holds.hold(A, K, 3, 1, 1, True)
    holds.hold(B, ("b", "j"), 5, 1, 1, True)
    assert holds.tenure_now(K, 3, A) == []  # still its tenure
    assert holds.tenure_now(K, 4, B) == [Unwatch(A), KillHolder(A, "tenure_ended", K, 3)]
    assert K not in holds.held_by
    assert holds.lost() == [KillHolder(B, "lease_lost"), Unwatch(B)]
    assert holds.holds == {} and holds.held_by == {}


def test_an_owner_that_unholds_or_exits_holds_nothing():
    holds = LeaseHolds()
    holds.hold(A, K, 3, 1, 1, True)
    assert holds.unhold(A, K, 2) == []  # another tenure: kept
    assert holds.unhold(A, K, 3) == [Unwatch(A)]
    holds.hold(A, K, 4, 1, 1, True)
    assert holds.forget(A) == [Unwatch(A)] and holds.held_by == {}
