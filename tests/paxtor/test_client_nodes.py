"""Client nodes: they find each other through the voters (the mesh), lock handoffs
survive a partition between two clients, singletons on an unreachable node fail
at once with the host's name, roles decide placement, hidden nodes host nothing.

Real nodes on 127.0.0.1 in this OS process; partitions by the distribution
layer's fault injection (`paxtor.actors.faults`)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

import paxtor
from paxtor import paxos, testing
from paxtor.actors import call, receive, self_pid, send, spawn
from paxtor.actors import exit as exit_
from paxtor.actors.faults import FaultInjector
from paxtor.locks.messages import LOCKS_BUCKET
from paxtor.locks.register import waiters_of
from paxtor.paxos.register import identity
from paxtor.placement import SINGLETONS, rendezvous_order, singleton_hosts
from paxtor.rounds import paxos_key
from paxtor.testing import WAIT

COUNTER = "paxtor.demo:Counter"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[testing.Cluster]:
    with testing.Cluster(3, data_dir=tmp_path / "data", faults=FaultInjector(seed=5)) as c:
        c.start_all()
        c.wait_ready(WAIT)
        yield c


def start_client(cluster: testing.Cluster, name: str, **options) -> paxtor.Node:
    """A client node named `name` that is given one voter only, as a seed."""
    seed = f"127.0.0.1:{cluster['node1'].dist.port}"
    node = paxtor.start_node(
        name, cluster_size=cluster.cluster_size, base_port=cluster.base, cookie=cluster.cookie, voter=False,
        seeds=[seed], paxos=dict(testing.TEST_LEASE), faults=cluster.faults,
        **{**testing.TEST_DISTRIBUTION, **options},
    )  # fmt: skip
    cluster.nodes[name] = node
    testing.wait_for_quorum([node])
    return node


def cut(cluster: testing.Cluster, a: str, b: str) -> None:
    """No message and no dial between `a` and `b`, both ways; both still reach every voter."""
    cluster.faults.partition(a, b)
    cluster.faults.block_dials(a, b)
    cluster.faults.block_dials(b, a)
    testing.wait_node_down(cluster[a], b)
    testing.wait_node_down(cluster[b], a)


def hold_until_told(key: str, reply_to) -> None:
    send(reply_to, ("locked", paxtor.lock(key)))
    receive(lambda m: m == "unlock")
    paxtor.unlock(key)
    receive(lambda m: m == "exit")


def start_holder(key: str) -> tuple:
    me = self_pid()
    pid = spawn(hold_until_told, key, me)
    return pid, receive(lambda m: isinstance(m, tuple) and m[0] == "locked", timeout=WAIT)[1]


def wait_queued(cluster: testing.Cluster, key: str, waiters: int = 1) -> None:
    """Until the lock's register (read by a linearizable round) has `waiters` queued."""

    def queued() -> bool:
        reg = cluster["node1"].run(paxos.propose, paxos_key(key), identity, bucket=LOCKS_BUCKET)
        return len(waiters_of(reg)) >= waiters

    testing.wait_until(queued, WAIT)


def lock_and_time(key: str, timeout: float) -> tuple[int, float]:
    return paxtor.lock(key, timeout=timeout), time.monotonic()


def unlock_now(holder) -> float:
    send(holder, "unlock")
    return time.monotonic()


def test_clients_given_one_voter_connect_to_each_other_and_learn_their_roles(cluster) -> None:
    a = start_client(cluster, "web-a")
    b = start_client(cluster, "web-b", singletons=False)
    testing.wait_for_nodes(a, ["web-b"])
    testing.wait_for_nodes(b, ["web-a"])
    assert b.dist.peers.wait_until(lambda: b.dist.peer_info("web-a") is not None, WAIT)
    assert a.dist.peers.wait_until(lambda: a.dist.peer_info("web-b") is not None, WAIT)
    assert a.dist.peer_info("web-b").attrs[SINGLETONS] is False
    assert b.dist.peer_info("web-a").attrs[SINGLETONS] is True
    assert a.durability == b.durability == "memory" and a.data_dir is None  # a client writes nothing
    hosts = a.run(singleton_hosts)
    assert "web-b" not in hosts and {"node1", "node2", "node3", "web-a"} <= set(hosts)


