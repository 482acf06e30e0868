"""Paxos ballot numbers: totally ordered, unique per proposer incarnation.

A ballot is ``(counter, node)`` compared lexicographically. ``node`` is the
proposer's identity for ONE incarnation, ``(node_name, incarnation)``: a
proposer that restarts gets a new incarnation, so it can never reuse a ballot
of its previous life even though it lost its counter (two rounds with one
ballot and two values would break Paxos). ``Ballot.ZERO`` is below every
ballot a proposer can issue; acceptors start with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paxtor.actors.wire import wire_type

__all__ = ["Ballot", "NodeId", "next_after"]

NodeId = tuple[str, int]
"""A node incarnation: ``(node_name, incarnation)``."""


@wire_type(name="paxos.Ballot")
@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A Paxos ballot: ordered by counter, then by proposer identity."""

    counter: int
    node: NodeId

    ZERO: ClassVar[Ballot]

    def __post_init__(self) -> None:
        if type(self.counter) is not int or self.counter < 0:
            raise ValueError(f"ballot counter must be an int >= 0, got {self.counter!r}")
        node = self.node
        if not (
            isinstance(node, tuple)
            and len(node) == 2
            and isinstance(node[0], str)
            and type(node[1]) is int
        ):
            raise ValueError(f"ballot node must be (node_name, incarnation), got {node!r}")

    @staticmethod
    def from_parts(counter: int, name: str, incarnation: int) -> Ballot:
        """The ballot of a flat form (``counter, node_name, incarnation``), ZERO shared."""
        if counter == 0 and name == "" and incarnation == 0:
            return Ballot.ZERO
        return Ballot(counter, (name, incarnation))

    def successor(self) -> Ballot:
        """The next ballot of the same proposer (what a 1-RTT accept asks to be promised)."""
        return Ballot(self.counter + 1, self.node)

    def __repr__(self) -> str:
        return f"Ballot({self.counter}, {self.node[0]}.{self.node[1]})"


Ballot.ZERO = Ballot(0, ("", 0))


def next_after(node: NodeId, seen: Ballot) -> Ballot:
    """The smallest ballot of proposer ``node`` above ``seen`` (fast-forward past a conflict)."""
    return Ballot(seen.counter + 1, node)
