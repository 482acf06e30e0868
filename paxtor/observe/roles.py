"""A node's role in the cluster, decided in ONE place so new roles extend it here.

``voter``: votes in rounds (its acceptor counts towards quorums);
``learner``: a voter that is catching up before it may vote again, when the
PaxosKV node says so (``PaxosNode.role``); ``client``: proposes, holds locks,
never votes.
"""

from __future__ import annotations

from typing import Any

from paxtor.paxos.voter_config import majority

__all__ = ["ROLES", "node_role", "configured_role", "voter_set"]

ROLES = ("voter", "learner", "client")


def node_role(paxos: Any) -> str:
    """The role of a node, from its running `PaxosNode` (``node.paxos``): its own ``role``
    when it has one, else voter or client by its configuration."""
    role = getattr(paxos, "role", None)
    if isinstance(role, str) and role:
        return role
    return "voter" if paxos.voter else "client"


def configured_role(name: str, voters: tuple[str, ...]) -> str:
    """The role a node that did not answer has by the configuration alone."""
    return "voter" if name in voters else "client"


def voter_set(paxos: Any) -> tuple[tuple[str, ...], int, int | None]:
    """The voters a node knows, the fewest of them that make a quorum, and the version of
    its configuration (None before the node knows one: then the voters a new cluster is
    founded with)."""
    config = paxos.voter_config
    if config is None:
        voters = tuple(paxos.initial_voters)
        return voters, majority(voters), None
    return tuple(config.voters), config.quorum_size(), config.version
