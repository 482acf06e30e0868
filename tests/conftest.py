"""Shared test fixtures: every test starts and ends with no local node.

The test body runs in the main greenlet, which the runtime adopts as a
process when it first needs one; stopping every node detaches it again, so
no message, link or name leaks from one test into the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paxtor.actors.node import stop_all


@pytest.fixture(autouse=True)
def fresh_actor_runtime() -> Iterator[None]:
    stop_all()
    yield
    stop_all()
