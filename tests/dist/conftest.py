"""Fixtures for distribution tests: every distributed node a test starts is
stopped after it (before the root conftest stops the local nodes)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from paxtor.actors.distribution import stop_all_distributed

COOKIE = "dist-test-cookie"
WAIT = 10.0  # generous upper bound for anything that should happen "soon"


@pytest.fixture(autouse=True)
def stop_distributed_nodes() -> Iterator[None]:
    yield
    stop_all_distributed()


def free_port_block(count: int, attempts: int = 200) -> int:
    """A base port B such that B+1..B+count are free now (for numbered
    discovery), outside the kernel's ephemeral range so nothing else takes
    them meanwhile."""
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
