"""Rendezvous hashing: deterministic, spread, stable when a node leaves."""

from __future__ import annotations

from collections import Counter

from paxtor.placement import rendezvous_order, weight
from paxtor.rounds import paxos_key

NODES = ["node1", "node2", "node3"]


def test_same_answer_whatever_the_order_of_nodes() -> None:
    for i in range(50):
        key = paxos_key(("k", i))
        assert rendezvous_order(key, NODES) == rendezvous_order(key, list(reversed(NODES)))
        assert sorted(rendezvous_order(key, NODES)) == NODES


def test_known_weights_never_change_across_runs() -> None:
    # BLAKE2b, not Python's salted hash: the same numbers on every machine and run
    assert weight(b"key", "node1") == weight(b"key", "node1")
    assert weight(b"key", "node1") != weight(b"key", "node2")
    assert weight(paxos_key("apple"), "node1") == int.from_bytes(
        __import__("hashlib").blake2b(paxos_key("apple"), digest_size=8, key=b"node1").digest(), "big"
    )


def test_keys_spread_over_the_nodes() -> None:
    homes = Counter(rendezvous_order(paxos_key(i), NODES)[0] for i in range(3000))
    assert set(homes) == set(NODES)
    assert all(800 < n < 1200 for n in homes.values()), homes


def test_only_the_keys_of_a_node_that_leaves_move() -> None:
    keys = [paxos_key(i) for i in range(1000)]
    before = {k: rendezvous_order(k, NODES)[0] for k in keys}
    after = {k: rendezvous_order(k, ["node1", "node2"])[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "node3" for k in moved)
