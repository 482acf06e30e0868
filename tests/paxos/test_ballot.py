"""Ballots: total order, uniqueness per proposer incarnation, fast-forward."""

from __future__ import annotations

import pytest

from paxtor.actors.wire import decode, encode
from paxtor.paxos.ballot import Ballot, next_after

N1 = ("n1", 1)
N1_RESTARTED = ("n1", 2)
N2 = ("n2", 1)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (Ballot(1, N1), Ballot(2, N1)),  # counter first
        (Ballot(1, N2), Ballot(2, N1)),  # ... whatever the node
        (Ballot(3, N1), Ballot(3, N2)),  # then node name
        (Ballot(3, N1), Ballot(3, N1_RESTARTED)),  # then incarnation
        (Ballot.ZERO, Ballot(0, N1)),  # ZERO is below every issued ballot
        (Ballot.ZERO, Ballot(1, ("", 0))),
    ],
)
def test_order(low: Ballot, high: Ballot) -> None:
    assert low < high and high > low and low != high
    assert sorted([high, low]) == [low, high]


def test_restarted_proposer_never_reuses_a_ballot() -> None:
    # the same counter from a new incarnation is a different ballot
    before, after = Ballot(7, N1), Ballot(7, N1_RESTARTED)
    assert before != after
    assert len({before, after}) == 2


@pytest.mark.parametrize(
    ("seen", "node", "expected"),
    [
        (Ballot.ZERO, N1, Ballot(1, N1)),
        (Ballot(5, N2), N1, Ballot(6, N1)),
        (Ballot(5, N1), N2, Ballot(6, N2)),
    ],
)
def test_next_after_fast_forwards_past_seen(seen: Ballot, node: tuple[str, int], expected: Ballot) -> None:
    got = next_after(node, seen)
    assert got == expected
    assert got > seen


def test_successor_keeps_the_proposer() -> None:
    b = Ballot(4, N2)
    assert b.successor() == Ballot(5, N2)
    assert b.successor() > b


@pytest.mark.parametrize(
    ("counter", "node"),
    [
        (-1, N1),
        (1.5, N1),
        (True, N1),
        (1, "n1"),
        (1, ("n1",)),
        (1, ("n1", "1")),
        (1, (1, 1)),
    ],
)
def test_bad_ballots_are_refused(counter: object, node: object) -> None:
    with pytest.raises(ValueError):
        Ballot(counter, node)  # type: ignore[arg-type]


def test_ballot_travels_on_the_wire() -> None:
    b = Ballot(12, ("node3", 99))
    assert decode(encode(b)) == b
    assert decode(encode(Ballot.ZERO)) == Ballot.ZERO
