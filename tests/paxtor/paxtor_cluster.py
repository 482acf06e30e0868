"""The Paxtor layer tests' cluster: `paxtor.testing.Cluster` (real nodes in this
OS process over TCP, started by `paxtor.start_node`: PaxosKV and the Paxtor
services, a short lease, memory durability), whose `start_all` also waits for
the mesh and a quorum lease on every node."""

from __future__ import annotations

from pathlib import Path

import paxtor
from paxtor import testing
from paxtor.testing import WAIT

__all__ = ["Cluster", "WAIT"]


class Cluster(testing.Cluster):
    """Numbered nodes of one test cluster (node1..node3 vote)."""

    def __init__(self, tmp_path: Path, cluster_size: int = 3) -> None:
        super().__init__(cluster_size, data_dir=tmp_path / "data")

    def start_all(self) -> list[paxtor.Node]:  # type: ignore[override]
        nodes = super().start_all()
        self.wait_ready(WAIT)
        return nodes
