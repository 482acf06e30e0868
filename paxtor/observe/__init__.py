"""Seeing the cluster: `cluster_info`, the `status` command, the web view, `/metrics`, events.

- `paxtor.observe.gather`: `cluster_info()` (nodes, voters, locks, singletons);
- `paxtor.observe.server` / `report` / `scan`: what each node answers for it;
- `paxtor.observe.events`: `subscribe` (quorum, lease and node events);
- `paxtor.observe.metrics`: this node's Prometheus text exposition;
- `paxtor.observe.web`: the read-only web view and ``/metrics`` over HTTP;
- `paxtor.observe.status`: the ``python -m paxtor status`` command.

This package is the top layer: PaxosKV and the actor runtime only keep the
counters and state it reads.
"""

from paxtor.observe.events import (
    ClusterState,
    LeaseGained,
    LeaseLost,
    NodeDown,
    NodeUp,
    QuorumLost,
    QuorumReached,
    subscribe,
    unsubscribe,
)
from paxtor.observe.gather import cluster_info
from paxtor.observe.info import ClusterInfo, LockInfo, NodeInfo, SingletonInfo, VoterInfo

__all__ = [
    "cluster_info",
    "ClusterInfo",
    "NodeInfo",
    "VoterInfo",
    "LockInfo",
    "SingletonInfo",
    "subscribe",
    "unsubscribe",
    "ClusterState",
    "QuorumLost",
    "QuorumReached",
    "LeaseLost",
    "LeaseGained",
    "NodeUp",
    "NodeDown",
]
