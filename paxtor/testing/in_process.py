"""Clusters of nodes in this OS process, started by `paxtor.start_node` with the tests' settings.

Memory durability and a short lease and heartbeat by default (a dead node is
noticed in about a second); `nodes_in_this_process` is the same with
durable nodes and the default timings, as the examples use it. Every node
listens on 127.0.0.1, on ports that were free when the cluster was made.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

import paxtor
from paxtor.actors.faults import FaultInjector
from paxtor.local_cluster import WAIT, free_base_port
from paxtor.paxos.config import numbered_voters
from paxtor.testing.waits import wait_for_nodes, wait_for_quorum

__all__ = [
    "TEST_DISTRIBUTION",
    "TEST_LEASE",
    "Cluster",
    "in_process_cluster",
    "nodes_in_this_process",
    "start_test_node",
]

log = structlog.get_logger(__name__)

#: Fast failure detection: a silent peer is down after a second.
TEST_DISTRIBUTION: dict[str, Any] = dict(
    heartbeat_interval=0.1, heartbeat_timeout=1.0, handshake_timeout=1.0, reconnect_max=0.3
)
#: A short lease (`paxtor.paxos.PaxosConfig`): silence threshold about 0.75 s.
TEST_LEASE: dict[str, Any] = dict(
    lease=0.5, margin=0.15, max_drift=0.05, heartbeat_interval=0.1, release_stagger=0.1, attempt_timeout=0.5
)


def start_test_node(
    number: int,
    *,
    base_port: int,
    cluster_size: int = 3,
    cookie: str | None = None,
    voter: bool | None = None,
    durability: str = "memory",
    data_dir: str | Path | None = None,
    fast: bool = True,
    paxos: dict[str, Any] | None = None,
    **distribution: Any,
) -> paxtor.Node:
    """``node<number>`` by `paxtor.start_node`, with the tests' settings.

    `fast`: `TEST_LEASE` and `TEST_DISTRIBUTION` under the overrides
    (`paxos`, `distribution`); else the defaults. `voter` defaults to
    whether `number` is one of the voters. `cookie` None: ``$PAXTOR_COOKIE``.
    """
    if voter is None:
        voter = number <= cluster_size
    settings = {**(TEST_LEASE if fast else {}), **(paxos or {})}
    options = {**(TEST_DISTRIBUTION if fast else {}), **distribution}
    return paxtor.start_node(
        number, cluster_size=cluster_size, base_port=base_port, cookie=cookie, data_dir=data_dir,
        durability=durability, voter=voter, paxos=settings, **options,
    )  # fmt: skip


class Cluster:
    """Numbered nodes of one cluster, started in this OS process by `paxtor.start_node`.

    Memory durability and the short `TEST_LEASE` unless told otherwise; one
    shared `faults` injector (partitions) if given. Ports ``base + 1 ..
    base + cluster_size + spare`` were free at creation (spare numbers are
    for client nodes). A durable node keeps its state under `data_dir`
    (default: a temporary directory removed by `stop_all`).
    """

    def __init__(
        self,
        cluster_size: int = 3,
        *,
        cookie: str | None = None,
        data_dir: str | Path | None = None,
        durability: str = "memory",
        fast: bool = True,
        faults: FaultInjector | None = None,
        distribution: dict[str, Any] | None = None,
        spare: int = 3,
        **paxos: Any,
    ) -> None:
        self.cluster_size = cluster_size
        self.base = free_base_port(range(1, cluster_size + spare + 1))
        self.cookie = cookie or secrets.token_hex(16)
        self.durability = durability
        self.fast = fast
        self.faults = faults
        self.distribution: dict[str, Any] = dict(distribution or {})
        self.paxos: dict[str, Any] = dict(paxos)
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.nodes: dict[str, paxtor.Node] = {}

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()

    @property
    def voters(self) -> list[str]:
        return list(numbered_voters(self.cluster_size))

    def configure(self, distribution: dict[str, Any] | None = None, **paxos: Any) -> Cluster:
        """Change the settings of the nodes started from now on."""
        self.distribution.update(distribution or {})
        self.paxos.update(paxos)
        return self

    def start(
        self, number: int, *, voter: bool | None = None, durability: str | None = None, **paxos: Any
    ) -> paxtor.Node:
        """Start ``node<number>`` (a voter iff number <= cluster_size, unless `voter` says)."""
        durability = durability or self.durability
        options = dict(self.distribution)
        if self.faults is not None:
            options["faults"] = self.faults
        node = start_test_node(
            number, base_port=self.base, cluster_size=self.cluster_size, cookie=self.cookie, voter=voter,
            durability=durability, data_dir=self._data_dir() if durability == "fsync" else None,
            fast=self.fast, paxos={**self.paxos, **paxos}, **options,
        )  # fmt: skip
        self.nodes[node.name] = node
        return node

    def start_all(self, **kwargs: Any) -> list[paxtor.Node]:
        """Start every voter (not waiting for them: see `wait_ready`)."""
        return [self.start(n, **kwargs) for n in range(1, self.cluster_size + 1)]

    def wait_ready(self, timeout: float = WAIT) -> None:
        """Block until the running nodes are meshed and each holds a quorum lease."""
        names = list(self.nodes)
        for node in self.nodes.values():
            wait_for_nodes(node, names, timeout)
        wait_for_quorum(self.nodes.values(), timeout)

    def __getitem__(self, name: str) -> paxtor.Node:
        return self.nodes[name]

    def stop(self, name: str) -> None:
        self.nodes.pop(name).stop()

    def stop_all(self) -> None:
        """Stop every node (the last started first; one failing to stop does not keep
        the others running) and remove an own data directory."""
        try:
            for name in reversed(list(self.nodes)):
                try:
                    self.stop(name)
                except Exception:  # noqa: BLE001 - logged; the rest must still stop
                    log.exception("test_node_stop_failed", node=name)
        finally:
            if self._own_dir and self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.data_dir = None

    def _data_dir(self) -> Path:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="paxtor-test-"))
        return self.data_dir


@contextmanager
def in_process_cluster(cluster_size: int = 3, *, wait: float = WAIT, **options: Any) -> Iterator[Cluster]:
    """A started `Cluster` (every voter up, meshed and holding a lease); stopped at exit.

    The main greenlet runs on node1 (the node started first).
    """
    cluster = Cluster(cluster_size, **options)
    try:
        cluster.start_all()
        cluster.wait_ready(wait)
        yield cluster
    finally:
        cluster.stop_all()


@contextmanager
def nodes_in_this_process(size: int = 3, *, wait: float = 30.0) -> Iterator[list[Any]]:
    """``node1..node<size>`` in this OS process, durable (in a temporary directory),
    default timings, on free ports with a fresh cookie, each holding its lease;
    stopped and removed at the end. The main greenlet runs on node1."""
    with in_process_cluster(size, wait=wait, durability="fsync", fast=False, spare=0) as cluster:
        yield list(cluster.nodes.values())
