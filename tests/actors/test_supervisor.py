"""Supervisor: start order, restart strategies and types, intensity, shutdown.

Children are small "recorder" processes that report to the test process
(the collector) when they start and when they are asked to stop. A test
waits for the victim's Down and then makes one call to the supervisor: the
supervisor handles the victim's Exit before that call, and every event of
the restart was sent before its reply, so draining the mailbox afterwards
sees all of them, with no sleeps.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import gevent
import pytest

from paxtor.actors import (
    ChildSpec,
    Exit,
    GenServer,
    ReceiveTimeout,
    Supervisor,
    call,
    exit,
    link,
    monitor,
    receive,
    self_pid,
    send,
    spawn,
    start_child,
    trap_exits,
)
from paxtor.actors.child_spec import ChildStartError
from paxtor.actors.messages import CallError, NoProc, StartError
from paxtor.actors.outcome import Err
from paxtor.actors.primitives import is_alive
from paxtor.actors.supervisor import (
    ChildNotFound,
    RestartIntensity,
    SupervisorError,
    restart_group,
)

WAIT = 5.0  # upper bound for anything that should happen "now"


def pids(sup: Any) -> dict[Any, Any]:
    return {child_id: pid for child_id, pid, _ in Supervisor.which_children(sup)}


def started_abc(recorder: Any, strategy: str = "one_for_one", **options: Any) -> Any:
    sup = Supervisor.start_link([recorder.spec(i) for i in "abc"], strategy=strategy, **options)
    assert recorder.summary() == [("started", "a"), ("started", "b"), ("started", "c")]
    return sup


# -- starting ----------------------------------------------------------------------


def test_children_start_in_order_and_are_listed_in_order(recorder):
    sup = Supervisor.start_link([recorder.spec("a"), recorder.spec("b", type="worker"), recorder.spec("c")])
    events = recorder.drain()
    assert [e[:2] for e in events] == [("started", "a"), ("started", "b"), ("started", "c")]
    children = Supervisor.which_children(sup)
    assert children == [(e[1], e[2], "worker") for e in events]
    assert Supervisor.count_children(sup) == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}


def test_failing_child_stops_the_started_ones_and_start_link_raises(recorder):
    def refuse():
        raise RuntimeError("no database")

    with pytest.raises(ChildStartError, match="child 'b' failed to start") as info:
        Supervisor.start_link([recorder.spec("a"), ChildSpec("b", start=(refuse, ())), recorder.spec("c")])
    assert info.value.child_id == "b"
    assert isinstance(info.value.reason, RuntimeError)
    assert isinstance(info.value, StartError)
    assert recorder.summary() == [("started", "a"), ("stopping", "a")]
    # the caller is not hit by the supervisor's exit: it still receives
    send(self_pid(), "alive")
    assert receive(timeout=WAIT) == "alive"


def _exits() -> None:
    exit("nope")


def _times_out() -> None:
    with gevent.Timeout(0.01):
        gevent.sleep(5)


def test_a_start_function_that_exits_or_times_out_is_a_start_failure(recorder):
    # OTP runs it under `catch`: the supervisor survives at run time, and at init the
    # children already started are stopped before start_link raises.
    sup = Supervisor.start_link([recorder.spec("a")])
    for fn in (_exits, _times_out):
        with pytest.raises(ChildStartError):
            Supervisor.start_child(sup, ChildSpec(fn.__name__, start=(fn, ())))
    assert is_alive(sup) and list(pids(sup)) == ["a"]
    with pytest.raises(ChildStartError) as info:
        Supervisor.start_link([recorder.spec("b"), ChildSpec("c", start=(_exits, ()))])
    assert info.value.child_id == "c" and info.value.reason == "nope"
    assert ("stopping", "b") in recorder.summary()


def test_start_function_must_return_a_pid():
    with pytest.raises(ChildStartError, match="expected a Pid or None"):
        Supervisor.start_link([ChildSpec("x", start=(lambda: "not a pid", ()))])


def test_ignored_child_is_kept_stopped(recorder):
    sup = Supervisor.start_link([ChildSpec("ignored", start=(lambda: None, ())), recorder.spec("a")])
    assert Supervisor.which_children(sup)[0] == ("ignored", None, "worker")
    assert Supervisor.count_children(sup)["active"] == 1


@pytest.mark.parametrize(
    "children, options, error, words",
    [
        ([], {"strategy": "one_for_none"}, ValueError, "strategy must be one of"),
        ([], {"max_restarts": -1}, ValueError, "max_restarts"),
        ([], {"max_seconds": 0}, ValueError, "max_seconds"),
        ("abc", {}, TypeError, "children must be a list"),
        ([42], {}, TypeError, "not a child spec"),
    ],
)
def test_bad_arguments_raise_in_the_caller(children, options, error, words):
    with pytest.raises(error, match=words):
        Supervisor.start_link(children, **options)


def test_duplicate_ids_are_refused(recorder):
    with pytest.raises(ValueError, match="more than one child spec has the id 'a'"):
        Supervisor.start_link([recorder.spec("a"), recorder.spec("a")])
    assert recorder.drain() == []  # nothing was started


def test_genserver_children_by_class_and_class_arg():
    sup = Supervisor.start_link([Counter, ChildSpec.of((Counter, 10), id="ten")])
    (first, p1, _), (second, p2, _) = Supervisor.which_children(sup)
    assert (first, second) == (Counter, "ten")
    assert (call(p1, "get"), call(p2, "get")) == (0, 10)


class Counter(GenServer):
    def init(self, start: int = 0) -> None:
        self.n = start

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "crash":
            raise RuntimeError("counter crashed")
        if request == "get":
            return self.n
        self.n += request
        return self.n


# -- strategies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy, victim, stopped, restarted",
    [
        ("one_for_one", "a", [], ["a"]),
        ("one_for_one", "b", [], ["b"]),
        ("one_for_one", "c", [], ["c"]),
        ("one_for_all", "a", ["c", "b"], ["a", "b", "c"]),
        ("one_for_all", "b", ["c", "a"], ["a", "b", "c"]),
        ("one_for_all", "c", ["b", "a"], ["a", "b", "c"]),
        ("rest_for_one", "a", ["c", "b"], ["a", "b", "c"]),
        ("rest_for_one", "b", ["c"], ["b", "c"]),
        ("rest_for_one", "c", [], ["c"]),
    ],
)
def test_strategy_restarts_the_right_children_in_order(recorder, strategy, victim, stopped, restarted):
    sup = started_abc(recorder, strategy)
    before = pids(sup)
    assert recorder.end(before[victim], "crash") != "normal"
    after = pids(sup)
    events = recorder.drain()
    assert [e[:2] for e in events] == [("stopping", i) for i in stopped] + [("started", i) for i in restarted]
    assert all(reason == "shutdown" for kind, _, reason in events if kind == "stopping")
    for child_id in "abc":
        if child_id in restarted:
            assert after[child_id] != before[child_id]
            assert (("started", child_id, after[child_id])) in events
        else:
            assert after[child_id] == before[child_id]


@pytest.mark.parametrize(
    "restart, how, restarted",
    [
        ("permanent", "normal", True),
        ("permanent", "shutdown", True),
        ("permanent", "crash", True),
        ("permanent", "kill", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", ("shutdown", "done"), False),
        ("transient", "crash", True),
        ("transient", "kill", True),
        ("transient", ("other", "reason"), True),
        ("temporary", "normal", False),
        ("temporary", "crash", False),
        ("temporary", "kill", False),
    ],
)
def test_restart_types(recorder, restart, how, restarted):
    sup = Supervisor.start_link([recorder.spec("a"), recorder.spec("b", restart=restart), recorder.spec("c")])
    before = pids(sup)
    recorder.drain()
    recorder.end(before["b"], how)
    children = Supervisor.which_children(sup)
    events = recorder.drain()
    if restarted:
        assert [e[:2] for e in events] == [("started", "b")]
        assert [c[0] for c in children] == ["a", "b", "c"]
        assert pids(sup)["b"] not in (None, before["b"])
    elif restart == "temporary":
        assert events == []
        assert [c[0] for c in children] == ["a", "c"]  # forgotten
    else:
        assert events == []
        assert children[1] == ("b", None, "worker")  # kept, stopped
    assert (pids(sup)["a"], pids(sup)["c"]) == (before["a"], before["c"])


def test_transient_normal_exit_does_not_restart_the_group(recorder):
    sup = Supervisor.start_link(
        [recorder.spec("a"), recorder.spec("b", restart="transient"), recorder.spec("c")], strategy="one_for_all"
    )
    before = pids(sup)
    recorder.drain()
    recorder.end(before["b"], "normal")
    assert pids(sup) == {**before, "b": None}
    assert recorder.drain() == []


def test_group_restart_drops_temporary_siblings(recorder):
    sup = Supervisor.start_link(
        [recorder.spec("a"), recorder.spec("t", restart="temporary"), recorder.spec("c")], strategy="one_for_all"
    )
    recorder.drain()
    recorder.end(pids(sup)["c"], "crash")
    assert [c[0] for c in Supervisor.which_children(sup)] == ["a", "c"]
    assert recorder.summary() == [("stopping", "t"), ("stopping", "a"), ("started", "a"), ("started", "c")]


def test_group_restart_restarts_children_stopped_by_hand(recorder):
    sup = started_abc(recorder, "one_for_all")
    Supervisor.terminate_child(sup, "a")
    recorder.drain()
    recorder.end(pids(sup)["b"], "crash")
    assert all(pid is not None for pid in pids(sup).values())
    assert recorder.summary() == [("stopping", "c"), ("started", "a"), ("started", "b"), ("started", "c")]


def test_exit_of_an_unknown_linked_process_is_ignored(recorder):
    sup = started_abc(recorder)
    before = pids(sup)

    def linker(sup_pid):
        link(sup_pid)
        exit("some_reason")

    stranger = spawn(linker, sup)
    stranger_ref = monitor(stranger)
    recorder.wait_down(stranger_ref)
    assert pids(sup) == before
    assert recorder.drain() == []


# -- restart intensity -------------------------------------------------------------------


def test_restart_intensity_window_is_pure():
    intensity = RestartIntensity(max_restarts=2, max_seconds=5)
    assert intensity.add_restart(100.0)
    assert intensity.add_restart(101.0)
    assert not intensity.add_restart(104.9)  # 3 within 5 s
    fresh = RestartIntensity(max_restarts=2, max_seconds=5)
    assert fresh.add_restart(100.0) and fresh.add_restart(101.0)
    assert fresh.add_restart(105.5)  # the first one left the window
    assert not RestartIntensity(0, 1).add_restart(0.0)


@pytest.mark.parametrize(
    "strategy, failed, group",
    [
        ("one_for_one", "b", ["b"]),
        ("one_for_all", "b", ["a", "b", "c"]),
        ("rest_for_one", "a", ["a", "b", "c"]),
        ("rest_for_one", "b", ["b", "c"]),
        ("rest_for_one", "c", ["c"]),
    ],
)
def test_restart_group(strategy, failed, group):
    assert restart_group(strategy, ["a", "b", "c"], failed) == group


@pytest.mark.parametrize("max_restarts", [0, 1, 2])
def test_too_many_restarts_stop_everything_with_shutdown(recorder, max_restarts):
    trap_exits(True)
    sup = started_abc(recorder, max_restarts=max_restarts, max_seconds=60)
    sup_ref = monitor(sup)
    for _ in range(max_restarts):
        recorder.end(pids(sup)["b"], "crash")
    pids(sup)  # the supervisor has handled the last exit
    assert recorder.summary() == [("started", "b")] * max_restarts
    recorder.end(pids(sup)["b"], "crash")
    down = recorder.wait_down(sup_ref)
    assert down.reason == "shutdown"
    assert receive(match=lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(sup, "shutdown")
    assert recorder.summary() == [("stopping", "c"), ("stopping", "a")]


def test_escalation_restarts_the_child_supervisor_in_the_parent(recorder):
    inner = Supervisor.child_spec([recorder.spec("w")], id="inner", max_restarts=1, max_seconds=60)
    parent = Supervisor.start_link([recorder.spec("first"), inner, recorder.spec("last")], max_restarts=3)
    assert recorder.summary() == [("started", "first"), ("started", "w"), ("started", "last")]
    inner_pid = pids(parent)["inner"]
    inner_ref = monitor(inner_pid)
    recorder.end(Supervisor.which_children(inner_pid)[0][1], "crash")
    Supervisor.which_children(inner_pid)  # it has handled the exit
    assert recorder.summary() == [("started", "w")]
    recorder.end(Supervisor.which_children(inner_pid)[0][1], "crash")  # 2 > max_restarts
    down = recorder.wait_down(inner_ref)
    assert down.reason == "shutdown"
    after = pids(parent)  # the parent handled the inner supervisor's exit first
    assert after["inner"] not in (None, inner_pid)
    assert recorder.summary() == [("started", "w")]  # under the new inner supervisor
    assert Supervisor.which_children(after["inner"])[0][0] == "w"


def test_escalation_climbs_to_the_root(recorder):
    trap_exits(True)
    inner = Supervisor.child_spec([recorder.spec("w")], id="inner", max_restarts=0)
    root = Supervisor.start_link([recorder.spec("a"), inner], max_restarts=0)
    recorder.drain()
    inner_pid = pids(root)["inner"]
    recorder.end(Supervisor.which_children(inner_pid)[0][1], "crash")
    assert receive(match=lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(root, "shutdown")
    assert recorder.summary() == [("stopping", "a")]


def test_a_restart_that_fails_is_tried_again(recorder):
    attempts = itertools.count()

    def flaky_start():
        if next(attempts) == 1:  # the first restart fails, the next succeeds
            raise RuntimeError("not yet")
        return real_start(*real_args)

    real_start, real_args = recorder.spec("f").start
    sup = Supervisor.start_link([ChildSpec("f", start=(flaky_start, ()))], max_restarts=5)
    first = pids(sup)["f"]
    recorder.drain()
    recorder.end(first, "crash")
    Supervisor.which_children(sup)  # the failed restart has queued its retry
    second = pids(sup)["f"]
    assert second not in (None, first)
    assert recorder.summary() == [("started", "f")]
    assert next(attempts) == 3


def test_failed_restart_attempts_count_towards_intensity(recorder):
    trap_exits(True)
    starts = itertools.count()

    def start_once():
        if next(starts):
            raise RuntimeError("never again")
        return real_start(*real_args)

    real_start, real_args = recorder.spec("f").start
    sup = Supervisor.start_link([ChildSpec("f", start=(start_once, ()))], max_restarts=3)
    recorder.end(pids(sup)["f"], "crash")
    assert receive(match=lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(sup, "shutdown")
    # the first start, then 3 failed restarts; the 4th restart is over the limit
    assert next(starts) == 4


# -- stopping --------------------------------------------------------------------------


def test_stop_terminates_children_in_reverse_order(recorder):
    sup = started_abc(recorder)
    ref = monitor(sup)
    Supervisor.stop(sup)
    assert recorder.drain() == [("stopping", i, "shutdown") for i in "cba"]
    down = recorder.wait_down(ref, timeout=0)
    assert down.reason == "normal"


def test_parent_shutdown_stops_children_in_reverse_order_first(recorder):
    trap_exits(True)
    sup = started_abc(recorder)
    exit(sup, "shutdown")
    assert receive(match=lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(sup, "shutdown")
    assert recorder.summary() == [("stopping", "c"), ("stopping", "b"), ("stopping", "a")]


def test_nested_supervisors_stop_depth_first_in_reverse(recorder):
    inner = Supervisor.child_spec([recorder.spec("b"), recorder.spec("c")], id="inner")
    sup = Supervisor.start_link([recorder.spec("a"), inner, recorder.spec("d")])
    assert recorder.summary() == [("started", i) for i in "abcd"]
    assert Supervisor.count_children(sup) == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
    assert Supervisor.which_children(sup)[1][2] == "supervisor"
    Supervisor.stop(sup)
    assert recorder.summary() == [("stopping", i) for i in "dcba"]


def test_stubborn_child_is_killed_after_its_shutdown_time(recorder):
    sup = Supervisor.start_link([recorder.spec("stubborn", ignore_shutdown=True, shutdown=0.05)])
    pid = pids(sup)["stubborn"]
    ref = monitor(pid)
    Supervisor.terminate_child(sup, "stubborn")
    assert recorder.summary() == [("started", "stubborn"), ("stopping", "stubborn")]
    down = recorder.wait_down(ref, timeout=0)
    assert down.reason == "killed"


def test_brutal_kill_does_not_ask_first(recorder):
    sup = Supervisor.start_link([recorder.spec("b", shutdown="brutal_kill")])
    pid = pids(sup)["b"]
    ref = monitor(pid)
    recorder.drain()
    Supervisor.terminate_child(sup, "b")
    assert recorder.drain() == []  # it trapped exits, yet never saw a "shutdown"
    assert recorder.wait_down(ref, timeout=0).reason == "killed"


def test_infinity_waits_for_the_child_however_long(recorder):
    sup = Supervisor.start_link([recorder.spec("slow", ignore_shutdown=True, shutdown="infinity")])
    pid = pids(sup)["slow"]
    ref = monitor(pid)
    recorder.drain()
    me = self_pid()

    def terminate_then_report():
        Supervisor.terminate_child(sup, "slow")
        send(me, "terminated")

    spawn(terminate_then_report)
    assert receive(match=lambda m: m[:1] == ("stopping",), timeout=WAIT) == ("stopping", "slow", "shutdown")
    with pytest.raises(ReceiveTimeout):  # longer than any finite default would allow
        receive(match=lambda m: m == "terminated", timeout=0.2)
    send(pid, ("finish",))
    assert receive(match=lambda m: m == "terminated", timeout=WAIT) == "terminated"
    assert recorder.wait_down(ref, timeout=0).reason == "shutdown"


def test_supervisor_child_spec_defaults(recorder):
    spec = Supervisor.child_spec([recorder.spec("x")])
    assert (spec.id, spec.type, spec.shutdown, spec.restart) == (Supervisor, "supervisor", "infinity", "permanent")


# -- managing children ----------------------------------------------------------------------


def test_terminate_and_restart_child(recorder):
    sup = started_abc(recorder)
    old = pids(sup)["b"]
    Supervisor.terminate_child(sup, "b")
    assert Supervisor.which_children(sup)[1] == ("b", None, "worker")
    assert Supervisor.count_children(sup)["active"] == 2
    new = Supervisor.restart_child(sup, "b")
    assert new not in (None, old) and pids(sup)["b"] == new
    assert recorder.summary() == [("stopping", "b"), ("started", "b")]


def test_terminate_temporary_child_forgets_it(recorder):
    sup = Supervisor.start_link([recorder.spec("a"), recorder.spec("t", restart="temporary")])
    Supervisor.terminate_child(sup, "t")
    assert [c[0] for c in Supervisor.which_children(sup)] == ["a"]


def test_manage_errors(recorder):
    sup = started_abc(recorder)
    with pytest.raises(ChildNotFound, match="no child 'zz'"):
        Supervisor.terminate_child(sup, "zz")
    with pytest.raises(ChildNotFound):
        Supervisor.restart_child(sup, "zz")
    with pytest.raises(SupervisorError, match="child 'a' is running"):
        Supervisor.restart_child(sup, "a")
    with pytest.raises(SupervisorError, match="running"):
        Supervisor.delete_child(sup, "a")
    Supervisor.terminate_child(sup, "a")
    Supervisor.delete_child(sup, "a")
    assert [c[0] for c in Supervisor.which_children(sup)] == ["b", "c"]


def test_start_child_appends_and_refuses_duplicates(recorder):
    sup = started_abc(recorder)
    pid = start_child(sup, recorder.spec("d"))
    assert pids(sup)["d"] == pid
    assert [c[0] for c in Supervisor.which_children(sup)] == ["a", "b", "c", "d"]
    with pytest.raises(SupervisorError, match="already started"):
        Supervisor.start_child(sup, recorder.spec("d"))
    Supervisor.terminate_child(sup, "d")
    with pytest.raises(SupervisorError, match="already present"):
        Supervisor.start_child(sup, recorder.spec("d"))

    def refuse():
        raise RuntimeError("nope")

    with pytest.raises(ChildStartError, match="nope"):
        Supervisor.start_child(sup, ChildSpec("e", start=(refuse, ())))
    assert "e" not in pids(sup)


def test_named_supervisor(recorder):
    Supervisor.start_link([recorder.spec("a")], name="tree")
    assert [c[0] for c in Supervisor.which_children("tree")] == ["a"]


def test_calls_to_a_dead_supervisor_fail_clearly(recorder):
    sup = started_abc(recorder)
    Supervisor.stop(sup)
    with pytest.raises(CallError, match="noproc"):
        Supervisor.which_children(sup)


def test_malformed_requests_are_refused_not_fatal(recorder):
    sup = started_abc(recorder)
    assert call(sup, "garbage") == Err(("bad_request", "garbage"))
    assert call(sup, ("terminate_child",)) == Err(("bad_request", ("terminate_child",)))
    assert call(sup, ("start_child", "not a spec")) == Err(("bad_request", "not a spec"))
    assert list(pids(sup)) == ["a", "b", "c"]


def test_stop_of_a_dead_supervisor_raises_noproc(recorder):
    sup = started_abc(recorder)
    Supervisor.stop(sup)
    with pytest.raises(NoProc):
        Supervisor.stop(sup)


def test_stop_gives_up_after_its_timeout(recorder):
    sup = Supervisor.start_link([recorder.spec("slow", ignore_shutdown=True, shutdown="infinity")])
    child = pids(sup)["slow"]
    recorder.drain()
    with pytest.raises(TimeoutError, match="did not stop within 0.05s"):
        Supervisor.stop(sup, timeout=0.05)
    ref = monitor(sup)
    stopping = receive(match=lambda m: m[:1] == ("stopping",), timeout=WAIT)
    assert stopping == ("stopping", "slow", "shutdown")
    send(child, ("finish",))  # now the supervisor can finish stopping
    assert recorder.wait_down(ref).reason == "normal"


def test_the_supervised_tree_example_runs():
    root = Path(__file__).resolve().parents[2]
    example = root / "examples" / "supervised_tree.py"
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert "cashier    restarted" in done.stdout
    assert "counter    kept running" in done.stdout
