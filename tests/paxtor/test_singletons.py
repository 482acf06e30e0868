"""`paxtor.name` on three real nodes in this OS process: exactly one process
per key however many first calls race, re-activation with a new pid, placement
over the nodes, start failures, the Via protocol from every node."""

from __future__ import annotations

from typing import Any

import pytest
from paxtor_cluster import WAIT, Cluster
from paxtor_helpers import Counter, Failing, Reporter

import paxtor
from paxtor import paxos
from paxtor.actors import (
    Down,
    GenServer,
    Via,
    call,
    cast,
    exit,
    monitor,
    receive,
    self_pid,
    send,
    spawn,
)
from paxtor.actors.messages import AlreadyStarted, ReceiveTimeout
from paxtor.paxos.register import Register, identity
from paxtor.rounds import paxos_key
from paxtor.singletons.api import NAMES_BUCKET, SINGLETONS, SingletonName
from paxtor.singletons.name_server import SingletonStartError
from paxtor.singletons.register import RUNNING, running_pid, state_of

NODES = ("node1", "node2", "node3")


def read_name(cluster: Cluster, key: Any, on: str = "node1") -> Register:
    return cluster[on].run(paxos.propose, paxos_key(key), identity, bucket=NAMES_BUCKET)


def started_msg(m: Any) -> bool:
    return isinstance(m, tuple) and m[0] == "started"


def drain_started(timeout: float = 0.3) -> list[Any]:
    """Every "started" report that arrives within `timeout` after the last one."""
    got = []
    while True:
        try:
            got.append(receive(started_msg, timeout=timeout))
        except ReceiveTimeout:
            return got


def test_name_starts_nothing_and_checks_the_spec_at_once(cluster: Cluster) -> None:
    def body() -> Any:
        via = paxtor.name("apple", Counter)
        assert via == paxtor.name("apple", "paxtor_helpers:Counter")
        with pytest.raises(TypeError, match="child spec"):
            paxtor.name("x", 42)
        with pytest.raises(TypeError, match="importable"):
            paxtor.name("x", lambda: None)
        with pytest.raises(TypeError, match="cannot use"):
            paxtor.name("x", "paxtor_helpers:NoSuchThing")
        with pytest.raises(TypeError, match="wire"):
            paxtor.name("x", (Counter, object()))
        return via

    via = cluster["node1"].run(body)
    assert isinstance(via, Via) and via.module is SINGLETONS
    assert via.key == SingletonName("apple", "paxtor_helpers:Counter", ())
    assert read_name(cluster, "apple").is_empty
    assert all(cluster[n].run(paxtor.registered) == [] for n in NODES)


def test_fifty_concurrent_first_calls_from_three_nodes_start_exactly_one(cluster: Cluster) -> None:
    me = self_pid()
    via_spec = (Reporter, (me, 0.2))  # a slow init: a second start would overlap it

    def first_call(i: int) -> None:
        via = paxtor.name("only-one", via_spec)
        send(me, ("got", i, call(via, "pid", timeout=WAIT * 3)))

    for i in range(50):
        spawn(first_call, i, node=NODES[i % 3])
    answers = [receive(lambda m: isinstance(m, tuple) and m[0] == "got", timeout=WAIT * 3) for _ in range(50)]
    pids = {a[2] for a in answers}
    assert len(pids) == 1
    starts = [receive(started_msg, timeout=WAIT)] + drain_started(0.5)
    assert len(starts) == 1 and starts[0][1] in pids
    reg = read_name(cluster, "only-one")
    assert state_of(reg) == RUNNING and running_pid(reg) in pids


def test_the_counter_of_the_seed_from_every_node(cluster: Cluster) -> None:
    def inc(key: str) -> int:
        return call(paxtor.name(key, Counter), "inc")

    assert [cluster[n].run(inc, "apple") for n in NODES] == [1, 2, 3]
    assert [cluster[n].run(inc, "banana") for n in NODES] == [1, 2, 3]
    assert cluster["node2"].run(inc, "apple") == 4
    apple = cluster["node1"].run(paxtor.whereis, paxtor.name("apple", Counter))
    assert all(cluster[n].run(paxtor.whereis, "apple") == apple for n in NODES)  # a bare key: lookup only


def test_whereis_starts_it_and_a_bare_key_only_looks(cluster: Cluster) -> None:
    assert cluster["node1"].run(paxtor.whereis, "pear") is None
    assert read_name(cluster, "pear").is_empty  # looking started nothing
    pid = cluster["node2"].run(paxtor.whereis, paxtor.name("pear", Counter))
    assert pid is not None
    assert cluster["node3"].run(paxtor.whereis, "pear") == pid


def test_reactivation_after_death_gives_a_new_pid_and_never_the_old_one(cluster: Cluster) -> None:
    me = self_pid()
    spec = (Reporter, (me, 0))

    def where() -> Any:
        return call(paxtor.name("phoenix", spec), "pid")

    first = cluster["node1"].run(where)
    assert receive(started_msg, timeout=WAIT)[1] == first
    for n in NODES:
        assert cluster[n].run(where) == first  # every node has it cached now
    ref = monitor(first)
    exit(first, "kill")
    receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT)
    second = cluster["node2"].run(where)
    assert second != first
    assert receive(started_msg, timeout=WAIT)[1] == second
    for n in NODES:
        assert cluster[n].run(where) == second
    assert drain_started() == []
    reg = read_name(cluster, "phoenix")
    assert running_pid(reg) == second and reg.epoch == 4  # claim, child, claim, child


