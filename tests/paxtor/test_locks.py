"""`paxtor.lock` on three real nodes in this OS process: mutual exclusion with
growing tokens, reentrancy, release on exit / kill / crash / node stop, FIFO
waiters, timeouts that leave nothing behind, try_lock, locked(), dead waiters,
and a holder that loses its lease."""

from __future__ import annotations

import time
from typing import Any

import gevent
import pytest
from paxtor_cluster import WAIT, Cluster
from paxtor_helpers import lock_and_park, lock_and_report

import paxtor
from paxtor import paxos
from paxtor.actors import (
    Down,
    ReceiveTimeout,
    exit,
    monitor,
    receive,
    self_pid,
    send,
    spawn,
    spawn_monitor,
)
from paxtor.actors.primitives import make_ref
from paxtor.locks.api import LOCKS_BUCKET, LockNotHeld
from paxtor.locks.messages import LockGranted
from paxtor.locks.register import acquire, is_queued, owner_of, waiters_of
from paxtor.paxos.register import Register, identity
from paxtor.rounds import paxos_key

NODES = ("node1", "node2", "node3")


def read_lock(cluster: Cluster, key: Any, on: str = "node1") -> Register:
    """The lock's register, read by a linearizable round."""
    return cluster[on].run(paxos.propose, paxos_key(key), identity, bucket=LOCKS_BUCKET)


