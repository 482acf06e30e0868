"""`paxtor.testing`: the cluster harness the other tests and the examples stand on."""

from __future__ import annotations

import signal
import socket

import pytest

from paxtor import paxos
from paxtor.actors.distribution import stop_all_distributed
from paxtor.testing import (
    Cluster,
    LocalCluster,
    free_base_port,
    in_process_cluster,
    wait_for_nodes,
    wait_node_down,
    wait_until,
)


@pytest.fixture(autouse=True)
def stop_distributed_nodes():
    yield
    stop_all_distributed()


def test_free_base_port_gives_a_block_that_binds() -> None:
    base = free_base_port(range(1, 6))
    sockets = [socket.socket() for _ in range(5)]
    try:
        for offset, s in enumerate(sockets, start=1):
            s.bind(("127.0.0.1", base + offset))
    finally:
        for s in sockets:
            s.close()


def test_in_process_cluster_reaches_quorum_and_stops_every_node_at_exit() -> None:
    with in_process_cluster(3) as cluster:
        nodes = list(cluster.nodes.values())
        assert [n.name for n in nodes] == ["node1", "node2", "node3"]
        assert all(n.durability == "memory" for n in nodes)
        assert nodes[1].run(paxos.put, "harness", "v") == "v"
        assert nodes[2].run(paxos.get, "harness") == "v"
    assert not any(n.running for n in nodes)
    assert cluster.nodes == {}


def test_wait_node_down_wakes_on_the_peer_event_and_times_out_otherwise() -> None:
    with Cluster(2, spare=0) as cluster:
        node1, node2 = cluster.start_all()
        wait_for_nodes(node1, ["node2"])
        with pytest.raises(TimeoutError, match="still sees node2 up"):
            wait_node_down(node1, "node2", timeout=0.2)
        cluster.stop("node2")
        wait_node_down(node1, "node2")
        assert node1.nodes() == []


def test_a_durable_cluster_keeps_its_state_in_a_temporary_directory_removed_at_stop() -> None:
    cluster = Cluster(1, durability="fsync", spare=0)
    node = cluster.start(1)
    data_dir = cluster.data_dir
    assert data_dir is not None and (data_dir / "node1").is_dir()
    cluster.wait_ready()
    assert node.run(paxos.put, "durable", 1) == 1
    cluster.stop_all()
    assert not data_dir.exists()


@pytest.mark.subprocess
def test_a_node_process_pauses_resumes_restarts_and_is_killed_by_close() -> None:
    with LocalCluster(1, flags=["--durability", "memory"], prefix="paxtor-harness-") as cluster:
        first = cluster.start(1)
        first.wait_started(30)
        assert first.events("node_started")[0]["node"] == "node1"
        first.pause()
        assert wait_until(lambda: _state(first.pid) == "T", timeout=5)
        first.resume()
        assert wait_until(lambda: _state(first.pid) in ("S", "R"), timeout=5)
        second = cluster.restart("node1")
        assert not first.alive() and second.pid != first.pid
        assert second.log_path.name == "node1.2.log"
        second.wait_started(30)
        workdir = cluster.workdir
    assert second.proc.poll() is not None and second.proc.returncode in (0, -signal.SIGKILL)
    assert not workdir.exists()


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
