"""`python -m paxtor status` and `--http` against nodes that are separate OS processes."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import pytest

import paxtor
from paxtor.actors import ReceiveTimeout, receive, self_pid, send, spawn
from paxtor.observe.events import NodeUp
from paxtor.observe.gather import ask
from paxtor.testing import LocalCluster, free_base_port, wait_node_down, wait_until

pytestmark = pytest.mark.subprocess

WAIT = 30.0


def _argv(cluster: LocalCluster, *flags: str) -> list[str]:
    return [sys.executable, "-m", "paxtor", "status", "--base-port", str(cluster.base_port), *flags]


def _status(cluster: LocalCluster, *flags: str) -> gevent.subprocess.CompletedProcess:
    return gevent.subprocess.run(_argv(cluster, *flags), env=cluster.env, capture_output=True, text=True, timeout=60)


@contextmanager
def _running_status(cluster: LocalCluster, *flags: str, **options: Any) -> Iterator[gevent.subprocess.Popen]:
    """``paxtor status ...`` as a running OS process (stdout and stderr piped); killed by pid at the end."""
    proc = gevent.subprocess.Popen(
        _argv(cluster, *flags), env=options.pop("env", cluster.env), stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.PIPE, text=True, **options,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _line(proc: gevent.subprocess.Popen) -> str:
    """The next line the command printed (it must print one within WAIT)."""
    with gevent.Timeout(WAIT, TimeoutError(f"status printed nothing for {WAIT} s")):
        line = proc.stdout.readline()
    assert line, f"status exited early ({proc.poll()}): {proc.stderr.read()}"
    return line


def _started(cluster: LocalCluster) -> paxtor.Node:
    """The voters up with a quorum, and node4, a client in this OS process, connected to them."""
    for proc in cluster.start_all():
        proc.wait_for_log("quorum_reached", WAIT)
    node = cluster.join(4, durability="memory")
    paxtor.testing.wait_for_nodes(node, cluster.voters, WAIT)
    paxtor.testing.wait_for_quorum([node], WAIT)
    return node


def _left_cleanly(cluster: LocalCluster, prefix: str) -> None:
    """Every voter saw the status client (named `prefix`...) come, then leave as a node that stops."""
    for proc in cluster.processes.values():
        came = proc.wait_for_log(lambda e: e.get("event") == "node_up" and e["peer"].startswith(prefix), WAIT)
        peer = came["peer"]
        went = proc.wait_for_log(lambda e, peer=peer: e.get("event") == "node_down" and e["peer"] == peer, WAIT)
        assert went["reason"].startswith("peer_stopping") and went["level"] == "info", went


def _hold(key: str) -> None:
    paxtor.lock(key)
    receive()


def _lock_and_park(key: str) -> int:
    """Take `key`'s lock in a process that lives on; the token."""
    me = self_pid()

    def hold() -> None:
        send(me, ("token", paxtor.lock(key)))
        receive()

    spawn(hold)
    return receive(lambda m: isinstance(m, tuple) and m[0] == "token", timeout=WAIT)[1]


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


def test_status_watch_redraws_shows_a_lock_taken_between_draws_and_stops_on_sigint() -> None:
    with LocalCluster(3) as cluster:
        node = _started(cluster)
        with _running_status(cluster, "--watch", "0.3", "--json") as watch:
            first = json.loads(_line(watch))
            assert first["complete"] and first["has_quorum"] and first["locks"] == []
            token = node.run(_lock_and_park, "watched")  # after the first draw was printed
            draws = [first]
            while not draws[-1]["locks"]:
                draws.append(json.loads(_line(watch)))
            assert len(draws) >= 2 and draws[-1]["taken_at"] > first["taken_at"]
            (lock,) = draws[-1]["locks"]
            assert (lock["key"], lock["node"], lock["token"]) == ("watched", "node4", token)
            watch.send_signal(signal.SIGINT)
            assert watch.wait(timeout=WAIT) == 0
            assert watch.stderr.read() == ""  # no traceback, no "KeyboardInterrupt"
        _left_cleanly(cluster, f"status-{watch.pid}-")


def test_status_watch_in_text_stops_cleanly_on_sigterm() -> None:
    with LocalCluster(3) as cluster:
        for proc in cluster.start_all():
            proc.wait_for_log("quorum_reached", WAIT)
        with _running_status(cluster, "--watch", "0.3") as watch:
            headers = 0
            while headers < 2:
                headers += _line(watch).startswith("cluster: 3 voters, quorum 2: 3 up, quorum held")
            watch.terminate()
            assert watch.wait(timeout=WAIT) == 0  # was -15: killed with its connections open
            assert watch.stderr.read() == ""
        _left_cleanly(cluster, f"status-{watch.pid}-")  # was: node_down peer_closed, a warning on every voter


def test_a_status_run_leaves_no_trace(tmp_path: Path) -> None:
    """The status client is hidden (only the voters it dials see it), writes nothing to
    disk, and after it exits no node lists it."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    with LocalCluster(3) as cluster:
        node = _started(cluster)
        paxtor.subscribe("nodes")  # node4's node events, to this test's process
        env = dict(cluster.env, HOME=str(home))
        with _running_status(cluster, "--json", "--seeds", f"127.0.0.1:{cluster.base_port + 2}", cwd=cwd,
                             env=env) as status:  # fmt: skip
            assert status.wait(timeout=60) == 0, status.stderr.read()
            data = json.loads(status.stdout.read())
        prefix = f"status-{status.pid}-"
        assert not [n["name"] for n in data["nodes"] if n["name"].startswith(prefix)]  # hidden from the output too
        _left_cleanly(cluster, prefix)  # it was connected to every voter, and then it left

        def connected() -> dict[str, list[str]]:
            reports = {v: ask(v, ("report",), time.monotonic() + WAIT) for v in cluster.voters}
            return {v: outcome.unwrap()["connected"] for v, outcome in reports.items()}

        lists = node.run(connected)
        assert lists == {v: sorted({*cluster.voters, "node4"} - {v}) for v in cluster.voters}
        assert node.nodes() == cluster.voters
        ups = []
        with contextlib.suppress(ReceiveTimeout):
            while True:
                ups.append(receive(lambda m: isinstance(m, NodeUp), timeout=0).node)
        assert not [name for name in ups if name.startswith(prefix)]  # node4 never saw it: named to nobody
        assert sorted(p.name for p in (cluster.workdir / "data").iterdir()) == cluster.voters
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []
