"""Fixtures for the Paxtor layer tests (the cluster itself is in `paxtor_cluster`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from paxtor_cluster import Cluster

from paxtor.actors.distribution import stop_all_distributed


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three voters node1..node3, meshed, each with a lease."""
    c = Cluster(tmp_path)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()
        stop_all_distributed()