def wait_until(check: Any, timeout: float = WAIT) -> None:
    """Poll `check` until it is true (only for states no message announces)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.02)


def expect(match: Any, timeout: float = WAIT) -> Any:
    return receive(match, timeout=timeout)


def locked_msg(pid: Any = None) -> Any:
    return lambda m: isinstance(m, tuple) and m[0] == "locked" and (pid is None or m[1] == pid)


def park_holder(cluster: Cluster, key: Any, on: str) -> tuple[Any, int]:
    """A process on `on` that holds the lock on `key`; (pid, token)."""
    pid = spawn(lock_and_park, key, self_pid(), node=on)
    msg = expect(locked_msg(pid))
    return pid, msg[2]


def test_at_most_one_holder_and_tokens_strictly_increase(cluster: Cluster) -> None:
    inside: list[Any] = []
    grants: list[tuple[int, Any]] = []
    overlaps: list[Any] = []

    def worker(rounds: int) -> None:
        for _ in range(rounds):
            token = paxtor.lock("shared")
            inside.append(self_pid())
            if len(inside) > 1:
                overlaps.append(list(inside))
            grants.append((token, self_pid()))
            gevent.sleep(0.001)  # yield inside the critical section
            inside.remove(self_pid())
            paxtor.unlock("shared")

    workers = [spawn_monitor(worker, 3, node=NODES[i % 3])[1] for i in range(12)]
    for ref in workers:
        down = expect(lambda m, ref=ref: isinstance(m, Down) and m.ref == ref, timeout=60)
        assert down.reason == "normal"
    assert overlaps == []
    assert len(grants) == 36
    tokens = [t for t, _ in grants]
    assert tokens == sorted(tokens) and len(set(tokens)) == 36  # strictly increasing, in grant order
    assert read_lock(cluster, "shared").is_empty


def test_reentrant_same_token_and_one_unlock_releases(cluster: Cluster) -> None:
    def body() -> tuple:
        first = paxtor.lock(("re", 1))
        again = paxtor.lock(("re", 1))
        tried = paxtor.try_lock(("re", 1))
        paxtor.unlock(("re", 1))
        with pytest.raises(LockNotHeld):
            paxtor.unlock(("re", 1))
        return first, again, tried

    first, again, tried = cluster["node2"].run(body)
    assert first == again == tried
    assert read_lock(cluster, ("re", 1)).is_empty
    pid, token = park_holder(cluster, ("re", 1), "node3")
    assert token > first


def test_unlock_by_a_non_owner_is_refused(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "owned", "node1")
    with pytest.raises(LockNotHeld):
        cluster["node2"].run(paxtor.unlock, "owned")
    with pytest.raises(LockNotHeld):
        cluster["node1"].run(paxtor.unlock, "owned")  # same node, another process
    reg = read_lock(cluster, "owned")
    assert owner_of(reg) == holder and reg.epoch == token


@pytest.mark.parametrize("how", ["normal", "crash", "kill", "unlock"])
def test_the_lock_passes_on_when_the_owner_releases_or_exits(cluster: Cluster, how: str) -> None:
    holder, token = park_holder(cluster, "passing", "node3")
    waiter = spawn(lock_and_report, "passing", self_pid(), node="node1")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "passing"))) == 1)
    if how == "normal":
        send(holder, ("exit", "normal"))
    elif how == "crash":
        send(holder, ("exit", RuntimeError("boom")))
    elif how == "kill":
        exit(holder, "kill")
    else:
        send(holder, ("unlock",))
    msg = expect(locked_msg(waiter))
    assert msg[2] == token + 1  # handed over in one round: the next tenure
    reg = read_lock(cluster, "passing")
    assert owner_of(reg) == waiter and waiters_of(reg) == ()


def test_the_lock_passes_on_when_the_owners_node_stops(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "stopping", "node3")
    waiter = spawn(lock_and_report, "stopping", self_pid(), node="node1")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "stopping"))) == 1)
    cluster.stop("node3")
    msg = expect(locked_msg(waiter))
    assert msg[2] > token


def test_waiters_are_served_in_fifo_order_across_nodes(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "fifo", "node2")
    waiters = []
    for i in range(6):
        waiters.append(spawn(lock_and_report, "fifo", self_pid(), node=NODES[(i * 2) % 3]))
        wait_until(lambda n=i + 1: len(waiters_of(read_lock(cluster, "fifo"))) == n)
    assert [w[0] for w in waiters_of(read_lock(cluster, "fifo"))] == waiters
    send(holder, ("exit", "normal"))
    served = []
    for _ in waiters:
        msg = expect(locked_msg())
        served.append((msg[1], msg[2]))
        send(msg[1], ("exit",))
    assert [pid for pid, _ in served] == waiters
    assert [t for _, t in served] == list(range(token + 1, token + 7))


def test_a_timeout_leaves_no_waiter_behind(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "slow", "node1")

    def give_up() -> tuple:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            paxtor.lock("slow", timeout=0.3)
        took = time.monotonic() - started
        # nothing stale left in the mailbox either, even after the holder leaves
        return took, self_pid()

    took, pid = cluster["node2"].run(give_up)
    assert 0.3 <= took < 3.0
    assert waiters_of(read_lock(cluster, "slow")) == ()
    send(holder, ("exit", "normal"))
    wait_until(lambda: read_lock(cluster, "slow").is_empty)


def test_a_lock_handed_to_a_process_no_longer_waiting_passes_on(cluster: Cluster) -> None:
    """The race of a timeout: the lock reaches a live process that gave up on it.
    Its node's agent sees it is not waiting for that request and releases it."""
    holder, token = park_holder(cluster, "race", "node1")
    key = paxos_key("race")

    def queue_without_waiting(reply_to: Any) -> None:  # queued, but not waiting for it
        paxos.propose(key, acquire(self_pid(), make_ref()), bucket=LOCKS_BUCKET)
        send(reply_to, ("queued", self_pid()))
        receive(lambda m: m == ("exit",))

    spawn(queue_without_waiting, self_pid(), node="node2")
    _, slow = expect(lambda m: isinstance(m, tuple) and m[0] == "queued")
    next_one = spawn(lock_and_report, "race", self_pid(), node="node3")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "race"))) == 2)
    send(holder, ("unlock",))
    msg = expect(locked_msg(next_one))
    assert msg[2] == token + 2  # one tenure reached the process that was not waiting, and passed on
    assert cluster["node2"].run(lambda: paxtor.whereis("nothing")) is None  # the node is fine


