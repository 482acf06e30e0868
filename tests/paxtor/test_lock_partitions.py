"""Locks across a partition: a wake-up lost on a cut link does not strand a waiter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

import paxtor
from paxtor import paxos, testing
from paxtor.actors import exit as exit_
from paxtor.actors import receive, self_pid, send, spawn
from paxtor.actors.distribution import nodes as connected_nodes
from paxtor.actors.faults import FaultInjector
from paxtor.locks.agent import RECHECK_INTERVAL
from paxtor.locks.messages import LOCKS_BUCKET
from paxtor.locks.register import waiters_of
from paxtor.paxos.register import identity
from paxtor.placement import rendezvous_order
from paxtor.rounds import paxos_key
from paxtor.testing import WAIT, wait_node_down, wait_until

VOTERS = ["node1", "node2", "node3"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[testing.Cluster]:
    faults = FaultInjector(seed=3)
    with testing.Cluster(3, data_dir=tmp_path / "data", faults=faults,
                         distribution=dict(heartbeat_interval=0.1, heartbeat_timeout=0.5)) as c:  # fmt: skip
        c.start_all()
        c.wait_ready(WAIT)
        yield c


def _key_homed_on(node: str) -> str:
    """A lock key whose home (rendezvous over the voters) is `node`."""
    for i in range(1000):
        key = f"lost-wake-{i}"
        if rendezvous_order(paxos_key(key), VOTERS)[0] == node:
            return key
    raise AssertionError("no such key")


def _hold_until_told(key: str, reply_to) -> None:
    send(reply_to, ("locked", paxtor.lock(key)))
    receive(lambda m: m == "unlock")
    paxtor.unlock(key)
    send(reply_to, "unlocked")
    receive(lambda m: m == "exit")


def test_a_waiter_whose_wake_up_was_lost_in_a_partition_still_gets_the_lock(cluster) -> None:
    # node1 is the key's home. Its lock goes from node1 to node2 (contended: node2 sends
    # its ops to the home). node1 and node3 cannot talk; then a waiter on node3 queues
    # (with node2's vote), and node2 unlocks: the home's round, chosen with node2, hands
    # the lock to node3's waiter, and its wake-up is dropped with the link. No peer went
    # down while the waiter waited: only its agent's re-reads, while a peer is down, can
    # tell it that it owns the lock, before the partition heals.
    key = _key_homed_on("node1")
    node1, node2, node3 = cluster["node1"], cluster["node2"], cluster["node3"]

    def queue_length() -> int:
        return len(waiters_of(node2.run(paxos.propose, paxos_key(key), identity, bucket=LOCKS_BUCKET)))

    first = node1.run(_start_holder, key)
    second = gevent.spawn(node2.run, _start_holder, key)
    wait_until(lambda: queue_length() == 1)
    cluster.faults.block("node1", "node3")
    cluster.faults.block("node3", "node1")
    wait_node_down(node3, "node1")
    wait_node_down(node1, "node3")
    waiter = gevent.spawn(node3.run, _lock_and_time, key, 3 * RECHECK_INTERVAL + 2.0)
    wait_until(lambda: queue_length() == 2)
    node1.run(send, first[0], "unlock")
    holder, token = second.get(timeout=WAIT)

    unlocked_at = node2.run(_unlock_now, holder)
    got, at = waiter.get(timeout=4 * WAIT)  # TimeoutError from the waiter: the wake-up was lost
    assert got == token + 1  # handed over: the next tenure
    assert at - unlocked_at < 2 * RECHECK_INTERVAL + 1.0  # a re-read found it ...
    assert "node1" not in node3.run(connected_nodes)  # ... while the partition still holds
    cluster.faults.heal()
    node1.run(exit_, first[0], "kill")
    node2.run(exit_, holder, "kill")


def _start_holder(key: str) -> tuple:
    """A process here that takes the lock on `key` (waiting its turn); (pid, token)."""
    me = self_pid()
    pid = spawn(_hold_until_told, key, me)
    return pid, receive(lambda m: isinstance(m, tuple) and m[0] == "locked", timeout=4 * WAIT)[1]


def _lock_and_time(key: str, timeout: float) -> tuple[int, float]:
    return paxtor.lock(key, timeout=timeout), time.monotonic()


def _unlock_now(holder) -> float:
    send(holder, "unlock")
    return time.monotonic()
