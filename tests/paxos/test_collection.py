"""The collection coordinator (pure): drop only what every voter holds at one ballot."""

from __future__ import annotations

from paxtor.paxos.ballot import Ballot
from paxtor.paxos.collection import Collection

V = ("n1", "n2", "n3")
B1, B2 = Ballot(5, ("n1", 1)), Ballot(6, ("n2", 1))


def test_nothing_is_forgotten_until_every_voter_reported() -> None:
    c = Collection("b", ["a"], V)
    c.on_report("n1", [("a", B1)])
    c.on_report("n2", [("a", B1)])
    assert not c.complete and c.forget() == () and c.lagging() == ()
    c.on_report("n3", [("a", B1)])
    assert c.complete and c.forget() == (("a", B1),)


def test_keys_held_by_some_voters_or_at_different_ballots_lag() -> None:
    c = Collection("b", ["same", "partial", "split", "nowhere"], V)
    c.on_report("n1", [("same", B1), ("partial", B1), ("split", B1)])
    c.on_report("n2", [("same", B1), ("partial", B1), ("split", B2)])
    c.on_report("n3", [("same", B1), ("split", B1)])
    assert c.forget() == (("same", B1),)
    assert c.lagging() == ("partial", "split")
    assert c.holders()["partial"] == {"n1", "n2"} and c.holders()["nowhere"] == set()


def test_reports_from_non_voters_do_not_count() -> None:
    c = Collection("b", ["a"], V)
    for voter in ("n1", "n2", "x9"):
        c.on_report(voter, [("a", B1)])
    assert not c.complete