def test_a_lock_passes_between_two_clients_that_cannot_reach_each_other_within_a_second(cluster) -> None:
    a = start_client(cluster, "web-a")
    b = start_client(cluster, "web-b")
    testing.wait_for_nodes(a, ["web-b"])
    cut(cluster, "web-a", "web-b")
    key = "partitioned-handoff"
    holder, token = a.run(start_holder, key)
    waiter = gevent.spawn(b.run, lock_and_time, key, 3 * WAIT)
    wait_queued(cluster, key)
    assert not waiter.ready()
    unlocked_at = a.run(unlock_now, holder)
    got, at = waiter.get(timeout=4 * WAIT)
    assert got == token + 1
    assert at - unlocked_at < 1.5, f"handed over {at - unlocked_at:.2f} s after unlock"
    assert "web-a" not in b.nodes()  # the partition still holds
    a.run(exit_, holder, "kill")


def test_a_lost_wake_up_is_recovered_by_the_waiters_own_re_read(cluster, monkeypatch) -> None:
    from paxtor.locks.agent import LockAgent

    monkeypatch.setattr(importlib.import_module("paxtor.locks.api"), "RECHECK_SAFETY", 0.5)
    monkeypatch.setattr(LockAgent, "_wake", lambda self, wake: None)  # every wake-up is lost
    a = start_client(cluster, "web-a")
    b = start_client(cluster, "web-b")
    testing.wait_for_nodes(a, ["web-b"])
    key = "lost-wake-up"
    holder, token = a.run(start_holder, key)
    waiter = gevent.spawn(b.run, lock_and_time, key, 3 * WAIT)
    wait_queued(cluster, key)
    unlocked_at = a.run(unlock_now, holder)
    got, at = waiter.get(timeout=4 * WAIT)
    assert got == token + 1 and at - unlocked_at < 0.5 + 1.0
    a.run(exit_, holder, "kill")


def _key_homed_on(node: str, nodes: list[str]) -> str:
    for i in range(1000):
        key = f"apple-{i}"
        if rendezvous_order(paxos_key(key), nodes)[0] == node:
            return key
    raise AssertionError("no such key")


def test_a_singleton_on_a_client_this_one_cannot_reach_fails_at_once_naming_its_host(cluster) -> None:
    a = start_client(cluster, "web-a")
    b = start_client(cluster, "web-b", singletons=False)
    testing.wait_for_nodes(a, ["web-b"])
    key = _key_homed_on("web-a", ["node1", "node2", "node3", "web-a"])
    counter = paxtor.name(key, COUNTER)
    assert a.run(call, counter, "inc") == 1
    assert a.run(paxtor.whereis, counter).node == "web-a"
    assert b.run(call, counter, "inc") == 2  # reached from the other client
    c = start_client(cluster, "web-c", singletons=False)  # just up: it may not have reached web-a yet
    assert c.run(call, counter, "inc") == 3
    cut(cluster, "web-a", "web-b")
    b.dist.peers.wait_until(lambda: b.dist.reached_by_others("web-a"), WAIT)
    started = time.monotonic()
    with pytest.raises(paxtor.SingletonUnreachable, match="web-a") as caught:
        b.run(call, counter, "inc")
    assert time.monotonic() - started < 2.0
    assert "no quorum" not in str(caught.value) and caught.value.node == "web-a"
    assert cluster["node1"].run(call, counter, "inc") == 4  # still the one process, reached from the rest


def test_a_node_without_singletons_never_hosts_one(cluster) -> None:
    b = start_client(cluster, "web-b", singletons=False)
    for node in ("node1", "node2", "node3"):
        testing.wait_for_nodes(cluster[node], ["web-b"])
    key = _key_homed_on("web-b", ["node1", "node2", "node3", "web-b"])
    pid = b.run(paxtor.whereis, paxtor.name(key, COUNTER))
    assert pid.node in ("node1", "node2", "node3")
    assert b.run(paxtor.registered) == []


