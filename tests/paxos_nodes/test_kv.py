"""PaxosKV on real nodes in one OS process: put/get/propose across nodes, clients,
NoQuorum, bad input, and a crashed PaxosKV process recovering."""

from __future__ import annotations

import time
from typing import Any

import gevent
import pytest

from paxtor import paxos
from paxtor.actors import Down, monitor, receive, send, whereis
from paxtor.actors import exit as exit_
from paxtor.paxos.register import ChangeRejected, Register

from .conftest import WAIT, Cluster


def _ready(*nodes) -> None:
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)


def test_put_get_from_every_node_with_tuples(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    key, value = ("user", 1, ("nested", 2)), {"name": ("ada", 1815), 3: [1, (2, 3)]}
    assert nodes[0].run(paxos.put, key, value) == value
    assert nodes[1].run(paxos.put, key, "another value") == value  # put keeps the first value
    for node in nodes:
        got = node.run(paxos.get, key)
        assert got == value and isinstance(got["name"], tuple)
        assert node.run(paxos.epoch_of, key) == 1
        assert node.run(paxos.pid_of, key) is None and node.run(paxos.node_of, key) is None
    with pytest.raises(KeyError):
        nodes[2].run(paxos.get, ("missing",))
    assert nodes[2].run(paxos.get, ("missing",), default="dflt") == "dflt"
    assert nodes[2].run(paxos.epoch_of, ("missing",)) == 0
    assert nodes[0].run(paxos.put, key, "x", bucket="other") == "x"  # buckets are namespaces
    assert nodes[1].run(paxos.get, key) == value


def test_concurrent_puts_from_all_nodes_agree(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    jobs = [gevent.spawn(nodes[i % 3].run, paxos.put, ("race", 7), i) for i in range(12)]
    gevent.joinall(jobs, timeout=WAIT, raise_error=True)
    results = {job.value for job in jobs}
    assert len(results) == 1
    (winner,) = results
    assert all(node.run(paxos.get, ("race", 7)) == winner for node in nodes)


def test_propose_applies_a_change_linearizably(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)

    def increment(register: Register) -> Register:
        if register.is_empty:
            return register.claim(1)
        return register.with_value(register.value + 1)

    jobs = [gevent.spawn(nodes[i % 3].run, paxos.propose, "counter", increment) for i in range(15)]
    gevent.joinall(jobs, timeout=WAIT, raise_error=True)
    seen = sorted(job.value.value for job in jobs)
    assert seen == list(range(1, 16))  # every increment applied exactly once, in some order
    assert nodes[2].run(paxos.get, "counter") == 15


def test_contended_increments_count_once_each(cluster: Cluster):
    # Twelve processes on three nodes increment one key: rounds conflict, and an
    # attempt whose accepts went out may be adopted by another round while it
    # retries. Its op mark in the register keeps the retry from counting it twice.
    nodes = cluster.start_all()
    _ready(*nodes)

    def increment(register: Register) -> Register:
        return register.claim(1) if register.is_empty else register.with_value(register.value + 1)

    def worker() -> list[int]:
        return [paxos.propose("hot", increment, timeout=WAIT).value for _ in range(25)]

    jobs = [gevent.spawn(nodes[i % 3].run, worker) for i in range(12)]
    gevent.joinall(jobs, timeout=4 * WAIT, raise_error=True)
    seen = sorted(value for job in jobs for value in job.value)
    assert seen == list(range(1, 301))  # each acknowledged once, none applied twice
    assert nodes[1].run(paxos.get, "hot") == 300


def test_a_client_node_proposes_but_does_not_vote(cluster: Cluster):
    voters = cluster.start_all()
    client = cluster.start(4, voter=False)
    _ready(*voters, client)
    assert client.run(paxos.put, "from_client", (1, 2)) == (1, 2)
    assert voters[1].run(paxos.get, "from_client") == (1, 2)
    assert client.run(paxos.get, "from_client") == (1, 2)
    assert client.run(whereis, "paxos_acceptor") is None
    assert client.run(paxos.get, "from_client", stale=True) == (1, 2)  # no acceptor: a round


def test_no_quorum_with_one_voter_writes_nothing(cluster: Cluster):
    cluster.durability = "fsync"  # node2 restarts below: a voter that keeps its state votes at once
    _ready(*cluster.start_all())
    cluster.stop("node2")
    cluster.stop("node3")
    node1 = cluster["node1"]
    with pytest.raises(paxos.NoQuorum) as info:
        node1.run(lambda: paxos.put("lonely", "value", timeout=0.5))
    assert info.value.maybe_applied is False
    with pytest.raises(paxos.NoQuorum):
        node1.run(paxos.wait_for_quorum, 0.3)
    assert node1.run(paxos.get, "lonely", stale=True, default=None) is None  # its own acceptor
    node2 = cluster.start(2)
    _ready(node1, node2)
    assert node2.run(paxos.get, "lonely", default="nothing") == "nothing"
    assert node1.run(paxos.put, "lonely", "later") == "later"


def test_bad_input_is_refused_and_loses_nothing(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    node = nodes[0]
    assert node.run(paxos.put, "kept", 1) == 1
    with pytest.raises(TypeError, match="hashable"):
        node.run(paxos.put, ["a", "list"], 1)
    with pytest.raises(TypeError, match="wire"):
        node.run(paxos.put, "k", object())
    with pytest.raises(TypeError, match="bucket"):
        node.run(paxos.put, "k", 1, bucket=3)

    def boom(register: Register) -> Register:
        raise ValueError("no thanks")

    with pytest.raises(ValueError, match="no thanks"):
        node.run(paxos.propose, "kept", boom)

    def bad_epoch(register: Register) -> Register:
        return Register(epoch=register.epoch + 5, filled=True, value="x")

    with pytest.raises(ChangeRejected):
        node.run(paxos.propose, "kept", bad_epoch)

    def unsendable(register: Register) -> Register:
        return register.with_value(object())

    with pytest.raises(TypeError):
        node.run(paxos.propose, "kept", unsendable)
    assert nodes[2].run(paxos.get, "kept") == 1  # nothing was lost
    assert nodes[2].run(paxos.epoch_of, "kept") == 1


def test_a_crashed_proposer_is_restarted_and_the_node_carries_on(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    node = nodes[0]
    assert node.run(paxos.put, "before", 1) == 1

    def kill_proposer() -> str:
        pid = whereis("paxos_proposer")
        ref = monitor(pid)
        exit_(pid, "kill")
        down = receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT)
        return down.reason

    assert node.run(kill_proposer) == "killed"
    assert node.run(paxos.put, "after", 2) == 2  # the supervisor restarted it
    assert nodes[1].run(paxos.get, "before") == 1


def test_a_single_voter_cluster_decides_alone(tmp_path):
    single = Cluster(tmp_path, cluster_size=1)
    try:
        node = single.start(1)
        _ready(node)
        assert node.run(paxos.put, "solo", 1) == 1
        assert node.run(paxos.get, "solo") == 1
        assert node.run(paxos.lease_term) == 1
    finally:
        single.stop_all()


def test_buckets_as_child_specs_and_bad_policies(cluster: Cluster):
    from paxtor.actors import Supervisor, spawn

    from . import helpers

    nodes = cluster.start_all()
    _ready(*nodes)

    releases = helpers.Releases("sup_bucket")

    def bucket_under_a_supervisor_then_release() -> None:
        Supervisor.start_link([paxos.Bucket("sup_bucket", helpers.record_reason, releases.hook)])
        owner = spawn(helpers.park)
        paxos.put("bound", "v", pid=owner, bucket="sup_bucket")
        send(owner, ("exit", "bye"))

    releases.start_bucket(nodes[1:])  # every node releases with the same policy
    nodes[0].run(bucket_under_a_supervisor_then_release)
    driver, chosen = releases.wait("bound")
    assert (driver, chosen.value) == ("node1", ("ended", "bye"))
    assert nodes[2].run(lambda: paxos.get("bound", bucket="sup_bucket")) == ("ended", "bye")
    with pytest.raises(ValueError, match="module-level"):
        nodes[0].run(paxos.start_bucket, "bad", lambda register, ended: register)
    with pytest.raises(ValueError, match="other functions"):
        nodes[1].run(paxos.start_bucket, "sup_bucket", helpers.empty_policy)
    nodes[1].run(paxos.start_bucket, "sup_bucket", helpers.record_reason, releases.hook)  # idempotent
    nodes[2].run(paxos.start_bucket, "default", helpers.record_reason)  # the built-in default, given functions once
    with pytest.raises(ValueError, match="other functions"):
        nodes[2].run(paxos.start_bucket, "default", helpers.empty_policy)


def test_a_whole_durable_cluster_restarted_keeps_its_values_and_rounds_get_past_the_floors(cluster: Cluster):
    """Promises are not synced one by one: after a restart every voter refuses the ballots
    its replayed promise floor covers, and proposers fast-forward past it once."""
    from paxtor.actors import call
    from paxtor.paxos.bucket import DEFAULT_BUCKET

    nodes = cluster.start_all(durability="fsync")
    _ready(*nodes)
    for i, node in enumerate(nodes):
        assert node.run(paxos.put, ("kept", i), i) == i
    for name in list(cluster.nodes):
        cluster.stop(name)
    nodes = cluster.start_all(durability="fsync")
    _ready(*nodes)
    state = nodes[0].run(call, "paxos_acceptor", ("read", DEFAULT_BUCKET, ("kept", 0)))
    assert state.accepted.value == 0  # the accept survived
    assert state.promised.node == ("", 0) and state.promised.counter > 1  # the floor stands for promises
    for i, node in enumerate(nodes):
        assert [node.run(paxos.get, ("kept", j)) for j in range(3)] == [0, 1, 2]
        assert node.run(paxos.put, ("kept", i), 10 + i) == i  # a round, past the floors: kept
        assert node.run(paxos.put, ("new", i), i) == i


def test_lease_term_is_read_from_the_clock_and_says_when_paxoskv_is_not_running(cluster: Cluster):
    from paxtor.actors.node import LocalNode, current_node
    from paxtor.paxos.paxos_node import PaxosNode, open_paxos_node

    bare = LocalNode.start("no_paxos_here")
    try:
        with pytest.raises(paxos.NotRunning):
            bare.run(paxos.lease_term)
        with pytest.raises(paxos.NotRunning):
            bare.run(paxos.put, "k", 1)
    finally:
        bare.stop()

    (node,) = cluster.start_all()[:1]
    _ready(node)
    paxos_node = node.run(lambda: open_paxos_node(current_node()))
    assert isinstance(paxos_node, PaxosNode)
    assert node.run(paxos.lease_term) == paxos_node.lease.term_at(time.monotonic()) is not None
    paxos_node.close()
    with pytest.raises(paxos.NotRunning):
        node.run(paxos.lease_term)


def test_values_are_copied_in_and_out_so_callers_cannot_change_them_behind_paxos(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)

    def mutate_after_put_and_get() -> list:
        mine = {"items": [1, 2]}
        paxos.put("mutable", mine)
        mine["items"].append(99)  # after the put: not a round
        got = paxos.get("mutable")
        got["items"].append(100)  # the result is the caller's own too
        return paxos.get("mutable")["items"]

    assert nodes[0].run(mutate_after_put_and_get) == [1, 2]
    assert [node.run(paxos.get, "mutable")["items"] for node in nodes] == [[1, 2]] * 3
    assert nodes[0].run(paxos.get, "mutable", stale=True)["items"] == [1, 2]  # the proposer's own acceptor


def test_an_oversized_value_or_change_is_refused_and_the_proposer_survives(cluster: Cluster):
    from paxtor.paxos.wire_format import MAX_ENCODED_SIZE

    nodes = cluster.start_all()
    _ready(*nodes)
    big = b"x" * (MAX_ENCODED_SIZE + 1)
    proposer = nodes[0].run(whereis, "paxos_proposer")
    with pytest.raises(ValueError, match="max_request_bytes"):
        nodes[0].run(paxos.put, "big", big)
    with pytest.raises(ValueError, match="max_request_bytes"):
        nodes[0].run(paxos.propose, "big", lambda register: register.claim(big))
    assert nodes[0].run(whereis, "paxos_proposer") == proposer  # not crashed and restarted
    assert nodes[1].run(paxos.epoch_of, "big") == 0  # nothing was written
    assert nodes[0].run(paxos.put, "small", 1) == 1


def test_a_nack_with_the_other_voters_down_retries_at_once_not_at_the_attempt_timeout(cluster: Cluster):
    # node3 restarts (its promise floor now covers node1's cached one-round-trip ballots), then
    # node2 goes down: node3's nack alone decides the attempt, since node2 cannot answer.
    cluster.configure(attempt_timeout=60.0)  # far past the gets' own timeout
    nodes = cluster.start_all(durability="fsync")
    _ready(*nodes)
    for i in range(3):
        assert nodes[0].run(paxos.put, ("cached", i), i) == i  # node1 wrote last: one round trip next
    cluster.stop("node3")
    cluster.start(3, durability="fsync")
    _ready(nodes[0])
    cluster.stop("node2")
    assert [nodes[0].run(paxos.get, ("cached", i), timeout=10) for i in range(3)] == [0, 1, 2]


def test_keys_equal_in_python_are_one_register_on_every_node(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    assert nodes[0].run(paxos.put, 1, "one") == "one"
    assert nodes[1].run(paxos.get, True) == "one"
    assert nodes[2].run(paxos.get, 1.0) == "one"
    assert nodes[2].run(paxos.put, 1.0, "another") == "one"  # the same key: put keeps the value
    assert nodes[0].run(paxos.put, ("zero", -0.0), "signed") == "signed"
    assert nodes[1].run(paxos.get, ("zero", 0)) == "signed"
    assert nodes[1].run(paxos.get, frozenset({1, 2}), default=None) is None
    nodes[1].run(paxos.put, frozenset({1.0, 2}), "set")
    assert nodes[2].run(paxos.get, frozenset({True, 2})) == "set"


def test_a_nan_key_is_refused_at_once(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    # at once: not a round that waits out its timeout and says "no quorum"
    for call_ in (paxos.get, paxos.epoch_of):
        with pytest.raises(ValueError, match="NaN"):
            nodes[0].run(call_, ("k", float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        nodes[0].run(paxos.put, float("nan"), 1)
    with pytest.raises(ValueError, match="NaN"):
        nodes[0].run(paxos.propose, (float("nan"),), lambda r: r)
    assert nodes[1].run(paxos.put, "fine", 1) == 1



def _puts(keys: list[Any]) -> None:
    for key in keys:
        paxos.put(key, "v", bucket="thrifty")


def _connected_voters() -> list[str]:
    from paxtor.actors import call

    return call("paxos_membership", "connected_voters")


def _accepted_here(keys: list[Any]) -> int:
    """How many of `keys` this node's acceptor has accepted a value for."""
    from paxtor.actors import call
    from paxtor.paxos.ballot import Ballot

    return sum(call("paxos_acceptor", ("read", "thrifty", key)).accepted_ballot != Ballot.ZERO for key in keys)


def test_phases_go_first_to_a_quorum_picked_over_every_voter_including_one_that_reconnected(cluster: Cluster):
    """Thrifty phases: a round goes to this node and one other voter picked by the key's
    hash, and no further while they answer. A voter says it votes in a hello that lands
    after its NodeUp (at start, and when it reconnects): the proposer must count it among
    the voters to pick from once it does, or rounds go to every voter."""
    from paxtor.testing import wait_node_down, wait_node_up, wait_until

    cluster.configure(thrifty_after=WAIT)  # no voter gets a phase for being slow to answer
    nodes = cluster.start_all()
    _ready(*nodes)
    everyone = ["node1", "node2", "node3"]

    def check(proposer: int, batch: str) -> None:
        for node in nodes:
            wait_until(lambda node=node: node.run(_connected_voters) == everyone)  # every hello is in
        keys = [(batch, i) for i in range(30)]
        nodes[proposer].run(_puts, keys)
        accepted = [node.run(_accepted_here, keys) for node in nodes]
        others = [count for n, count in enumerate(accepted) if n != proposer]
        assert accepted[proposer] == 30 and sum(others) == 30, accepted  # this node and one other, each time
        assert min(others) >= 5, accepted  # both others picked, by the keys' hash

    check(0, "start")
    check(1, "start, from node2")
    cluster.faults.partition("node2", "node1")
    cluster.faults.partition("node2", "node3")
    wait_node_down(nodes[0], "node2")
    cluster.faults.heal()
    wait_node_up(nodes[0], "node2")
    wait_node_up(nodes[2], "node2")
    check(0, "reconnected")
