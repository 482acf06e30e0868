"""Fixtures for PaxosKV on real nodes: several nodes in this OS process over TCP.

`Cluster` starts numbered nodes on a free block of ports with a short lease,
memory durability by default, and one shared `FaultInjector` (partitions).
Every node it started is stopped after the test.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import paxtor
from paxtor.actors.distribution import stop_all_distributed
from paxtor.actors.faults import FaultInjector

COOKIE = "paxos-nodes-test-cookie"
WAIT = 10.0  # upper bound for anything that should happen "soon"

#: fast failure detection and a short lease (silence threshold ~0.75 s)
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


class Cluster:
    """Numbered nodes of one test cluster, started in this OS process."""

    def __init__(self, tmp_path: Path, cluster_size: int = 3, dist: dict[str, Any] | None = None, **paxos: Any) -> None:
        self.base = free_port_block(cluster_size + 3)
        self.cluster_size = cluster_size
        self.tmp_path = tmp_path
        self.faults = FaultInjector(seed=7)
        self.dist = {**DIST_TIMING, **(dist or {})}
        self.paxos = {**LEASE, **paxos}
        self.nodes: dict[str, Any] = {}

    def configure(self, dist: dict[str, Any] | None = None, **paxos: Any) -> Cluster:
        """Change the settings of the nodes started from now on."""
        self.dist.update(dist or {})
        self.paxos.update(paxos)
        return self

    def start(self, number: int, *, voter: bool | None = None, durability: str = "memory", **paxos: Any) -> Any:
        if voter is None:
            voter = number <= self.cluster_size
        node = paxtor.start_node(
            number,
            cluster_size=self.cluster_size,
            base_port=self.base,
            cookie=COOKIE,
            data_dir=self.tmp_path / "data" if durability == "fsync" else None,
            durability=durability,
            voter=voter,
            faults=self.faults,
            paxos={**self.paxos, **paxos},
            **self.dist,
        )
        self.nodes[node.name] = node
        return node

    def start_all(self, **kwargs: Any) -> list[Any]:
        return [self.start(i, **kwargs) for i in range(1, self.cluster_size + 1)]

    def __getitem__(self, name: str) -> Any:
        return self.nodes[name]

    def stop(self, name: str) -> None:
        self.nodes.pop(name).stop()

    def stop_all(self) -> None:
        for name in list(self.nodes):
            self.stop(name)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()
        stop_all_distributed()
