"""Bindings and leases on real nodes in one OS process: releases on pid exit (with
the real reason), on a parent's release, at `until`; the lease veto across a
partition (the minority's holder dies with "lease_expired" and the majority
releases only after the silence threshold); a node restarted with a new
incarnation has its old pids' bindings released at once."""

from __future__ import annotations

import time
from typing import Any

from gevent.event import AsyncResult

from paxtor import paxos
from paxtor.actors import Down, monitor, receive, self_pid, send, spawn

from . import helpers
from .conftest import WAIT, Cluster

BUCKET = "bindings_test"


def _ready(*nodes: Any) -> None:
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)


def _claim_on(node_name: str, key: Any, value: Any) -> Any:
    """A process on `node_name` binds `key` to itself and parks; returns its pid."""
    spawn(helpers.claim_and_park, key, value, BUCKET, self_pid(), node=node_name)
    msg = receive(lambda m: isinstance(m, tuple) and m[0] == "claimed" and m[1] == key, timeout=WAIT)
    assert msg[2] == value
    return msg[3]


def _down_watch(node_name: str, pid: Any) -> AsyncResult:
    """(reason, monotonic time) of `pid`'s Down as seen from a process on `node_name`."""
    result: AsyncResult = AsyncResult()

    def watch() -> None:
        ref = monitor(pid)
        down = receive(lambda m: isinstance(m, Down) and m.ref == ref)
        result.set((down.reason, time.monotonic()))

    spawn(watch, node=node_name)
    return result


