"""Placement: which nodes may host a lock home or a singleton, and which one a key goes to.

Every node tells its peers, in the mesh's announcement (`paxtor.actors.mesh`),
whether it votes and whether it hosts singletons (a web worker says
``singletons=False``). Lock homes are voters while any is connected (a
voter's round needs one remote vote fewer). Hidden nodes (a status tool)
host nothing and are no lock home. A peer whose announcement has not
arrived yet counts as hosting nothing until it does: placement may only
name nodes known to accept.

Among the candidates, a key goes to the first of its rendezvous (highest
random weight) order: every node that sees the same set of nodes picks the
same one, without any coordination; when a node joins or leaves, only the
keys that hash best to that node move (Thaler and Ravishankar, 1998). The
weights come from BLAKE2b, never from Python's salted ``hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from paxtor.actors.distribution import DistributedNode, NodeInfo, distributed_node
from paxtor.actors.node import current_node
from paxtor.actors.node_slot import NodeSlot

__all__ = [
    "PAXTOR",
    "SINGLETONS",
    "VOTER",
    "role_attrs",
    "announces_voter",
    "hosts_singletons",
    "singleton_hosts",
    "lock_home_candidates",
    "rendezvous_order",
    "weight",
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
    cached = dist.local.service(LOCK_HOMES)
    if cached is not None and cached[0] is dist and cached[1] == dist.mesh_version:
        return cached[2]
    found = _lock_homes(dist)
    dist.local.install(LOCK_HOMES, (dist, dist.mesh_version, found))
    return found


#: The node's lock home candidates, and the distribution and mesh version they were computed for.
LOCK_HOMES: NodeSlot[tuple[DistributedNode, int, list[str]]] = NodeSlot("lock_homes")


def _lock_homes(dist: DistributedNode) -> list[str]:
    infos = [(name, dist.peer_info(name)) for name in dist.nodes()]
    if not dist.hidden:
        infos.append((dist.name, dist.info))
    paxtor_nodes = [(name, info) for name, info in infos if _is_paxtor(info)]
    voters = [name for name, info in paxtor_nodes if info.attrs.get(VOTER) is True]  # type: ignore[union-attr]
    return voters or [name for name, _ in paxtor_nodes] or [dist.name]


# -- rendezvous hashing ------------------------------------------------------------------------


def weight(key: bytes, node: str) -> int:
    """The pseudo-random weight of `node` for `key` (the same on every machine)."""
    digest = hashlib.blake2b(key, digest_size=8, key=node.encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: bytes, nodes: Iterable[str]) -> list[str]:
    """`nodes` from the best home of `key` to the worst (ties broken by name)."""
    return sorted(set(nodes), key=lambda node: (-weight(key, node), node))