def test_withdrawing_a_request_that_won_releases_it(cluster: Cluster) -> None:
    """What a waiter that timed out does when its request has just won."""
    from paxtor.locks.agent import withdraw_request
    from paxtor.rounds import Deadline

    holder, token = park_holder(cluster, "withdrawn", "node1")
    key = paxos_key("withdrawn")
    ref = cluster["node2"].run(make_ref)
    next_one = spawn(lock_and_report, "withdrawn", self_pid(), node="node3")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "withdrawn"))) == 1)
    send(holder, ("exit", "normal"))
    msg = expect(locked_msg(next_one))
    # a request that lost, withdrawn: nothing changes for the owner
    cluster["node2"].run(withdraw_request, holder, key, ref, "lock_timeout", Deadline(WAIT))
    reg = read_lock(cluster, "withdrawn")
    assert owner_of(reg) == next_one and reg.epoch == msg[2]
    grant = reg.value[0]
    # the owner's own request withdrawn for an earlier tenure (a late wake-up's epoch): the
    # tenure it holds now stays
    cluster["node3"].run(withdraw_request, next_one, key, grant, "abandoned", Deadline(WAIT), epoch=reg.epoch - 1)
    again = read_lock(cluster, "withdrawn")
    assert owner_of(again) == next_one and again.epoch == msg[2]
    # the owner's own request withdrawn as "timed out": released, it passes on
    waiter = spawn(lock_and_report, "withdrawn", self_pid(), node="node1")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "withdrawn"))) == 1)
    cluster["node3"].run(withdraw_request, next_one, key, grant, "lock_timeout", Deadline(WAIT))
    assert expect(locked_msg(waiter))[2] == msg[2] + 1


def test_try_lock(cluster: Cluster) -> None:
    token = cluster["node1"].run(paxtor.try_lock, "try")  # free: taken, then released by the exit
    assert isinstance(token, int) and token >= 1
    wait_until(lambda: read_lock(cluster, "try").is_empty)
    holder, held = park_holder(cluster, "try", "node2")
    assert held == token + 1
    assert cluster["node3"].run(paxtor.try_lock, "try") is None
    assert waiters_of(read_lock(cluster, "try")) == ()  # never queues


def test_locked_releases_at_the_end_of_the_block_unless_held_before(cluster: Cluster) -> None:
    def body() -> tuple:
        with paxtor.locked("block") as token:
            inner = paxos.propose(paxos_key("block"), identity, bucket=LOCKS_BUCKET)
        after = paxos.propose(paxos_key("block"), identity, bucket=LOCKS_BUCKET)
        with pytest.raises(ValueError):
            with paxtor.locked("block"):
                raise ValueError("inside")
        after_error = paxos.propose(paxos_key("block"), identity, bucket=LOCKS_BUCKET)
        outer = paxtor.lock("block")
        with paxtor.locked("block") as nested:
            pass
        still = paxos.propose(paxos_key("block"), identity, bucket=LOCKS_BUCKET)
        return (
            token,
            owner_of(inner) == self_pid(),
            after.is_empty,
            after_error.is_empty,
            outer,
            nested,
            owner_of(still) == self_pid(),
        )

    token, held_inside, free_after, free_after_error, outer, nested, still_held = cluster["node3"].run(body)
    assert held_inside and free_after and free_after_error
    assert outer == nested and still_held  # a nested block keeps the outer hold


def test_a_dead_waiter_leaves_the_queue(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "dying", "node1")
    doomed = spawn(lock_and_report, "dying", self_pid(), node="node2")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "dying"))) == 1)
    exit(doomed, "kill")
    wait_until(lambda: waiters_of(read_lock(cluster, "dying")) == ())
    send(holder, ("exit", "normal"))
    wait_until(lambda: read_lock(cluster, "dying").is_empty)  # nobody to hand it to


def test_a_handoff_to_a_dead_waiter_passes_on(cluster: Cluster) -> None:
    """A waiter no lock agent knows about dies while queued: the binding machinery
    releases the handoff to it and the lock reaches the next waiter."""
    holder, token = park_holder(cluster, "ghost", "node1")
    key = paxos_key("ghost")

    def queue_and_die() -> None:
        paxos.propose(key, acquire(self_pid(), make_ref()), bucket=LOCKS_BUCKET)

    ghost_ref = spawn_monitor(queue_and_die, node="node2")[1]
    expect(lambda m: isinstance(m, Down) and m.ref == ghost_ref)
    heir = spawn(lock_and_report, "ghost", self_pid(), node="node3")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "ghost"))) == 2)
    send(holder, ("unlock",))
    msg = expect(locked_msg(heir))
    assert msg[2] == token + 2  # one tenure went to the dead waiter and was released


