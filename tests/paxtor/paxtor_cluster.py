"""A test cluster for the Paxtor layer: several real nodes in this OS process over TCP.

Each node runs PaxosKV's services and then `paxtor_services` under its root
supervisor, as `paxtor.start_node` does, with a short lease (so that
failures are detected in about a second) and memory durability.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

from paxtor import paxos
from paxtor.actors import Supervisor, receive, self_pid, send, spawn
from paxtor.actors.distribution import start_distributed
from paxtor.paxos.services import PaxosConfig, PaxosNode, node_incarnation, numbered_voters, paxos_supervisor_spec
from paxtor.services import paxtor_services

COOKIE = "paxtor-layer-test-cookie"
WAIT = 10.0  # upper bound for anything that should happen "soon"

DIST_TIMING = dict(heartbeat_interval=0.1, heartbeat_timeout=1.0, handshake_timeout=1.0, reconnect_max=0.3)
LEASE = dict(lease=0.5, margin=0.15, max_drift=0.05, heartbeat_interval=0.1, release_stagger=0.1, attempt_timeout=0.5)


def free_port_block(count: int, attempts: int = 200) -> int:
    """A base port B with B+1..B+count free now (outside the ephemeral range)."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(10_000, 30_000)
        sockets = []
        try:
            for offset in range(1, count + 1):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports found")


class TestNode:
    """A node of the test cluster: distribution, PaxosKV and the Paxtor services."""

    __test__ = False

    def __init__(self, dist: Any, pnode: PaxosNode) -> None:
        self.dist = dist
        self.paxos = pnode
        self.name = dist.name

    def run(self, fn: Any, *args: Any, timeout: float | None = WAIT * 3, **kwargs: Any) -> Any:
        return self.dist.run(fn, *args, timeout=timeout, **kwargs)

    def stop(self) -> None:
        self.dist.stop()
        self.paxos.close()


def _root(children: list[Any], parent: Any) -> None:
    Supervisor.start_link(children, name="paxtor_node_sup")
    send(parent, "root_started")
    while True:
        receive()


def _boot(children: list[Any]) -> None:
    spawn(_root, children, self_pid())
    receive(lambda m: m == "root_started")


def start_test_node(number: int, base_port: int, cluster_size: int = 3) -> TestNode:
    """Node ``node<number>`` in this OS process: distribution, PaxosKV (memory) and
    the Paxtor services, as `paxtor.start_node` starts them."""
    name = f"node{number}"
    dist = start_distributed(
        name, base_port=base_port, cluster_size=cluster_size, cookie=COOKIE,
        incarnation=node_incarnation(None, "memory"), **DIST_TIMING,
    )
    voter = number <= cluster_size
    config = PaxosConfig(voters=numbered_voters(cluster_size), voter=voter, durability="memory", **LEASE)
    pnode = PaxosNode(config, dist.local)
    try:
        dist.run(_boot, [paxos_supervisor_spec(pnode), *paxtor_services()])
    except BaseException:
        dist.stop()
        pnode.close()
        raise
    return TestNode(dist, pnode)


class Cluster:
    """Numbered nodes of one test cluster (node1..node3 vote)."""

    def __init__(self, tmp_path: Path, cluster_size: int = 3) -> None:
        self.base = free_port_block(cluster_size + 3)
        self.cluster_size = cluster_size
        self.tmp_path = tmp_path
        self.nodes: dict[str, TestNode] = {}

    def start(self, number: int) -> TestNode:
        node = self.nodes[f"node{number}"] = start_test_node(number, self.base, self.cluster_size)
        return node

    def start_all(self) -> list[TestNode]:
        nodes = [self.start(i) for i in range(1, self.cluster_size + 1)]
        for node in nodes:
            assert node.dist.wait_for_nodes([n.name for n in nodes], WAIT)
        for node in nodes:
            node.run(paxos.wait_for_quorum, WAIT)
        return nodes

    def __getitem__(self, name: str) -> TestNode:
        return self.nodes[name]

    def stop(self, name: str) -> None:
        self.nodes.pop(name).stop()

    def stop_all(self) -> None:
        for name in list(self.nodes):
            self.stop(name)

