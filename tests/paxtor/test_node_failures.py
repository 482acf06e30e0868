"""Kill -9 the node that holds a lock or hosts a singleton.

node1 runs in this OS process (the test body is one of its processes);
node2 and node3 are OS processes of their own (`paxtor_node_main`), so a
SIGKILL is a real crash: no goodbye, no exit signals, the connection just
goes silent. The lock must pass on, and the singleton come back on another
node, each with a larger fencing token, once the dead node's lease must have
run out (about a second with the tests' short lease).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import pytest
from paxtor_cluster import WAIT, TestNode, free_port_block, start_test_node
from paxtor_helpers import Counter, lock_and_park, lock_and_report

import paxtor
from paxtor import paxos
from paxtor.actors import call, receive, self_pid, spawn
from paxtor.actors.distribution import stop_all_distributed
from paxtor.actors.messages import CallError
from paxtor.lock_messages import LOCKS_BUCKET
from paxtor.lock_register import owner_of, waiters_of
from paxtor.name import NAMES_BUCKET
from paxtor.name_register import running_pid
from paxtor.paxos.register import Register, identity
from paxtor.placement import rendezvous_order
from paxtor.rounds import paxos_key

pytestmark = pytest.mark.subprocess

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NODES = ("node1", "node2", "node3")


class NodeProcess:
    """``node<number>`` in its own OS process (killed by pid)."""

    def __init__(self, number: int, base: int, log_dir: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
        self.log = open(log_dir / f"node{number}.log", "wb")
        self.proc = gevent.subprocess.Popen(
            [sys.executable, str(HERE / "paxtor_node_main.py"), str(number), str(base)],
            stdout=gevent.subprocess.PIPE, stderr=self.log, env=env, cwd=REPO,
        )
        assert self.proc.stdout is not None
        with gevent.Timeout(WAIT * 3):
            line = self.proc.stdout.readline()
        assert line.strip() == b"ready", line

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[tuple[TestNode, dict[str, NodeProcess]]]:
    base = free_port_block(3)
    others: dict[str, NodeProcess] = {}
    node1 = None
    try:
        node1 = start_test_node(1, base)
        others = {f"node{n}": NodeProcess(n, base, tmp_path) for n in (2, 3)}
        assert node1.dist.wait_for_nodes(["node2", "node3"], WAIT)
        node1.run(paxos.wait_for_quorum, WAIT)
        yield node1, others
    finally:
        for proc in others.values():
            proc.kill9()
        if node1 is not None:
            node1.stop()
        stop_all_distributed()


def read(node1: TestNode, bucket: str, key: Any) -> Register:
    return node1.run(paxos.propose, paxos_key(key), identity, bucket=bucket)


def wait_until(check: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.05)


def test_the_lock_passes_on_when_the_holders_node_is_killed(mixed: Any) -> None:
    node1, others = mixed
    me = self_pid()
    holder = spawn(lock_and_park, "crash-lock", me, node="node3")
    _, _, token, where = receive(lambda m: isinstance(m, tuple) and m[0] == "locked" and m[1] == holder, timeout=WAIT)
    assert where == "node3"
    waiter = spawn(lock_and_report, "crash-lock", me)  # on node1
    wait_until(lambda: len(waiters_of(read(node1, LOCKS_BUCKET, "crash-lock"))) == 1)
    others["node3"].kill9()
    msg = receive(lambda m: isinstance(m, tuple) and m[0] == "locked" and m[1] == waiter, timeout=WAIT * 2)
    assert msg[2] > token
    reg = read(node1, LOCKS_BUCKET, "crash-lock")
    assert owner_of(reg) == waiter and reg.epoch == msg[2]


def test_a_singleton_comes_back_elsewhere_when_its_node_is_killed(mixed: Any) -> None:
    node1, others = mixed
    key = next(("crash-name", i) for i in range(100) if rendezvous_order(paxos_key(("crash-name", i)), NODES)[0] == "node3")
    via = paxtor.name(key, Counter)
    assert call(via, "where") == "node3"
    assert [call(via, "inc"), call(via, "inc")] == [1, 2]
    before = read(node1, NAMES_BUCKET, key)
    others["node3"].kill9()

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
