"""Fixtures for PaxosKV on real nodes: several nodes in this OS process over TCP.

`Cluster` is `paxtor.testing.Cluster` (numbered nodes on free ports, short
lease, memory durability by default) with one shared `FaultInjector`
(partitions) and durable state under the test's tmp_path. Every node it
started is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paxtor import testing
from paxtor.actors.distribution import stop_all_distributed
from paxtor.actors.faults import FaultInjector
from paxtor.testing import WAIT

__all__ = ["Cluster", "WAIT"]


class Cluster(testing.Cluster):
    """Numbered nodes of one test cluster, started in this OS process."""

    def __init__(self, tmp_path: Path, cluster_size: int = 3, dist: dict[str, Any] | None = None, **paxos: Any) -> None:
        super().__init__(
            cluster_size, data_dir=tmp_path / "data", faults=FaultInjector(seed=7), distribution=dist, **paxos
        )

    def configure(self, dist: dict[str, Any] | None = None, **paxos: Any) -> Cluster:  # type: ignore[override]
        """Change the settings of the nodes started from now on."""
        super().configure(distribution=dist, **paxos)
        return self


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()
        stop_all_distributed()