def test_a_bound_key_is_released_with_the_pids_real_exit_reason(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    releases = helpers.Releases(BUCKET)
    releases.start_bucket(nodes)
    owner = _claim_on("node2", "job", "running")
    assert nodes[0].run(lambda: paxos.pid_of("job", bucket=BUCKET)) == owner
    assert nodes[2].run(lambda: paxos.node_of("job", bucket=BUCKET)) == "node2"
    send(owner, ("exit", "finished_ok"))
    driver, chosen = releases.wait("job")
    assert driver == "node2"  # the owner's node saw the exit and went first
    assert chosen.value == ("ended", "finished_ok") and chosen.binding is None
    assert nodes[2].run(lambda: paxos.get("job", bucket=BUCKET)) == ("ended", "finished_ok")
    assert nodes[0].run(lambda: paxos.epoch_of("job", bucket=BUCKET)) == 2


def test_parent_and_until_bindings_end_their_values(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    releases = helpers.Releases(BUCKET)
    releases.start_bucket(nodes)
    owner = _claim_on("node1", "parent", "p")
    assert nodes[1].run(lambda: paxos.put("child", "c", parent="parent", bucket=BUCKET)) == "c"
    deadline_ms = int(time.time() * 1000) + 300
    assert nodes[2].run(lambda: paxos.put("short", "s", until=deadline_ms, bucket=BUCKET)) == "s"
    _, chosen = releases.wait("short")
    assert chosen.value == ("ended", "until_passed")
    assert time.time() * 1000 >= deadline_ms
    assert nodes[0].run(lambda: paxos.get("child", bucket=BUCKET)) == "c"  # parent still there
    send(owner, ("exit", "done"))
    _, chosen = releases.wait("parent")
    assert chosen.value == ("ended", "done")
    _, chosen = releases.wait("child")
    assert chosen.value == ("ended", "parent_released")


def test_a_gracefully_stopped_nodes_bindings_go_at_once(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    releases = helpers.Releases(BUCKET)
    releases.start_bucket(nodes)
    _claim_on("node3", "on3", "x")
    cluster.stop("node3")  # its processes exit "shutdown": a real reason, told to the peers
    driver, chosen = releases.wait("on3")
    assert driver in ("node1", "node2")
    assert chosen.value == ("ended", "shutdown")


def test_partition_minority_holder_dies_and_majority_releases_after_the_veto(cluster: Cluster):
    # silence threshold = 1.0 * 1.05**2 + 0.3 = 1.40 s; connections drop after 0.5 s
    cluster.configure(dist=dict(heartbeat_timeout=0.5), lease=1.0, margin=0.3, heartbeat_interval=0.1)
    silence = 1.0 * 1.05**2 + 0.3
    nodes = cluster.start_all()
    _ready(*nodes)
    releases = helpers.Releases(BUCKET)
    releases.start_bucket(nodes)
    owner = _claim_on("node3", "leased", "mine")
    killed = _down_watch("node3", owner)  # seen on the owner's side
    cut_off = _down_watch("node1", owner)  # seen by the majority
    t0 = time.monotonic()
    cluster.faults.partition("node3", "node1")
    cluster.faults.partition("node3", "node2")
    reason, seen_at = cut_off.get(timeout=WAIT)
    assert reason == "noconnection"
    # the majority knows the owner is unreachable, but its lease may still hold: vetoed
    assert seen_at - t0 < silence - 0.3, "connection loss was detected too late to test the veto"
    assert nodes[0].run(lambda: paxos.pid_of("leased", bucket=BUCKET)) == owner
    reason, killed_at = killed.get(timeout=WAIT)
    assert reason == "lease_expired"  # the minority's holder self-fences
    driver, chosen = releases.wait("leased")
    elapsed = time.monotonic() - t0
    assert driver in ("node1", "node2")
    assert chosen.value == ("ended", "noconnection")
    assert elapsed >= silence - 0.1  # not before the acceptors' silence threshold
    assert nodes[1].run(lambda: paxos.get("leased", bucket=BUCKET)) == ("ended", "noconnection")
    # the minority cannot do anything meanwhile, and can again once healed
    cluster.faults.heal()
    nodes[2].run(paxos.wait_for_quorum, WAIT)
    assert nodes[2].run(lambda: paxos.get("leased", bucket=BUCKET)) == ("ended", "noconnection")


def test_a_restarted_durable_node_keeps_promises_and_frees_its_old_pids(cluster: Cluster):
    cluster.configure(lease=2.0, margin=0.5, heartbeat_interval=0.2)  # silence 2.7 s: far off
    nodes = cluster.start_all(durability="fsync")
    _ready(*nodes)
    releases = helpers.Releases(BUCKET)
    releases.start_bucket(nodes)
    owner = _claim_on("node2", "durable", "v")
    before = nodes[1].run(_read_local, "durable")
    first_incarnation = nodes[1].dist.incarnation
    # a crash, as far as the peers can tell: cut off first, so no goodbye or exit gets out
    cluster.faults.partition("node2", "node1")
    cluster.faults.partition("node2", "node3")
    cluster.stop("node2")
    cluster.faults.heal()
    node2 = cluster.start(2, durability="fsync")
    assert node2.dist.incarnation > first_incarnation
    after = node2.run(_read_local, "durable")
    assert after.promised >= before.promised and after.accepted_ballot >= before.accepted_ballot
    assert after.accepted.epoch >= 1  # its promises and accepts survived the restart
    releases.start_bucket([node2])
    # released because its node restarted (the restarted node vouches "noproc"; or a
    # peer's "noconnection" release passes the veto once it sees the new incarnation),
    # well before the 2.7 s silence threshold could have let it through
    _, chosen = releases.wait("durable", timeout=2.0)
    assert chosen.value in (("ended", "noproc"), ("ended", "noconnection"))
    assert owner.incarnation == first_incarnation


def _read_local(key: Any) -> Any:
    from paxtor.actors import call

    return call("paxos_acceptor", ("read", BUCKET, key))


def test_quorum_log_lines(cluster: Cluster):
    from structlog.testing import capture_logs

    from paxtor.testing import wait_until

    cluster.durability = "fsync"  # node2 restarts below: a voter that keeps its state votes at once
    _ready(*cluster.start_all())  # a new cluster is founded once all its voters are up
    cluster.stop("node3")
    cluster.stop("node2")

    def lines() -> list[tuple[str, str]]:
        return [(e["event"], e["message"]) for e in logs if e.get("node") == "node1" and "message" in e]

    with capture_logs() as logs:
        cluster.start(2)  # node1 counts it once node2 says it votes (its hello)
        wait_until(lambda: lines(), WAIT)
        cluster.stop("node2")
        wait_until(lambda: len(lines()) == 2, WAIT)
    assert lines() == [
        ("quorum_reached", "Quorum reached. [cluster:2/3]"),
        ("quorum_lost", "Quorum lost. [cluster:1/3]"),
    ]


def test_an_unheld_tenure_is_not_killed_on_lease_loss(cluster: Cluster):
    cluster.configure(dist=dict(heartbeat_timeout=0.5), lease=1.0, margin=0.3, heartbeat_interval=0.1)
    nodes = cluster.start_all()
    _ready(*nodes)
    spawn(helpers.claim_and_park, "held", "a", BUCKET, self_pid(), node="node3")
    held = receive(lambda m: isinstance(m, tuple) and m[0] == "claimed", timeout=WAIT)[3]
    spawn(helpers.claim_unhold_and_park, "unheld", "b", BUCKET, self_pid(), node="node3")
    unheld = receive(lambda m: isinstance(m, tuple) and m[0] == "unheld", timeout=WAIT)[2]
    held_down = _down_watch("node3", held)
    unheld_down = _down_watch("node3", unheld)
    cluster.faults.partition("node3", "node1")
    cluster.faults.partition("node3", "node2")
    assert held_down.get(timeout=WAIT)[0] == "lease_expired"  # the lease loss has happened...
    # ...and spared the process that no longer owns anything (an absence: give a kill
    # from the same lease loss ample time to show)
    unheld_down.wait(timeout=0.5)
    assert not unheld_down.ready()
    assert nodes[2].run(lambda: paxos.lease_term()) is None
    cluster.faults.heal()


def test_a_vetoed_release_does_not_hold_up_other_rounds_on_its_key(cluster: Cluster):
    # one-way block node3 -> node1: node1 drops node3 and tries to release node3's
    # binding, but node2 still hears node3, so that release is vetoed for as long as
    # the block lasts. Rounds on the same key from node1 must not wait behind it.
    cluster.configure(dist=dict(heartbeat_timeout=0.5), heartbeat_interval=0.1)
    nodes = cluster.start_all()
    _ready(*nodes)
    owner = _claim_on("node3", "vetoed", "mine")
    cut_off = _down_watch("node1", owner)
    cluster.faults.block("node3", "node1")
    reason, _ = cut_off.get(timeout=WAIT)
    assert reason == "noconnection"

    def reads_meanwhile() -> list[float]:
        took = []
        until = time.monotonic() + 2.5
        while time.monotonic() < until:
            start = time.monotonic()
            assert paxos.pid_of("vetoed", bucket=BUCKET, timeout=1.0) == owner  # never released
            took.append(time.monotonic() - start)
        return took

    took = nodes[0].run(reads_meanwhile)
    assert len(took) > 10 and max(took) < 1.0
    cluster.faults.heal()


def test_a_holder_whose_tenure_moved_on_without_it_is_killed(cluster: Cluster):
    # node1 holds a key for a local process. A round elsewhere ends that tenure (here a
    # release that claims a real exit reason; in life, a noconnection release while node1
    # was paused). The first round on node1 that sees the key shows its keeper a tenure
    # that is not its holder's: the holder, which never gave the key up, is killed (as a
    # lease loss would have), not merely forgotten.
    nodes = cluster.start_all()
    _ready(*nodes)
    owner = _claim_on("node1", "moved", "mine")
    down = _down_watch("node2", owner)

    def take_over() -> Any:
        ended = paxos.EndedBinding(1, paxos.Binding(pid=owner), "normal")
        hand = lambda r: r.handoff("theirs", node="node2")  # noqa: E731
        return paxos.propose("moved", hand, bucket=BUCKET, ended=ended)

    assert nodes[1].run(take_over).epoch == 2
    assert not down.ready()  # node1 has not seen it yet
    assert nodes[0].run(paxos.get, "moved", bucket=BUCKET) == "theirs"
    reason, _ = down.get(timeout=WAIT)
    assert reason == "lease_expired"
