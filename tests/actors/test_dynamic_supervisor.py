"""DynamicSupervisor: children on demand, one_for_one restarts by pid,
start errors raised in the caller, max_children, and a parallel stop."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from paxtor.actors import (
    ChildSpec,
    Down,
    DynamicSupervisor,
    Exit,
    GenServer,
    ReceiveTimeout,
    Supervisor,
    call,
    exit,
    monitor,
    receive,
    start_child,
    trap_exits,
)
from paxtor.actors.child_spec import ChildStartError
from paxtor.actors.supervisor import ChildNotFound, SupervisorError

WAIT = 5.0


class Echo(GenServer):
    def init(self, tag: Any = None) -> None:
        self.tag = tag

    def handle_call(self, request: Any, caller: Any) -> Any:
        return (self.tag, request)


def running(sup: Any) -> list[Any]:
    return [pid for _, pid, _ in DynamicSupervisor.which_children(sup)]


def test_starts_empty_and_adds_children_on_demand(recorder):
    sup = DynamicSupervisor.start_link()
    assert DynamicSupervisor.which_children(sup) == []
    a = DynamicSupervisor.start_child(sup, recorder.spec("a"))
    b = start_child(sup, (Echo, "b"))
    assert call(b, "hi") == ("b", "hi")
    assert DynamicSupervisor.which_children(sup) == [("a", a, "worker"), (Echo, b, "worker")]
    assert DynamicSupervisor.count_children(sup) == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
    assert recorder.summary() == [("started", "a")]


def test_a_failing_start_raises_in_the_caller_and_the_supervisor_stays_up():
    sup = DynamicSupervisor.start_link()
    sup_ref = monitor(sup)

    def refuse():
        raise RuntimeError("no capacity")

    with pytest.raises(ChildStartError, match="no capacity"):
        start_child(sup, ChildSpec("x", start=(refuse, ())))
    with pytest.raises(ChildStartError, match="expected a Pid or None"):
        start_child(sup, ChildSpec("y", start=(lambda: 42, ())))
    with pytest.raises(TypeError, match="not a child spec"):
        start_child(sup, "nonsense")
    assert DynamicSupervisor.which_children(sup) == []
    with pytest.raises(ReceiveTimeout):
        receive(match=lambda m: isinstance(m, Down) and m.ref == sup_ref, timeout=0)


def test_ignored_start_returns_none_and_keeps_nothing():
    sup = DynamicSupervisor.start_link()
    assert start_child(sup, ChildSpec("nothing", start=(lambda: None, ()))) is None
    assert DynamicSupervisor.count_children(sup)["specs"] == 0


@pytest.mark.parametrize(
    "restart, how, restarted",
    [
        ("permanent", "normal", True),
        ("permanent", "crash", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", ("shutdown", "bye"), False),
        ("transient", "crash", True),
        ("transient", "kill", True),
        ("temporary", "crash", False),
    ],
)
def test_restart_types(recorder, restart, how, restarted):
    sup = DynamicSupervisor.start_link()
    other = start_child(sup, recorder.spec("other"))
    victim = start_child(sup, recorder.spec("victim", restart=restart))
    recorder.drain()
    recorder.end(victim, how)
    children = DynamicSupervisor.which_children(sup)
    if restarted:
        assert [c[0] for c in children] == ["other", "victim"]
        assert children[1][1] not in (None, victim)
        assert recorder.summary() == [("started", "victim")]
    else:
        assert children == [("other", other, "worker")]  # forgotten
        assert recorder.drain() == []


def test_terminate_child_by_pid(recorder):
    sup = DynamicSupervisor.start_link()
    a = start_child(sup, recorder.spec("a"))
    b = start_child(sup, recorder.spec("b"))
    DynamicSupervisor.terminate_child(sup, a)
    assert running(sup) == [b]
    assert recorder.summary() == [("started", "a"), ("started", "b"), ("stopping", "a")]
    with pytest.raises(ChildNotFound):
        DynamicSupervisor.terminate_child(sup, a)


def test_max_children(recorder):
    sup = DynamicSupervisor.start_link(max_children=2)
    a = start_child(sup, recorder.spec("a"))
    start_child(sup, recorder.spec("b"))
    with pytest.raises(SupervisorError, match="max_children"):
        start_child(sup, recorder.spec("c"))
    DynamicSupervisor.terminate_child(sup, a)
    assert start_child(sup, recorder.spec("c")) is not None


@pytest.mark.parametrize(
    "options, words",
    [
        ({"strategy": "one_for_all"}, "only strategy 'one_for_one'"),
        ({"max_children": -1}, "max_children"),
        ({"max_restarts": -1}, "max_restarts"),
    ],
)
def test_bad_arguments(options, words):
    with pytest.raises(ValueError, match=words):
        DynamicSupervisor.start_link(**options)


def test_too_many_restarts_shut_it_down(recorder):
    trap_exits(True)
    sup = DynamicSupervisor.start_link(max_restarts=1, max_seconds=60)
    start_child(sup, recorder.spec("bystander"))
    pid = start_child(sup, recorder.spec("victim"))
    recorder.end(pid, "crash")
    recorder.end(running(sup)[1], "crash")
    assert receive(match=lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(sup, "shutdown")
    assert recorder.summary() == [
        ("started", "bystander"),
        ("started", "victim"),
        ("started", "victim"),
        ("stopping", "bystander"),
    ]


def test_a_failed_restart_is_tried_again(recorder):
    attempts = itertools.count()
    real_start, real_args = recorder.spec("f").start

    def flaky_start():
        if next(attempts) == 1:
            raise RuntimeError("not yet")
        return real_start(*real_args)

    sup = DynamicSupervisor.start_link(max_restarts=5)
    first = start_child(sup, ChildSpec("f", start=(flaky_start, ())))
    recorder.end(first, "crash")
    DynamicSupervisor.which_children(sup)  # the failed restart has queued its retry
    assert running(sup)[0] not in (None, first)
    assert next(attempts) == 3


def test_stop_tells_all_children_at_once(recorder):
    """Two stubborn children: both are asked to stop before either is
    killed, so stopping takes one shutdown time, not the sum of them."""
    sup = DynamicSupervisor.start_link()
    a = start_child(sup, recorder.spec("a", ignore_shutdown=True, shutdown=0.1))
    b = start_child(sup, recorder.spec("b", ignore_shutdown=True, shutdown=0.1))
    refs = {monitor(a): "a", monitor(b): "b"}
    recorder.drain()
    DynamicSupervisor.stop(sup)
    seen = []
    while len(seen) < 4:
        msg = receive(timeout=0)
        if isinstance(msg, Down) and msg.ref in refs:
            seen.append(("down", refs[msg.ref], msg.reason))
        elif isinstance(msg, tuple) and msg[0] == "stopping":
            seen.append(msg[:2])
    assert sorted(seen[:2]) == [("stopping", "a"), ("stopping", "b")]
    assert sorted(seen[2:]) == [("down", "a", "killed"), ("down", "b", "killed")]


def test_parent_exit_stops_children():
    trap_exits(True)
    sup = DynamicSupervisor.start_link()
    child = start_child(sup, Echo)
    ref = monitor(child)
    exit(sup, "shutdown")
    assert receive(match=lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT).reason == "shutdown"
    assert receive(match=lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(sup, "shutdown")


def test_under_a_supervisor_by_name():
    tree = Supervisor.start_link([DynamicSupervisor.child_spec(name="workers", max_children=5)])
    [(child_id, _, child_type)] = Supervisor.which_children(tree)
    assert (child_id, child_type) == (DynamicSupervisor, "supervisor")
    pid = start_child("workers", (Echo, 1))
    assert call(pid, "x") == (1, "x")
    assert DynamicSupervisor.count_children("workers")["active"] == 1
