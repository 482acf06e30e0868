"""`paxtor.start_node`: the top-level node (distribution + the node's root
supervisor), its settings, and picking the lowest free number."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import paxtor
from paxtor.actors import Supervisor, self_pid
from paxtor.actors.distribution import all_distributed
from paxtor.actors.distribution import node as node_name

from .conftest import COOKIE, WAIT, free_port_block

FAST = dict(cookie=COOKIE, heartbeat_interval=0.1, heartbeat_timeout=1.0, handshake_timeout=1.0, reconnect_max=0.3)


def test_start_node_picks_the_lowest_free_number_and_runs_functions_there(tmp_path: Path):
    base = free_port_block(4)
    with socket.socket() as taken:  # someone else's port: node1 is skipped
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        a = paxtor.start_node("_", base_port=base, durability="memory", **FAST)
        b = paxtor.start_node(None, base_port=base, data_dir=tmp_path, **FAST)
    assert (a.name, b.name) == ("node2", "node3")
    assert a.voter and b.voter and a.voters == ("node1", "node2", "node3")
    assert a.data_dir is None and a.durability == "memory"
    assert b.data_dir == tmp_path.resolve() / "node3" and b.data_dir.is_dir()  # fsync: created
    assert a.dist.wait_for_nodes(["node3"], WAIT)
    assert b.run(node_name) == "node3"
    assert b.run(lambda x, y=0: x + y, 1, y=2) == 3
    with pytest.raises(ZeroDivisionError):
        a.run(lambda: 1 / 0)
    # the root supervisor is up, with the node services (PaxosKV's supervisor first)
    assert [child[0] for child in a.run(Supervisor.which_children, "paxtor_node_sup")][:1] == ["paxos_sup"]
    c = paxtor.start_node("_", base_port=base, durability="memory", **FAST)  # node1 is free again
    assert c.name == "node1"
    d = paxtor.start_node("_", base_port=base, cluster_size=3, durability="memory", **FAST)
    assert d.name == "node4" and not d.voter  # past the voters: it joins as a client
    for node in (a, b, c, d):
        node.stop()
    assert not a.running


def test_start_node_validates_its_settings(tmp_path: Path):
    with pytest.raises(ValueError, match="durability"):
        paxtor.start_node("node1", durability="paper")
    with pytest.raises(ValueError, match="cluster_size"):
        paxtor.start_node("node1", cluster_size=0)
    with pytest.raises(TypeError, match="voter"):
        paxtor.start_node("node1", voter="yes")
    (tmp_path / "node1").write_text("")  # where node1's directory would go
    with pytest.raises(ValueError, match="not a directory"):
        paxtor.start_node(1, base_port=free_port_block(1), data_dir=tmp_path, durability="fsync", **FAST)
    assert all_distributed() == []  # nothing left running


def test_a_client_node_by_number():
    base = free_port_block(5)
    node = paxtor.start_node(5, base_port=base, voter=False, durability="memory", **FAST)
    assert node.name == "node5" and not node.voter
    assert node.run(self_pid).node == "node5"
    assert repr(node).startswith("<paxtor.Node node5 client")


def test_a_client_with_a_free_number_never_takes_a_voters_name():
    base = free_port_block(5)
    voter = paxtor.start_node("_", base_port=base, durability="memory", **FAST)
    client = paxtor.start_node("_", base_port=base, voter=False, **FAST)  # node2 and node3 are free
    assert (voter.name, client.name) == ("node1", "node4")
    assert not client.voter and client.durability == "memory" and client.data_dir is None
    for node in (voter, client):
        node.stop()


def test_processes_racing_for_the_next_free_number_each_get_their_own(tmp_path: Path):
    """Three `python -m paxtor node _` started at once on one data directory: three
    names, each node.meta written by its own node only (the port is bound first)."""
    import subprocess
    import sys

    from paxtor.testing import wait_until

    base = free_port_block(4)
    argv = [sys.executable, "-m", "paxtor", "node", "_", "--no-shell", "--log-json", "--base-port", str(base),
            "--data-dir", str(tmp_path), "--cookie", COOKIE, "--heartbeat-interval", "0.2", "--heartbeat-timeout", "2"]
    for run in range(2):
        logs = [tmp_path / f"run{run}-{i}.log" for i in range(3)]
        procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w")) for log in logs]
        try:
            wait_until(lambda: all(_started(log) or p.poll() is not None for log, p in zip(logs, procs)), 60, step=0.1)
            assert [p.poll() for p in procs] == [None, None, None], [log.read_text()[-2000:] for log in logs]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
        assert sorted(_started(log) for log in logs) == ["node1", "node2", "node3"]
        assert all(proc.returncode == 0 for proc in procs)
    assert not list(tmp_path.glob("node*/node.meta.tmp"))


def _started(log: Path) -> str | None:
    """The node name a `paxtor node` log says started, once it says so."""
    import json

    for line in log.read_text().splitlines():
        if '"node_started"' in line and '"voter"' in line:
            return json.loads(line)["node"]
    return None


def test_a_client_with_a_free_number_never_takes_the_name_of_a_voter_added_later(tmp_path: Path):
    """node4 was started as a voter from this data root (as `node 4 --voter` adds one) and is
    down now: a `_` client skips its name, and the voter can start again under it."""
    base = free_port_block(6)
    added = paxtor.start_node("node4", voter=True, base_port=base, data_dir=tmp_path, durability="fsync", **FAST)
    assert (tmp_path / "node4" / "acceptor").is_dir()
    added.stop()
    client = paxtor.start_node("_", base_port=base, voter=False, data_dir=tmp_path, **FAST)
    try:
        assert client.name == "node5"
        again = paxtor.start_node("node4", voter=True, base_port=base, data_dir=tmp_path, durability="fsync", **FAST)
        assert again.name == "node4" and again.voter
        again.stop()
    finally:
        client.stop()


@pytest.mark.parametrize(
    "paxos, error",
    [({"lease": -1}, ValueError), ({"max_request_bytes": 100}, ValueError), ({"no_such_setting": 1}, TypeError)],
)
def test_bad_paxos_settings_are_refused_before_the_port_or_the_data_directory_is_touched(
    tmp_path: Path, paxos: dict, error: type
):
    base = free_port_block(2)
    with pytest.raises(error):
        paxtor.start_node("node1", base_port=base, data_dir=tmp_path, durability="fsync", paxos=paxos, **FAST)
    assert list(tmp_path.iterdir()) == []  # no node directory, no node.meta
    with socket.socket() as probe:  # the port was never bound, or was let go
        probe.bind(("127.0.0.1", base + 1))
    assert all_distributed() == []