def test_no_stale_wakeup_is_left_in_the_mailbox(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "stale", "node1")

    def wait_then_check() -> bool:
        with pytest.raises(TimeoutError):
            paxtor.lock("stale", timeout=0.2)
        paxtor.try_lock("other")  # any later call
        try:
            receive(lambda m: isinstance(m, LockGranted), timeout=0.3)
        except ReceiveTimeout:
            return True
        return False

    assert cluster["node2"].run(wait_then_check)


def test_a_holder_that_loses_its_lease_is_killed_and_locks_wait_without_quorum(cluster: Cluster) -> None:
    holder, token = park_holder(cluster, "partitioned", "node1")
    ref = monitor(holder)
    cluster.stop("node2")
    cluster.stop("node3")
    down = expect(lambda m: isinstance(m, Down) and m.ref == ref)
    assert down.reason == "lease_expired"

    def try_alone() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            paxtor.lock("partitioned", timeout=0.5)
        took = time.monotonic() - started
        with pytest.raises(paxos.NoQuorum):
            paxtor.try_lock("partitioned")  # cannot tell: it says so rather than guess
        return took

    assert 0.5 <= cluster["node1"].run(try_alone) < 3.0


def test_bad_keys_and_timeouts_are_refused_at_the_call(cluster: Cluster) -> None:
    def body() -> None:
        with pytest.raises(TypeError, match="wire"):
            paxtor.lock(object())
        for bad in (-1, float("nan"), "1", True):
            with pytest.raises(ValueError, match="timeout"):
                paxtor.lock("k", timeout=bad)

    cluster["node1"].run(body)
    assert read_lock(cluster, "k").is_empty


def test_equal_set_keys_are_one_lock_on_every_node(cluster: Cluster) -> None:
    # frozenset([1, 9]) and frozenset([9, 1]) iterate in different orders; one lock all the same.
    holder, token = park_holder(cluster, frozenset([1, 9]), "node2")
    assert cluster["node3"].run(paxtor.try_lock, frozenset([9, 1])) is None
    exit(holder, "kill")
    wait_until(lambda: read_lock(cluster, frozenset([9, 1])).is_empty)
    assert cluster["node3"].run(paxtor.try_lock, frozenset([9, 1])) == token + 1


def test_clients_on_every_node_get_fair_shares_of_a_hot_lock(cluster: Cluster) -> None:
    """Sustained contention from three nodes: no node's waiters starve (PaxosKV
    alone would let the node that wrote last win every race; the key's home
    proposes all its rounds instead)."""
    me = self_pid()

    def client(i: int, seconds: float) -> None:
        count, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            paxtor.lock("hot")
            paxtor.unlock("hot")
            count += 1
        send(me, ("count", i, count))

    for i in range(6):
        spawn(client, i, 1.5, node=NODES[i % 3])
    counts = [receive(lambda m: isinstance(m, tuple) and m[0] == "count", timeout=WAIT)[2] for _ in range(6)]
    assert min(counts) >= 0.5 * max(counts) > 0, counts


