"""Which nodes vote, and what counts as a quorum of them (pure).

A `VoterConfig` is one configuration of the cluster's voters, numbered by
``version``. It is *stable* (one voter set: a quorum is a majority of it) or
*joint* (a change from ``previous`` to ``voters`` under way: a quorum is a
majority of each). Every round, lease and release counts its answers with
`VoterConfig.is_quorum`, so during a change any quorum intersects every
quorum of the configuration before and of the one after; see
``docs/protocol.md`` (Voter changes) for how a change goes from one stable
configuration to the next without two disjoint quorums ever deciding.

Versions only grow, and a version names exactly one configuration in a
cluster (each is chosen by consensus), so nodes can tell each other "I am on
version 7" and fetch what they miss.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from paxtor.actors.wire import wire_type

__all__ = ["VoterConfig", "majority", "check_voter_names"]


def majority(voters: Collection[str]) -> int:
    """The quorum size of one voter set."""
    return len(voters) // 2 + 1


def check_voter_names(voters: Iterable[str]) -> tuple[str, ...]:
    """The voter names as a tuple; ValueError unless they are distinct non-empty strings."""
    names = tuple(voters)
    if not names or not all(isinstance(v, str) and v for v in names):
        raise ValueError(f"voters must be a non-empty list of node names, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate voters: {names!r}")
    return names


@wire_type(name="paxos.VoterConfig")
@dataclass(frozen=True, slots=True)
class VoterConfig:
    """One configuration of the voters (see the module docstring)."""

    version: int
    voters: tuple[str, ...]
    previous: tuple[str, ...] | None = None  # the voters being left, during a change

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version < 1:
            raise ValueError(f"config version must be an int >= 1, got {self.version!r}")
        object.__setattr__(self, "voters", check_voter_names(self.voters))
        if self.previous is not None:
            object.__setattr__(self, "previous", check_voter_names(self.previous))

    @classmethod
    def initial(cls, voters: Iterable[str]) -> VoterConfig:
        """Version 1: the voters a cluster is founded with."""
        return cls(1, tuple(voters))

    @property
    def joint(self) -> bool:
        """True while a change is under way (quorums need a majority of both sets)."""
        return self.previous is not None

    @property
    def members(self) -> tuple[str, ...]:
        """Every node that votes in this configuration: the voters, then those being left."""
        if self.previous is None:
            return self.voters
        return self.voters + tuple(v for v in self.previous if v not in self.voters)

    def is_member(self, name: str) -> bool:
        return name in self.voters or (self.previous is not None and name in self.previous)

    def is_quorum(self, names: Collection[str]) -> bool:
        """Whether ``names`` include a quorum: a majority of the voters (and of ``previous``)."""
        if sum(1 for v in self.voters if v in names) < majority(self.voters):
            return False
        previous = self.previous
        return previous is None or sum(1 for v in previous if v in names) >= majority(previous)

    def quorum_size(self) -> int:
        """The fewest members that can make a quorum (thrifty phases ask this many first)."""
        if self.previous is None:
            return majority(self.voters)
        common = [v for v in self.voters if v in self.previous]
        need_new, need_old = majority(self.voters), majority(self.previous)
        shared = min(len(common), need_new, need_old)
        return need_new + need_old - shared

    def catch_up_sources(self, me: str, able: Iterable[str]) -> tuple[str, ...] | None:
        """The members a learner ``me`` may copy from, out of those that can answer
        (``able``), or None if they are too few: they must meet every quorum that does not
        count ``me`` (every value chosen without it is then among them), and be a quorum
        (the new configuration version is chosen by a round of theirs)."""
        if self.previous is not None or not self.is_member(me):
            return None
        sources = tuple(sorted(v for v in set(able) if v != me and self.is_member(v)))
        outside = [v for v in self.members if v not in sources]
        if self.is_quorum(outside) or not self.is_quorum(sources):
            return None
        return sources

    def change_to(self, voters: Iterable[str]) -> VoterConfig:
        """The joint configuration that starts a change from this stable one to ``voters``."""
        if self.previous is not None:
            raise ValueError(f"a change is already under way (version {self.version})")
        target = check_voter_names(voters)
        if set(target) == set(self.voters):
            raise ValueError(f"the voters are already {', '.join(self.voters)}")
        return VoterConfig(self.version + 1, target, self.voters)

    def finished(self) -> VoterConfig:
        """The stable configuration that ends this joint one."""
        if self.previous is None:
            raise ValueError(f"version {self.version} is not a change under way")
        return VoterConfig(self.version + 1, self.voters)

    def describe(self) -> str:
        """``"v3 node1,node2,node3"`` or ``"v4 node1,node2,node4 (from node1,node2,node3)"``."""
        text = f"v{self.version} {','.join(self.voters)}"
        if self.previous is not None:
            text += f" (from {','.join(self.previous)})"
        return text
