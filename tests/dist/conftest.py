"""Fixtures for distribution tests: every distributed node a test starts is
stopped after it (before the root conftest stops the local nodes). Ports come
from `paxtor.testing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paxtor.actors.distribution import stop_all_distributed
from paxtor.testing import WAIT, free_base_port

__all__ = ["COOKIE", "WAIT", "free_port_block"]

COOKIE = "dist-test-cookie"


@pytest.fixture(autouse=True)
def stop_distributed_nodes() -> Iterator[None]:
    yield
    stop_all_distributed()


def free_port_block(count: int) -> int:
    """A base port B such that B+1..B+count are free now (numbered discovery)."""
    return free_base_port(range(1, count + 1))
