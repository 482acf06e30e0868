"""Fixtures of the observability tests: an in-process cluster of three voters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paxtor.testing import Cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """node1..node3 started (not yet waited for: `cluster.wait_ready()`), stopped at the end."""
    with Cluster(3) as c:
        yield c
