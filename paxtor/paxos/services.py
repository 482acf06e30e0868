"""Starting PaxosKV on a node: the incarnation, the durable state, and the processes.

What `paxtor.node` (the node's owner) calls, in this order::

    meta = open_node_meta(data_dir, durability, name)     # before distribution starts
    dist = start_distributed(name, incarnation=meta.incarnation, cluster=meta.cluster, ...)
    paxos = PaxosNode(PaxosConfig(...), dist.local, cluster=meta.cluster, on_cluster=...)
    paxos.open()                                          # replays the acceptor log
    children = paxos_services(paxos)                      # child specs for the root supervisor
    ...
    dist.stop(); paxos.close()                            # node stop: flush and unlock the log

The processes run under one supervisor (``paxos_sup``, one_for_one: their
shared state lives in `PaxosNode`, so a restarted process carries on):

    paxos_membership  the cluster, its voter configuration, founding, catch-up,
                      quorum_reached / quorum_lost log lines
    paxos_acceptor    (voters only) the acceptor, replies after fsync
    paxos_lease       heartbeats, lease terms, holds, lease_expired kills
    paxos_proposer    rounds
    paxos_bindings    binding watches and release rounds, buckets
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from paxtor.actors import Supervisor
from paxtor.actors.child_spec import ChildSpec
from paxtor.paxos.acceptor_server import AcceptorServer
from paxtor.paxos.bindings import BindingWatcher
from paxtor.paxos.collector import TombstoneCollector
from paxtor.paxos.config import PaxosConfig, numbered_voters
from paxtor.paxos.lease_keeper import LeaseKeeper
from paxtor.paxos.membership import MembershipServer
from paxtor.paxos.node_meta import NodeMeta
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.proposer_server import ProposerServer

log = structlog.get_logger(__name__)

__all__ = [
    "PaxosConfig",
    "PaxosNode",
    "open_node_meta",
    "paxos_services",
    "paxos_supervisor_spec",
    "numbered_voters",
    "SUPERVISOR_NAME",
]

SUPERVISOR_NAME = "paxos_sup"


def open_node_meta(data_dir: str | os.PathLike[str] | None, durability: str, name: str) -> NodeMeta:
    """This run's identity from ``node.meta`` (its incarnation made durable before returning;
    `NodeMetaMismatch` for a directory of another node). With memory durability nothing is
    read or written. Call it once per start, before the node serves."""
    if durability == "memory":
        return NodeMeta(None, None, name)  # the distribution layer draws an incarnation from the clock
    if data_dir is None:
        raise ValueError("durability='fsync' needs a data directory")
    return NodeMeta.open(Path(data_dir), durability, name=name)


def paxos_services(node: PaxosNode) -> list[ChildSpec]:
    """The node's PaxosKV processes, in start order (the acceptor only on voters)."""
    node.open()
    config = node.config
    log.info(
        "paxos_started",
        node=node.name,
        voter=config.voter,
        durability=config.durability,
        lease=config.lease,
        margin=config.margin,
        max_drift=config.max_drift,
        tombstone_ttl=config.tombstone_ttl,
    )
    children: list[ChildSpec] = [MembershipServer.child_spec(node)]
    if node.voter:
        children.append(AcceptorServer.child_spec(node))
    children += [
        LeaseKeeper.child_spec(node),
        ProposerServer.child_spec(node),
        BindingWatcher.child_spec(node),
    ]
    if node.voter and config.tombstone_ttl is not None:
        children.append(TombstoneCollector.child_spec(node))
    return children


def paxos_supervisor_spec(node: PaxosNode) -> ChildSpec:
    """One child spec for the root supervisor: ``paxos_sup`` over `paxos_services`."""
    return Supervisor.child_spec(
        paxos_services(node),
        id=SUPERVISOR_NAME,
        strategy="one_for_one",
        max_restarts=5,
        max_seconds=10,
        name=SUPERVISOR_NAME,
    )