def test_a_lock_round_lost_with_the_proposer_fails_its_callers_and_the_home_recovers(cluster: Cluster) -> None:
    """The key's home proposes batches asynchronously; if the node's proposer is gone,
    every caller of a batch gets an error at once instead of waiting forever."""
    from paxtor.actors import Supervisor, call
    from paxtor.locks.messages import LOCK_HOME
    from paxtor.paxos.proposer_server import ProposerServer
    from paxtor.paxos.services import SUPERVISOR_NAME

    key = paxos_key("home-key")

    def home_round() -> tuple[Any, Any]:
        me, ref = self_pid(), make_ref()
        outcome = call(LOCK_HOME, (key, ("acquire", me, ref), 5.0), timeout=WAIT)
        served = outcome[0] == "ok" and (owner_of(outcome[1]) == me or is_queued(outcome[1], me, ref))
        return outcome, served

    node = cluster["node1"]
    (kind, _), served = node.run(home_round)
    assert kind == "ok" and served  # and the home monitors the proposer now
    node.run(Supervisor.terminate_child, SUPERVISOR_NAME, ProposerServer)
    (kind, error), served = node.run(home_round)
    assert kind == "error" and "proposer exited" in str(error) and not served
    node.run(Supervisor.restart_child, SUPERVISOR_NAME, ProposerServer)
    (kind, _), served = node.run(home_round)
    assert kind == "ok" and served


def _lock_unlock(key: Any) -> int:
    token = paxtor.lock(key)
    paxtor.unlock(key)
    return token


def test_a_free_lock_is_collected_and_the_next_owner_still_gets_a_larger_token(tmp_path: Any) -> None:
    """A released lock leaves a tombstone that voters drop after `tombstone_ttl`; the
    bucket's epoch floor keeps the next tenure's fencing token above every earlier one."""
    from paxtor.actors import call
    from paxtor.actors.distribution import stop_all_distributed
    from paxtor.paxos.ballot import Ballot

    c = Cluster(tmp_path)
    c.configure(tombstone_ttl=0.3)
    try:
        c.start_all()
        tokens = [c[n].run(_lock_unlock, ("collected", 1)) for n in NODES]
        assert tokens == sorted(set(tokens))
        key = paxos_key(("collected", 1))

        def dropped_everywhere() -> bool:
            return all(
                c[n].run(call, "paxos_acceptor", ("read", LOCKS_BUCKET, key)).accepted_ballot == Ballot.ZERO
                for n in NODES
            )

        wait_until(dropped_everywhere)
        assert c["node2"].run(_lock_unlock, ("collected", 1)) > tokens[-1]
    finally:
        c.stop_all()
        stop_all_distributed()


def test_keys_equal_in_python_are_one_lock_and_a_nan_key_is_refused(cluster: Cluster) -> None:
    holder, _ = park_holder(cluster, 1, "node2")
    for same in (True, 1.0):
        assert cluster["node3"].run(paxtor.try_lock, same) is None
    park_holder(cluster, ("balance", 0.0), "node1")
    assert cluster["node3"].run(paxtor.try_lock, ("balance", -0.0)) is None
    assert cluster["node3"].run(paxtor.try_lock, ("balance", 0.5)) is not None  # unequal: another lock
    for bad in (float("nan"), ("k", float("nan")), {"k": float("nan")}):
        with pytest.raises(ValueError, match="NaN"):
            cluster["node1"].run(paxtor.lock, bad, 1.0)
    exit(holder, "kill")


def test_a_wake_up_no_later_than_the_queued_answer_is_not_trusted(cluster: Cluster) -> None:
    """A wake-up for a handoff no later than the register the waiter last saw it queued
    in is stale (the lock reached the request, then left it): it must not grant."""
    holder, token = park_holder(cluster, "stale-wake", "node1")
    waiter = spawn(lock_and_report, "stale-wake", self_pid(), node="node2")
    wait_until(lambda: len(waiters_of(read_lock(cluster, "stale-wake"))) == 1)
    reg = read_lock(cluster, "stale-wake")
    ((pid, ref),) = waiters_of(reg)
    assert pid == waiter
    # the holder's own epoch, from the waiter's node (a local message, as the agent sends it)
    cluster["node2"].run(send, waiter, LockGranted(paxos_key("stale-wake"), reg.epoch, ref))
    with pytest.raises(ReceiveTimeout):  # without the check it answers at once, with the holder's token
        receive(locked_msg(waiter), timeout=1.0)
    assert owner_of(read_lock(cluster, "stale-wake")) == holder
    send(holder, ("exit", "normal"))
    assert expect(locked_msg(waiter))[2] == token + 1
