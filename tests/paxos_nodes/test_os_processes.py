"""PaxosKV on real OS processes: three durable `python -m paxtor node N --no-shell`
voters (temp data dirs), and this test process as a client node (node4).

kill -9 by pid; the released binding is observed by polling with a deadline
(only the other OS processes know when they released it). Slow: each waits
for the default lease's silence threshold (3 s * 1.05**2 + 0.5 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from paxtor import paxos
from paxtor.actors import call, receive, self_pid, spawn
from paxtor.actors.distribution import NodeDown, NodeUp, monitor_nodes
from paxtor.actors.ids import Pid
from paxtor.actors.messages import CallError
from paxtor.testing import TEST_DISTRIBUTION, TEST_LEASE, LocalCluster, NodeProcess

from . import helpers
from .conftest import WAIT

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
SILENCE = 3.0 * 1.05**2 + 0.5  # the default lease, drift and margin
LEASE_HEARTBEAT = 3.0 / 4  # the default heartbeat_interval (lease / 4)
#: on top of `LocalCluster`'s --cluster-size 3 --base-port --data-dir --log-json
FLAGS = ["--durability", "fsync",
         "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.0",
         "--handshake-timeout", "1", "--reconnect-max", "0.3"]


class OsCluster(LocalCluster):
    """node1..node3 as durable OS processes, and the client node4 in this process
    (short timings, memory durability: only the voters keep state)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(3, flags=FLAGS, pythonpath=[REPO, REPO / "tests"], workdir=tmp_path)
        try:
            self.start_all()
            self.client = self.join(4, durability="memory", paxos=TEST_LEASE, **TEST_DISTRIBUTION)
        except BaseException:
            self.close()
            raise

    @property
    def procs(self) -> dict[str, NodeProcess]:
        return self.processes


@pytest.fixture
def os_cluster(tmp_path: Path) -> Iterator[OsCluster]:
    cluster = OsCluster(tmp_path)
    try:
        assert cluster.client.dist.wait_for_nodes(["node1", "node2", "node3"], 30)
        cluster.client.run(paxos.wait_for_quorum, 30)
        yield cluster
    finally:
        cluster.close()


def _wait_until(predicate: Any, timeout: float, step: float = 0.05) -> float:
    """Poll another OS process's doing with a deadline; the monotonic time it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(step)


def _read_when_serving(node: str, key: Any) -> Any:
    """`node`'s acceptor state for `key`, once its acceptor serves (a node connects
    before its services have started: poll that other OS process, with a deadline)."""
    found: list[Any] = []

    def read() -> bool:
        try:
            found.append(call(("paxos_acceptor", node), ("read", "default", key), timeout=WAIT))
        except CallError:
            return False
        return True

    _wait_until(read, timeout=30)
    return found[-1]


def _claim_on(node: str, key: Any) -> Pid:
    spawn(helpers.claim_and_park, key, "held", "default", self_pid(), node=node)
    msg = receive(lambda m: isinstance(m, tuple) and m[0] == "claimed" and m[1] == key, timeout=WAIT)
    return msg[3]


@pytest.mark.slow
def test_put_get_across_os_processes_and_quorum_log(os_cluster: OsCluster):
    client = os_cluster.client
    assert client.run(paxos.put, ("t", 1), ("v", (1, 2))) == ("v", (1, 2))

    def from_node2() -> Any:
        spawn(helpers.put_and_report, self_pid(), ("t", 1), "other", node="node2")
        return receive(lambda m: isinstance(m, tuple) and m[0] == "put", timeout=WAIT)

    _, node, chosen, read = client.run(from_node2)
    assert (node, chosen, read) == ("node2", ("v", (1, 2)), ("v", (1, 2)))
    messages = [e.get("message") for e in os_cluster.procs["node1"].events() if e.get("event") == "quorum_reached"]
    assert messages and messages[0] == "Quorum reached. [cluster:2/3]"


@pytest.mark.slow
def test_kill_9_releases_only_after_the_lease_veto_and_restart_keeps_promises(os_cluster: OsCluster):
    client = os_cluster.client

    def scenario() -> dict[str, Any]:
        monitor_nodes(True)
        owner = _claim_on("node2", "job")
        before = call(("paxos_acceptor", "node2"), ("read", "default", "job"))
        killed_at = time.monotonic()
        os_cluster.procs["node2"].kill()
        receive(lambda m: isinstance(m, NodeDown) and m.node == "node2", timeout=WAIT)
        down_at = time.monotonic()
        still_bound = paxos.pid_of("job")  # the acceptors veto a release for now
        released_at = _wait_until(lambda: paxos.get("job", default=None) is None, timeout=SILENCE + 10)
        os_cluster.start(2)
        up = receive(
            lambda m: isinstance(m, NodeUp) and m.node == "node2" and m.incarnation > owner.incarnation, timeout=30
        )
        after = _read_when_serving("node2", "job")
        return dict(owner=owner, before=before, after=after, still_bound=still_bound, up=up,
                    down=down_at - killed_at, released=released_at - killed_at)

    r = client.run(scenario)
    assert r["down"] < SILENCE - 1.0, "the kill was noticed too late to check the veto"
    assert r["still_bound"] == r["owner"]
    assert r["released"] >= SILENCE - LEASE_HEARTBEAT  # not before the silence threshold
    assert r["up"].incarnation > r["owner"].incarnation  # node.meta: a new, larger incarnation
    before, after = r["before"], r["after"]
    assert after.promised >= before.promised and after.accepted_ballot >= before.accepted_ballot
    assert after.accepted.epoch == before.accepted.epoch == 1  # its vote survived kill -9


@pytest.mark.slow
def test_a_node_restarted_at_once_has_its_old_bindings_released_at_once(os_cluster: OsCluster):
    client = os_cluster.client

    def scenario() -> float:
        monitor_nodes(True)
        _claim_on("node3", "quick")
        killed_at = time.monotonic()
        os_cluster.procs["node3"].kill()
        os_cluster.start(3)
        released_at = _wait_until(lambda: paxos.get("quick", default=None) is None, timeout=SILENCE + 10)
        return released_at - killed_at

    assert client.run(scenario) < SILENCE  # a newer incarnation: no need to wait out the lease
