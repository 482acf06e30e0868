"""Clusters for tests and examples: one way to start Paxtor nodes on this host.

- `free_base_port`, `LocalCluster`, `NodeProcess`, `NodeExited`,
  `wait_until`: nodes as OS processes (`paxtor.local_cluster`, which the
  demo uses too);
- `Cluster`, `in_process_cluster`, `nodes_in_this_process`,
  `start_test_node`, `TEST_LEASE`, `TEST_DISTRIBUTION`: nodes in this OS
  process (`paxtor.testing.in_process`);
- `wait_for_quorum`, `wait_for_nodes`, `wait_node_up`, `wait_node_down`:
  waits on a node's own events (`paxtor.testing.waits`);
- `DictVia`: a minimal `Via` module (`paxtor.testing.dict_via`).

Everything listens on 127.0.0.1 only.
"""

from paxtor.local_cluster import WAIT, LocalCluster, NodeExited, NodeProcess, free_base_port, wait_until
from paxtor.testing.dict_via import DictVia
from paxtor.testing.in_process import (
    TEST_DISTRIBUTION,
    TEST_LEASE,
    Cluster,
    in_process_cluster,
    nodes_in_this_process,
    start_test_node,
)
from paxtor.testing.waits import wait_for_nodes, wait_for_quorum, wait_node_down, wait_node_up

__all__ = [
    "DictVia",
    "TEST_DISTRIBUTION",
    "TEST_LEASE",
    "WAIT",
    "Cluster",
    "LocalCluster",
    "NodeExited",
    "NodeProcess",
    "free_base_port",
    "in_process_cluster",
    "nodes_in_this_process",
    "start_test_node",
    "wait_for_nodes",
    "wait_for_quorum",
    "wait_node_down",
    "wait_node_up",
    "wait_until",
]
