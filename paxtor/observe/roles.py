"""A node's role in the cluster, decided in ONE place so new roles extend it here.

``voter``: votes in rounds (its acceptor counts towards quorums);
``learner``: a voter that is catching up before it may vote again, when the
PaxosKV node says so (``PaxosNode.role``); ``client``: proposes, holds locks,
never votes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ROLES", "node_role", "configured_role"]

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
