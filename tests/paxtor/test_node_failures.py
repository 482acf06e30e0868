"""Kill -9 the node that holds a lock or hosts a singleton.

node1 runs in this OS process (the test body is one of its processes);
node2 and node3 are OS processes of their own (`paxtor_node_main`, in a
`paxtor.testing.LocalCluster`), so a SIGKILL is a real crash: no goodbye, no
exit signals, the connection just goes silent. The lock must pass on, and the singleton come back on another
node, each with a larger fencing token, once the dead node's lease must have
run out (about a second with the tests' short lease).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paxtor_helpers import Counter, lock_and_park, lock_and_report

import paxtor
from paxtor import paxos
from paxtor.actors import call, receive, self_pid, spawn
from paxtor.actors.distribution import stop_all_distributed
from paxtor.actors.messages import CallError
from paxtor.locks.messages import LOCKS_BUCKET
from paxtor.locks.register import owner_of, waiters_of
from paxtor.paxos.register import Register, identity
from paxtor.placement import rendezvous_order
from paxtor.rounds import paxos_key
from paxtor.singletons.api import NAMES_BUCKET
from paxtor.singletons.register import running_pid
from paxtor.testing import (
    TEST_DISTRIBUTION,
    TEST_LEASE,
    WAIT,
    LocalCluster,
    NodeProcess,
    wait_until,
)

pytestmark = pytest.mark.subprocess

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NODES = ("node1", "node2", "node3")


def node_main_argv(number: int, base_port: int) -> list[str]:
    """``node<number>`` as `paxtor_node_main` starts it: the tests' short lease, like node1."""
    return [sys.executable, str(HERE / "paxtor_node_main.py"), str(number), str(base_port)]


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[tuple[paxtor.Node, dict[str, NodeProcess]]]:
    cluster = LocalCluster(3, pythonpath=[REPO, HERE], workdir=tmp_path)
    try:
        node1 = cluster.join(1, voter=True, durability="memory", paxos=TEST_LEASE, **TEST_DISTRIBUTION)
        others = {f"node{n}": cluster.start(n, node_main_argv(n, cluster.base_port)) for n in (2, 3)}
        for proc in others.values():
            proc.wait_started(WAIT * 3)
        assert node1.dist.wait_for_nodes(["node2", "node3"], WAIT)
        node1.run(paxos.wait_for_quorum, WAIT)
        yield node1, others
    finally:
        cluster.close()
        stop_all_distributed()


def read(node1: paxtor.Node, bucket: str, key: Any) -> Register:
    return node1.run(paxos.propose, paxos_key(key), identity, bucket=bucket)


def test_the_lock_passes_on_when_the_holders_node_is_killed(mixed: Any) -> None:
    node1, others = mixed
    me = self_pid()
    holder = spawn(lock_and_park, "crash-lock", me, node="node3")
    _, _, token, where = receive(lambda m: isinstance(m, tuple) and m[0] == "locked" and m[1] == holder, timeout=WAIT)
    assert where == "node3"
    waiter = spawn(lock_and_report, "crash-lock", me)  # on node1
    wait_until(lambda: len(waiters_of(read(node1, LOCKS_BUCKET, "crash-lock"))) == 1)
    others["node3"].kill()
    msg = receive(lambda m: isinstance(m, tuple) and m[0] == "locked" and m[1] == waiter, timeout=WAIT * 2)
    assert msg[2] > token
    reg = read(node1, LOCKS_BUCKET, "crash-lock")
    assert owner_of(reg) == waiter and reg.epoch == msg[2]


def test_a_singleton_comes_back_elsewhere_when_its_node_is_killed(mixed: Any) -> None:
    node1, others = mixed
    key = next(
        ("crash-name", i) for i in range(100) if rendezvous_order(paxos_key(("crash-name", i)), NODES)[0] == "node3"
    )
    via = paxtor.name(key, Counter)
    assert call(via, "where") == "node3"
    assert [call(via, "inc"), call(via, "inc")] == [1, 2]
    before = read(node1, NAMES_BUCKET, key)
    others["node3"].kill()

    def answer() -> Any:
        try:
            return call(via, "where", timeout=1.0)
        except CallError:
            return None  # the dead pid, until its node is known gone

    where = wait_until(answer, timeout=WAIT * 2)
    assert where in ("node1", "node2")
    assert call(via, "inc") == 1  # a new process: its state starts afresh
    after = read(node1, NAMES_BUCKET, key)
    assert after.epoch > before.epoch and running_pid(after) != running_pid(before)
