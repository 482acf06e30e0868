"""Collecting tombstones, the coordinator's side: pure, fed the voters' reports.

An emptied key leaves a tombstone (its epoch must never go back, so a later
owner still gets a larger fencing token). Without collection every key ever
used stays in every voter's memory and log. A tombstone may be dropped only
once EVERY voter holds it durably at one ballot (see
`paxtor.paxos.acceptor`): then, for any quorum, "absent" and "that tombstone"
are the same answer.

One collection of a batch of keys:

1. the coordinator asks every voter which of the keys it holds as durable
   tombstones, and at which ballot (``Acceptor.tombstone``);
2. once every voter has answered, `Collection.forget` is what they all hold
   at one ballot: the coordinator tells every voter to drop exactly those
   (``Acceptor.collect``; a voter whose key changed since keeps it);
3. `Collection.lagging` is what some voters hold and others do not (rounds
   are thrifty: an accept goes to a quorum, not to every voter). One more
   round on such a key that asks every voter (`ProposeRequest.spread`)
   brings them level, and a later collection finds it everywhere.

A voter that does not answer stops nothing but this batch: nothing is
dropped until all have answered.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from paxtor.paxos.ballot import Ballot

__all__ = ["Collection", "max_request_time"]

Held = Iterable[tuple[Hashable, Ballot]]


class Collection:
    """One batch of candidate keys of one bucket, and the voters' reports on it."""

    def __init__(self, bucket: str, keys: Iterable[Hashable], voters: Sequence[str]) -> None:
        self.bucket = bucket
        self.keys = tuple(keys)
        self.voters = tuple(voters)
        self._reports: dict[str, dict[Hashable, Ballot]] = {}

    def on_report(self, voter: str, held: Held) -> None:
        """``voter`` holds these ``(key, ballot)`` tombstones durably (other keys: not)."""
        if voter in self.voters:
            self._reports[voter] = dict(held)

    @property
    def complete(self) -> bool:
        """Every voter has reported."""
        return len(self._reports) == len(self.voters)

    def forget(self) -> tuple[tuple[Hashable, Ballot], ...]:
        """The ``(key, ballot)`` tombstones every voter holds at one ballot (none until complete)."""
        if not self.complete:
            return ()
        reports = list(self._reports.values())
        first, rest = reports[0], reports[1:]
        return tuple(
            (key, ballot)
            for key in self.keys
            if (ballot := first.get(key)) is not None and all(r.get(key) == ballot for r in rest)
        )

    def holders(self) -> dict[Hashable, set[str]]:
        """Per key, the voters that reported holding it as a tombstone (at any ballot)."""
        found: dict[Hashable, set[str]] = {key: set() for key in self.keys}
        for voter, report in self._reports.items():
            for key in report:
                if key in found:
                    found[key].add(voter)
        return found

    def lagging(self) -> tuple[Hashable, ...]:
        """Keys some voter holds as a tombstone that not every voter holds at that ballot."""
        if not self.complete:
            return ()
        forgotten = {key for key, _ in self.forget()}
        return tuple(
            key for key in self.keys
            if key not in forgotten and any(key in r for r in self._reports.values())
        )  # fmt: skip


def max_request_time(tombstone_ttl: float, max_drift: float) -> float:
    """How long a request may retry so that a collector can never drop its op mark first.

    A retry finds its own earlier attempt by the op mark in the register; that
    attempt came before the key's tombstone, which is dropped after
    ``tombstone_ttl`` on the voters' clocks. Measured on the proposer's clock,
    half of it with both clocks at the drift bound keeps a wide margin.
    """
    return tombstone_ttl / (2 * (1 + max_drift) ** 2)
