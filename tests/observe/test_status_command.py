"""`python -m paxtor status` and `--http` against nodes that are separate OS processes."""

from __future__ import annotations

import json
import sys
import urllib.request

import gevent
import gevent.subprocess
import pytest

import paxtor
from paxtor.actors import receive, spawn
from paxtor.testing import LocalCluster, free_base_port, wait_node_down, wait_until

pytestmark = pytest.mark.subprocess


def _status(cluster: LocalCluster, *flags: str) -> gevent.subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "paxtor", "status", "--base-port", str(cluster.base_port), *flags]
    return gevent.subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=60)


def _hold(key: str) -> None:
    paxtor.lock(key)
    receive()


def _waiters(node: paxtor.Node, key: str) -> int:
    locks = node.run(lambda: paxtor.cluster_info(singletons=False)).locks
    return sum(len(lock.waiters) for lock in locks if lock.key == key)


def test_status_lists_nodes_voters_and_locks_then_a_killed_voter_as_down() -> None:
    with LocalCluster(3, flags=["--heartbeat-interval", "0.2", "--heartbeat-timeout", "1"]) as cluster:
        http_port = free_base_port(range(1, 2)) + 1
        cluster.start(1, extra=["--http", f"127.0.0.1:{http_port}"])
        cluster.start(2)
        cluster.start(3)
        for proc in cluster.processes.values():
            proc.wait_for_log("quorum_reached")
        node = cluster.join(4)
        paxtor.testing.wait_for_nodes(node, cluster.voters)
        paxtor.testing.wait_for_quorum([node])
        holder = spawn(_hold, "job", node="node4")
        waiter = spawn(_hold, "job", node="node4")
        wait_until(lambda: _waiters(node, "job") == 1)

        done = _status(cluster, "--seeds", f"127.0.0.1:{cluster.base_port + 2}", "--json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        nodes = {n["name"]: n for n in data["nodes"]}
        assert all(nodes[v]["up"] and nodes[v]["role"] == "voter" for v in cluster.voters)
        assert nodes["node4"]["role"] == "client"
        assert data["complete"] and data["has_quorum"]
        assert data["locks"] == [
            {"key": "job", "holder": repr(holder), "node": "node4", "token": data["locks"][0]["token"],
             "waiters": [repr(waiter)]},
        ]  # fmt: skip
        voters = {v["name"]: v for v in data["voter_info"]}
        wrote = [v for v in voters.values() if v["fsyncs"] and v["log_bytes"]]
        assert len(wrote) >= 2  # durable voters: a quorum synced the lock's rounds

        cluster.kill("node3")
        wait_node_down(node, "node3")
        text = _status(cluster, "--seeds", f"127.0.0.1:{cluster.base_port + 1}")
        assert text.returncode == 0, text.stderr
        assert "3 voters, quorum 2: 2 up, quorum held; DOWN: node3" in text.stdout
        assert "LOCKS: 1 held, 1 with waiters" in text.stdout
        line = [row for row in text.stdout.splitlines() if row.startswith('"job"')][0]
        assert repr(holder) in line and repr(waiter) in line

        metrics = gevent.get_hub().threadpool.apply(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
        )
        assert 'paxtor_peer_up{peer="node3"} 0' in metrics and "paxtor_acceptor_fsync_seconds_count" in metrics


def test_status_says_when_no_node_answers_and_refuses_bad_flags() -> None:
    with LocalCluster(3) as cluster:
        done = _status(cluster, "--timeout", "0.5")
        assert done.returncode == 1
        assert "no node answered within 0.5 s" in done.stderr
        bad = _status(cluster, "--limit", "many")
        assert bad.returncode == 2 and "invalid int value" in bad.stderr