def test_a_normal_stop_releases_the_key_too(cluster: Cluster) -> None:
    via_of = lambda: paxtor.name("stopper", Counter)  # noqa: E731
    first = cluster["node3"].run(lambda: paxtor.whereis(via_of()))
    ref = monitor(first)
    assert cluster["node1"].run(lambda: call(via_of(), "stop")) == "stopping"
    receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT)
    second = cluster["node1"].run(lambda: paxtor.whereis(via_of()))
    assert second != first
    assert cluster["node1"].run(lambda: call(via_of(), "inc")) == 1  # a fresh process


def test_placement_spreads_keys_over_the_nodes_and_registered_lists_them(cluster: Cluster) -> None:
    def start(i: int) -> Any:
        return call(paxtor.name(("spread", i), Counter), "where")

    homes = [cluster[NODES[i % 3]].run(start, i) for i in range(24)]
    assert set(homes) == set(NODES)
    hosted = {n: dict(cluster[n].run(paxtor.registered)) for n in NODES}
    assert sum(len(h) for h in hosted.values()) == 24
    for i, home in enumerate(homes):
        assert ("spread", i) in hosted[home]
    # deterministic: any node asks the same home for a key
    assert cluster["node2"].run(start, 5) == homes[5]


def test_a_failed_start_raises_in_the_caller_and_releases_the_claim(cluster: Cluster) -> None:
    def use(spec: Any) -> Any:
        return paxtor.whereis(paxtor.name("fragile", spec))

    with pytest.raises(SingletonStartError) as info:
        cluster["node2"].run(use, (Failing, "not today"))
    assert "not today" in str(info.value.reason)
    reg = read_name(cluster, "fragile")
    assert reg.is_empty and reg.epoch == 1  # claimed once, then released
    with pytest.raises(SingletonStartError):  # through call(), from another node: the same error
        cluster["node1"].run(lambda: call(paxtor.name("fragile", Failing), "inc"))
    assert read_name(cluster, "fragile").epoch == 2
    pid = cluster["node3"].run(use, Counter)  # the key is free for a working spec
    assert pid is not None and running_pid(read_name(cluster, "fragile")) == pid


def test_send_cast_and_monitor_through_a_name(cluster: Cluster) -> None:
    me = self_pid()
    via = paxtor.name("echo", (Reporter, (me, 0)))

    def use() -> Any:
        send(via, ("echo", me, "hello"))
        cast(via, "ignored by a Reporter")  # a cast: nothing comes back, nothing breaks
        return monitor(via)

    cluster["node3"].run(use)
    echo = receive(lambda m: isinstance(m, tuple) and m[0] == "echo", timeout=WAIT)
    assert echo[2] == "hello"
    assert receive(started_msg, timeout=WAIT)[1] == echo[1]


def test_a_singleton_comes_back_elsewhere_when_its_node_stops(cluster: Cluster) -> None:
    def where(key: Any) -> Any:
        return call(paxtor.name(key, Counter), "where")

    key = next(("mover", i) for i in range(100) if cluster["node1"].run(where, ("mover", i)) == "node3")
    before = read_name(cluster, key)
    cluster.stop("node3")
    assert cluster["node1"].run(where, key, timeout=WAIT * 3) in ("node1", "node2")
    after = read_name(cluster, key)
    assert after.epoch > before.epoch


class ViaRegistered(GenServer):
    def handle_call(self, request: Any, caller: Any) -> Any:
        return ("registered", request)


def test_a_gen_server_can_register_under_a_singleton_key(cluster: Cluster) -> None:
    def start() -> Any:
        return ViaRegistered.start(name=Via(SINGLETONS, "by-hand"))

    pid = cluster["node2"].run(start)
    assert cluster["node1"].run(paxtor.whereis, "by-hand") == pid
    assert cluster["node3"].run(lambda: call(Via(SINGLETONS, "by-hand"), "hi")) == ("registered", "hi")
    with pytest.raises(AlreadyStarted):
        cluster["node1"].run(start)
    assert running_pid(read_name(cluster, "by-hand")) == pid


def test_any_start_function_can_be_a_singleton(cluster: Cluster) -> None:
    from paxtor_helpers import start_echo_worker

    me = self_pid()

    def use() -> None:
        send(paxtor.name("plain", start_echo_worker), (me, "hi"))

    cluster["node2"].run(use)
    cluster["node3"].run(use)
    first = receive(lambda m: isinstance(m, tuple) and m[0] == "echoed", timeout=WAIT)
    second = receive(lambda m: isinstance(m, tuple) and m[0] == "echoed", timeout=WAIT)
    assert first[1] == second[1]  # one process, on one node
    assert running_pid(read_name(cluster, "plain")) is not None


def test_a_singleton_that_exits_at_once_runs_once_per_use(cluster: Cluster) -> None:
    # The start worked; the process is gone already: whereis answers (as start_child would),
    # the job ran once, and the next use starts a new one. Not a restart loop.
    me = self_pid()
    via = paxtor.name("short job", ("paxtor_helpers:start_short_job", me))
    first = cluster["node1"].run(paxtor.whereis, via)
    receive(lambda m: isinstance(m, tuple) and m[0] == "job_ran", timeout=WAIT)
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, tuple) and m[0] == "job_ran", timeout=0.3)
    second = cluster["node2"].run(paxtor.whereis, via)
    receive(lambda m: isinstance(m, tuple) and m[0] == "job_ran", timeout=WAIT)
    assert first is not None and second is not None and second != first


def test_keys_equal_in_python_name_one_singleton(cluster: Cluster) -> None:
    one = cluster["node1"].run(paxtor.whereis, paxtor.name(("shard", 1), Counter))
    assert cluster["node2"].run(paxtor.whereis, paxtor.name(("shard", True), Counter)) == one
    assert cluster["node3"].run(paxtor.whereis, ("shard", 1.0)) == one
    with pytest.raises(ValueError, match="NaN"):
        cluster["node3"].run(paxtor.name, ("shard", float("nan")), Counter)