def test_a_hidden_node_takes_locks_hosts_nothing_and_is_named_to_nobody(cluster) -> None:
    a = start_client(cluster, "web-a")
    hidden = start_client(cluster, "status-1", hidden=True)
    assert hidden.hidden and not hidden.singletons and not hidden.voter
    testing.wait_for_nodes(hidden, ["node1", "node2", "node3"])
    token = hidden.run(lambda: (paxtor.lock("seen-by-a-tool"), paxtor.unlock("seen-by-a-tool"))[0])
    assert token >= 1
    c = start_client(cluster, "web-c")
    testing.wait_for_nodes(c, ["web-a"])
    assert "status-1" not in a.nodes() + c.nodes()
    assert "status-1" not in a.dist.known_nodes() and "web-c" in hidden.dist.known_nodes()
    assert "status-1" not in cluster["node1"].run(singleton_hosts)
    key = _key_homed_on("status-1", ["node1", "node2", "node3", "status-1"])
    assert hidden.run(paxtor.whereis, paxtor.name(key, COUNTER)).node != "status-1"


def test_start_node_refuses_role_mixups(cluster) -> None:
    with pytest.raises(ValueError, match="a client needs its own"):
        paxtor.start_node("node2", cluster_size=3, base_port=cluster.base, voter=False, durability="memory")
    with pytest.raises(ValueError, match="hidden"):
        paxtor.start_node("x", cluster_size=3, base_port=cluster.base, voter=False, hidden=True, singletons=True)
    with pytest.raises(ValueError, match="voter cannot be hidden"):
        paxtor.start_node("node3", cluster_size=3, base_port=cluster.base, hidden=True)
    with pytest.raises(TypeError):
        paxtor.start_node("x", cluster_size=3, base_port=cluster.base, voter=False, singletons="no")


def test_calling_paxtor_from_a_plain_os_thread_is_a_clear_error(cluster) -> None:
    import threading

    errors: list[BaseException] = []

    def from_thread() -> None:
        for attempt in (lambda: paxtor.lock("from-a-thread"), lambda: cluster["node1"].run(paxtor.try_lock, "x")):
            try:
                attempt()
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join(WAIT)  # the thread never needs the hub: it fails before any switch
    assert [type(e) for e in errors] == [paxtor.WrongThread, paxtor.WrongThread]
    assert "gunicorn -k gevent" in str(errors[0])
    assert cluster["node1"].run(paxtor.try_lock, "from-a-thread") is not None  # nothing was left behind


def test_a_clean_stop_logs_no_warning_anywhere(cluster) -> None:
    from structlog.testing import capture_logs

    a = start_client(cluster, "web-a")
    b = start_client(cluster, "web-b")
    testing.wait_for_nodes(a, ["web-b"])
    assert a.run(paxtor.try_lock, "held-while-stopping") is not None
    with capture_logs() as logs:
        cluster.stop("web-a")  # a client: the voters keep their quorum
        cluster.stop("node3")  # a voter: two of three still answer
        testing.wait_node_down(b, "web-a")
        testing.wait_node_down(b, "node3")
    closed = [e for e in logs if e["event"] == "connection_closed"]
    assert len(closed) >= 2 * 5  # both ends of each of the two nodes' connections
    assert [e for e in logs if e["log_level"] in ("warning", "error")] == []


def test_clients_present_at_founding_do_not_make_founding_voters_learners(tmp_path) -> None:
    """A client connected to every voter learns the new cluster's id from the founder and
    tells the others; with the founder's `Found` to node2 slowed down, that news reaches
    node2 first. node2 must still found the cluster with the others (and vote), not take
    itself for a voter that lost its disk."""
    from structlog.testing import capture_logs

    faults = FaultInjector(seed=7)
    faults.delay("node1", "node2", 0.5)
    with capture_logs() as logs, testing.Cluster(3, data_dir=tmp_path / "data", faults=faults) as c:
        c.start(4, voter=False)  # the client first: connected to every voter as they come up
        c.start_all()
        c.wait_ready(WAIT)
        assert {c[n].paxos.role for n in ("node1", "node2", "node3")} == {"voter"}
    founded = [e for e in logs if e["event"] == "cluster_founded"]
    assert len(founded) == 1 and founded[0]["all_blank"] is True
    assert [e["node"] for e in logs if e["event"] == "voter_is_learner"] == []
