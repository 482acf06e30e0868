"""Counters of one node's PaxosKV activity, read by whoever reports on it (metrics, status).

Plain integers bumped in place by their one writer, the proposer process, and
read at scrape time: no lock (one hub), no allocation per event. They start at
zero with the node and only grow, as Prometheus counters do.
"""

from __future__ import annotations

__all__ = ["ProposerCounters"]


class ProposerCounters:
    """What this node's proposer did since the node started (owner: the proposer process)."""

    __slots__ = ("rounds", "chosen", "conflicts", "nacks", "retries", "no_quorum", "vetoed")

    def __init__(self) -> None:
        #: attempts started (one per round sent to the voters, retries included)
        self.rounds = 0
        #: requests whose change (or an adopted earlier attempt) was chosen
        self.chosen = 0
        #: attempts lost to a competing ballot
        self.conflicts = 0
        #: refusals received from voters (each voter's Nack counts once)
        self.nacks = 0
        #: attempts started again after one that did not decide the request
        self.retries = 0
        #: requests that failed with NoQuorum at their deadline
        self.no_quorum = 0
        #: attempts refused by the lease veto
        self.vetoed = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
