"""Fixtures for distribution tests: every distributed node a test starts is
stopped after it (before the root conftest stops the local nodes). Ports come
from `paxtor.testing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paxtor.actors import self_pid
from paxtor.actors.distribution import DistributedNode, start_distributed, stop_all_distributed
from paxtor.testing import WAIT, free_base_port

__all__ = ["COOKIE", "PAIR_SETTINGS", "WAIT", "free_port_block"]

COOKIE = "dist-test-cookie"
#: Two nodes that notice a lost peer in seconds (the `pair` fixture's settings).
PAIR_SETTINGS = dict(cookie=COOKIE, heartbeat_interval=0.2, heartbeat_timeout=3.0, handshake_timeout=2.0, reconnect_max=0.5)


@pytest.fixture(autouse=True)
def stop_distributed_nodes() -> Iterator[None]:
    yield
    stop_all_distributed()


def free_port_block(count: int) -> int:
    """A base port B such that B+1..B+count are free now (numbered discovery)."""
    return free_base_port(range(1, count + 1))


@pytest.fixture
def pair() -> tuple[DistributedNode, DistributedNode]:
    """node1 and node2, connected; the test itself runs as a process of node1."""
    n1 = start_distributed("node1", port=0, **PAIR_SETTINGS)
    n2 = start_distributed("node2", port=0, seeds=[f"127.0.0.1:{n1.port}"], **PAIR_SETTINGS)
    assert n1.wait_for_nodes(["node2"], WAIT) and n2.wait_for_nodes(["node1"], WAIT)
    assert self_pid().node == "node1"
    return n1, n2
