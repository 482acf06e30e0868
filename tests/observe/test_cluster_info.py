"""`paxtor.cluster_info()` on real nodes (in this OS process, over TCP on loopback)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

import paxtor
from paxtor.actors import Pid, call, receive, spawn
from paxtor.observe import gather
from paxtor.observe.status import format_status
from paxtor.testing import Cluster, wait_node_down, wait_node_up, wait_until


def _hold_forever(keys: list) -> None:
    for key in keys:
        paxtor.lock(key)
    receive()


def _lock_then_wait(key: object) -> None:
    paxtor.lock(key)
    receive()


def _info(node: paxtor.Node, **options: object) -> paxtor.ClusterInfo:
    return node.run(lambda: paxtor.cluster_info(**options))


def _waiters(node: paxtor.Node, key: object) -> tuple[Pid, ...]:
    locks = [lock for lock in _info(node, singletons=False).locks if lock.key == key]
    return locks[0].waiters if locks else ()


def test_locks_show_holder_token_and_waiters_in_order(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    n1, n2, n3 = (cluster[f"node{i}"] for i in (1, 2, 3))
    holder = spawn(_hold_forever, ["busy", ("tuple", 2)], node="node1")
    wait_until(lambda: len(_info(n1, singletons=False).locks) == 2)
    first = spawn(_lock_then_wait, "busy", node="node2")
    wait_until(lambda: _waiters(n3, "busy") == (first,))
    second = spawn(_lock_then_wait, "busy", node="node3")
    wait_until(lambda: _waiters(n3, "busy") == (first, second))

    info = _info(n3)
    assert info.complete and info.scanned == ("node1", "node2", "node3")
    locks = {lock.key: lock for lock in info.locks}
    assert set(locks) == {"busy", ("tuple", 2)}
    busy = locks["busy"]
    assert (busy.holder, busy.node, busy.waiters) == (holder, "node1", (first, second))
    assert busy.token == n1.run(lambda: paxtor.paxos.epoch_of(paxtor.rounds.paxos_key("busy"), bucket="paxtor.locks"))
    assert info.locks[0].key == "busy"  # contended locks first
    assert [n.name for n in info.nodes] == ["node1", "node2", "node3"]
    assert all(n.up and n.role == "voter" for n in info.nodes)

    through = _info(n2, via="node1")  # gathered on node1, streamed back to node2
    assert through.observer == "node1"
    assert {(lock.key, lock.holder, lock.waiters) for lock in through.locks} == {
        (lock.key, lock.holder, lock.waiters) for lock in info.locks
    }

    paxtor.actors.exit(holder, "kill")  # the lock passes to the first waiter
    wait_until(lambda: [lock.holder for lock in _info(n2).locks if lock.key == "busy"] == [first])
    after = [lock for lock in _info(n2).locks if lock.key == "busy"][0]
    assert after.waiters == (second,) and after.token == busy.token + 1


def test_singletons_show_pid_node_and_since(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    before = time.time()
    apple = cluster["node1"].run(lambda: (call(paxtor.name("apple", "paxtor.demo:Counter"), "inc"),
                                          paxtor.whereis(paxtor.name("apple", "paxtor.demo:Counter")))[1])  # fmt: skip
    info = _info(cluster["node2"], locks=False)
    assert info.locks == ()
    (single,) = info.singletons
    assert (single.key, single.pid, single.node, single.state) == ("apple", apple, apple.node, "running")
    assert single.since is not None and before <= single.since <= time.time()


def test_a_stopped_voter_shows_down_and_a_quorum_still_answers(cluster: Cluster) -> None:
    cluster.start_all()
    client = cluster.start(4, voter=False)
    cluster.wait_ready()
    spawn(_hold_forever, ["k"], node="node2")
    wait_until(lambda: len(_info(client, singletons=False).locks) == 1)
    cluster.stop("node3")
    wait_node_down(client, "node3")
    info = _info(client)
    assert info.complete and info.scanned == ("node1", "node2")
    assert [lock.key for lock in info.locks] == ["k"]
    nodes = {n.name: n for n in info.nodes}
    assert nodes["node3"].up is False and nodes["node3"].role == "voter" and nodes["node3"].address is None
    assert nodes["node4"].up and nodes["node4"].role == "client"
    voters = {v.name: v for v in info.voter_info}
    assert voters["node3"].up is False and voters["node1"].up and voters["node1"].keys is not None
    assert info.voters_up == 2 and info.has_quorum
    assert "DOWN" not in info.dumps()  # JSON says up: false; the words are the CLI's


def test_many_locks_are_read_in_pages(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gather, "PAGE_SIZE", 3)
    cluster.start_all()
    cluster.wait_ready()
    keys = [f"key-{i}" for i in range(11)]
    spawn(_hold_forever, keys, node="node1")
    wait_until(lambda: len(_info(cluster["node1"], singletons=False).locks) == len(keys))
    assert sorted(lock.key for lock in _info(cluster["node2"], via="node3").locks) == sorted(keys)


def test_the_json_form_names_pids_and_keys(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    holder = spawn(_hold_forever, [("a", 1)], node="node1")
    wait_until(lambda: len(_info(cluster["node1"]).locks) == 1)
    data = _info(cluster["node1"]).to_json()
    assert data["locks"] == [{"key": "('a', 1)", "holder": repr(holder), "node": "node1", "token": 1, "waiters": []}]
    assert data["has_quorum"] is True and data["voters_up"] == 3


def test_a_wiped_voter_shows_as_a_learner_until_it_has_caught_up(tmp_path: Path) -> None:
    """A voter started again with an empty directory is a learner while it cannot catch up
    (README "Voters that lose their disk"): status shows its role, does not count it towards
    the quorum, and does not read its (lost) state; once it has caught up it is a voter."""
    with Cluster(3, durability="fsync", data_dir=tmp_path) as cluster:
        cluster.start_all()
        cluster.wait_ready()
        cluster.stop("node3")  # a learner catches up from the others: with node3 down it cannot
        cluster.stop("node2")
        shutil.rmtree(tmp_path / "node2")
        node2 = cluster.start(2)
        node1 = cluster["node1"]
        wait_node_up(node1, "node2")
        assert node2.paxos.role == "learner"

        info = _info(node1)
        roles = {n.name: (n.role, n.up) for n in info.nodes}
        assert roles == {"node1": ("voter", True), "node2": ("learner", True), "node3": ("voter", False)}
        assert info.voters_up == 1 and not info.has_quorum
        assert info.scanned == ("node1",) and not info.complete  # the learner's rows do not count
        text = format_status(info)
        assert "3 voters, quorum 2: 1 up, NO QUORUM; DOWN: node3" in text
        assert "(INCOMPLETE: fewer than a quorum of voters read)" in text
        assert re.search(r"^node2\s+up\s+learner\s", text, re.MULTILINE), text
        assert _info(node2).nodes[1].role == "learner"  # its own report says so too

        cluster.start(3)
        wait_until(lambda: node2.paxos.role == "voter")  # caught up from node1 and node3
        cluster.wait_ready()  # node1 may see node3 after node2 caught up: they dial on their own
        info = _info(node1)
        assert [(n.name, n.role, n.up) for n in info.nodes] == [(v, "voter", True) for v in cluster.voters]
        assert info.complete and info.has_quorum and info.scanned == ("node1", "node2", "node3")
