"""Tombstone collection on real nodes: emptied keys leave every voter, epochs keep growing."""

from __future__ import annotations

from typing import Any

from paxtor import paxos
from paxtor.actors import call
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.bucket import DEFAULT_BUCKET
from paxtor.paxos.register import Register
from paxtor.testing import TEST_LEASE, wait_until

from .conftest import WAIT, Cluster

#: Every request (the collector's spread rounds too) may retry for `max_request_time(TTL)`
#: only: this TTL leaves it one whole attempt of a round, not a fraction of one.
TTL = TEST_LEASE["attempt_timeout"] * 2 * (1 + TEST_LEASE["max_drift"]) ** 2
#: A key is examined once a tombstone for TTL (a pass every TTL/4); a lagging one is spread
#: and examined again a TTL later. WAIT is for the rounds themselves.
COLLECTED_WITHIN = 2 * (TTL + TTL / 4) + WAIT


def _ready(*nodes: Any) -> None:
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)


def _delete(register: Register) -> Register:
    return register.release() if register.filled else register


def _held(node: Any, key: Any) -> bool:
    """Whether ``node``'s acceptor still holds ``key`` (a value or a tombstone)."""
    state = node.run(call, "paxos_acceptor", ("read", DEFAULT_BUCKET, key))
    return state.accepted_ballot != Ballot.ZERO


def _put_and_delete(node: Any, keys: list[Any]) -> dict[Any, int]:
    epochs = {}
    for key in keys:
        assert node.run(paxos.put, key, "v") == "v"
        epochs[key] = node.run(paxos.propose, key, _delete).epoch
    return epochs


def test_emptied_keys_leave_every_voter_and_a_new_tenure_gets_a_larger_epoch(cluster: Cluster):
    nodes = cluster.start_all(durability="fsync", tombstone_ttl=TTL)
    _ready(*nodes)
    keys = [("gone", i) for i in range(30)]
    epochs = _put_and_delete(nodes[0], keys)
    kept = ("kept", 1)
    nodes[1].run(paxos.put, kept, "here")
    wait_until(lambda: not any(_held(n, k) for n in nodes for k in keys), timeout=COLLECTED_WITHIN)
    assert sum(_held(n, kept) for n in nodes) >= 2  # a value is never collected
    assert nodes[2].run(paxos.get, kept) == "here"
    for i, key in enumerate(keys[:6]):
        node = nodes[i % 3]
        assert node.run(paxos.get, key, default=None) is None
        assert node.run(paxos.put, key, "again") == "again"  # past the voters' floors
        assert node.run(paxos.epoch_of, key) > epochs[key]


def test_collected_keys_stay_collected_and_fenced_across_a_whole_cluster_restart(cluster: Cluster):
    """The `Collected` records replay: the keys stay gone and their epochs never go back."""
    nodes = cluster.start_all(durability="fsync", tombstone_ttl=TTL)
    _ready(*nodes)
    keys = [("restart", i) for i in range(5)]
    epochs = _put_and_delete(nodes[1], keys)
    wait_until(lambda: not any(_held(n, k) for n in nodes for k in keys), timeout=COLLECTED_WITHIN)
    for name in list(cluster.nodes):
        cluster.stop(name)
    nodes = cluster.start_all(durability="fsync", tombstone_ttl=None)  # nothing collected now
    _ready(*nodes)
    assert not any(_held(n, k) for n in nodes for k in keys)
    for key in keys:
        assert nodes[0].run(paxos.put, key, "new") == "new"
        assert nodes[0].run(paxos.epoch_of, key) > epochs[key]


def test_nothing_is_collected_while_a_voter_is_away(cluster: Cluster):
    nodes = cluster.start_all(durability="fsync", tombstone_ttl=TTL)
    _ready(*nodes)
    cluster.stop("node3")
    keys = [("away", i) for i in range(5)]
    _put_and_delete(nodes[0], keys)
    stats = nodes[0].run(call, "paxos_collector", "stats")
    nodes[0].run(call, "paxos_collector", "collect_now")
    wait_until(lambda: nodes[0].run(call, "paxos_collector", "stats")["tombstones"] >= len(keys))
    for _ in range(3):  # passes while node3 is away drop nothing
        for node in nodes[:2]:
            node.run(call, "paxos_collector", "collect_now")
    assert all(_held(nodes[0], k) for k in keys)
    assert nodes[0].run(call, "paxos_collector", "stats")["collected"] == stats["collected"]
    cluster.start(3, durability="fsync", tombstone_ttl=TTL)
    cluster.wait_ready()
    wait_until(
        lambda: not any(_held(n, k) for n in (nodes[0], nodes[1], cluster["node3"]) for k in keys),
        timeout=COLLECTED_WITHIN,
    )
