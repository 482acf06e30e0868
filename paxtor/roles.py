"""What a Paxtor node announces of its role, and which nodes may do what.

Every node tells its peers, in the mesh's announcement (`paxtor.actors.mesh`),
whether it votes and whether it hosts singletons (a web worker says
``singletons=False``). Lock homes are voters while any is connected (a
voter's round needs one remote vote fewer). Hidden nodes (a status tool)
host nothing and are no lock home. A peer whose announcement has not arrived yet counts as hosting
nothing until it does: placement may only name nodes known to accept.
"""

from __future__ import annotations

import weakref
from typing import Any

from paxtor.actors.distribution import DistributedNode, NodeInfo, distributed_node
from paxtor.actors.node import current_node

__all__ = [
    "PAXTOR",
    "SINGLETONS",
    "VOTER",
    "role_attrs",
    "announces_voter",
    "hosts_singletons",
    "singleton_hosts",
    "lock_home_candidates",
]

#: Attribute keys of a Paxtor node's announcement.
PAXTOR, VOTER, SINGLETONS = "paxtor", "voter", "singletons"


def role_attrs(*, voter: bool, singletons: bool) -> dict[str, Any]:
    """The attributes a Paxtor node announces."""
    return {PAXTOR: 1, VOTER: voter, SINGLETONS: singletons}


def announces_voter(info: NodeInfo) -> bool:
    """Whether the node that announced `info` runs an acceptor (a hidden node dials these)."""
    return not info.hidden and info.attrs.get(VOTER) is True


def hosts_singletons(info: NodeInfo | None) -> bool:
    """Whether the node that announced `info` accepts singletons."""
    return info is not None and not info.hidden and info.attrs.get(SINGLETONS) is True


def _is_paxtor(info: NodeInfo | None) -> bool:
    return info is not None and not info.hidden and PAXTOR in info.attrs


def singleton_hosts(dist: DistributedNode | None = None) -> list[str]:
    """The current node (if it accepts singletons) and every connected peer that does."""
    dist = dist or distributed_node()
    if dist is None:
        return [current_node().name]
    found = [dist.name] if hosts_singletons(dist.info) else []
    found += [name for name in dist.nodes() if hosts_singletons(dist.peer_info(name))]
    return found


def lock_home_candidates(dist: DistributedNode | None = None) -> list[str]:
    """The nodes that may be a lock's home: the connected voters (this one
    included), whose rounds need one remote vote fewer than a client's; else
    every connected visible Paxtor node; else this node alone. (Asked for
    every round of a contended lock: kept until the mesh changes.)"""
    dist = dist or distributed_node()
    if dist is None:
        return [current_node().name]
    cached = _homes.get(dist)
    if cached is not None and cached[0] == dist.mesh_version:
        return cached[1]
    found = _lock_homes(dist)
    _homes[dist] = (dist.mesh_version, found)
    return found


_homes: weakref.WeakKeyDictionary[DistributedNode, tuple[int, list[str]]] = weakref.WeakKeyDictionary()


def _lock_homes(dist: DistributedNode) -> list[str]:
    infos = [(name, dist.peer_info(name)) for name in dist.nodes()]
    if not dist.hidden:
        infos.append((dist.name, dist.info))
    paxtor_nodes = [(name, info) for name, info in infos if _is_paxtor(info)]
    voters = [name for name, info in paxtor_nodes if info.attrs.get(VOTER) is True]  # type: ignore[union-attr]
    return voters or [name for name, _ in paxtor_nodes] or [dist.name]
