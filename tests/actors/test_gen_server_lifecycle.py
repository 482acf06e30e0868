"""GenServer lifecycle calls from OTP: `GenServer.stop` (gen_server:stop/3), a start
timeout (``{timeout, T}``), and an `init` that returns `Ignore` (OTP's ``ignore``),
alone and under supervisors."""

from __future__ import annotations

import itertools
from typing import Any

import gevent
import pytest

from paxtor.actors import (
    ChildSpec,
    Down,
    DynamicSupervisor,
    Exit,
    GenServer,
    Ignore,
    ReceiveTimeout,
    Supervisor,
    call,
    monitor,
    receive,
    self_pid,
    send,
    spawn,
    trap_exits,
    whereis,
)
from paxtor.actors.child_spec import ChildStartError
from paxtor.actors.messages import CallError, NoProc, StartError
from paxtor.actors.primitives import is_alive
from paxtor.actors.supervisor import RESTARTING

WAIT = 5.0


def no_message(match: Any) -> bool:
    try:
        receive(match, timeout=0)
    except ReceiveTimeout:
        return True
    return False


class Reporter(GenServer):
    """Tells `observer` when it terminates; never traps exits."""

    def init(self, observer: Any, mode: str = "run") -> Any:
        self.observer = observer
        if mode == "hang":
            receive(lambda m: m == "never")
        if mode == "ignore":
            send(observer, ("init_ignored", self_pid()))
            return Ignore
        return None

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "block":
            send(self.observer, "blocked")
            receive(lambda m: m == "never")
        return request

    def terminate(self, reason: Any) -> None:
        send(self.observer, ("terminated", reason))
        if reason == "fail_in_terminate":
            raise RuntimeError("terminate failed")


def terminated(timeout: float = 0) -> Any:
    return receive(lambda m: isinstance(m, tuple) and m[0] == "terminated", timeout=timeout)[1]


# -- GenServer.stop ---------------------------------------------------------------------


def test_stop_runs_terminate_and_returns_once_the_server_is_gone():
    pid = Reporter.start(self_pid())
    ref = monitor(pid)
    GenServer.stop(pid)
    assert not is_alive(pid)
    assert terminated() == "normal"  # sent before the server exited: here already
    assert receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=0).reason == "normal"


def test_stop_with_a_reason_reaches_the_linked_parent():
    trap_exits(True)
    pid = Reporter.start_link(self_pid(), name="reporter")
    GenServer.stop("reporter", ("shutdown", "maintenance"))
    assert terminated() == ("shutdown", "maintenance")
    assert receive(lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(pid, ("shutdown", "maintenance"))
    assert whereis("reporter") is None


def test_stop_of_nothing_raises_noproc():
    pid = Reporter.start(self_pid())
    GenServer.stop(pid)
    with pytest.raises(NoProc):
        GenServer.stop(pid)
    with pytest.raises(NoProc):
        GenServer.stop("nobody_here")


def test_stop_gives_up_after_its_timeout_and_leaves_the_server_running():
    pid = Reporter.start(self_pid())
    spawn(call, pid, "block", None)
    receive(lambda m: m == "blocked", timeout=WAIT)  # busy in a callback: the stop request waits
    with pytest.raises(TimeoutError, match="did not stop"):
        GenServer.stop(pid, timeout=0.05)
    assert is_alive(pid)
    assert no_message(lambda m: isinstance(m, Down))


def test_a_terminate_that_fails_is_the_callers_error():
    pid = Reporter.start(self_pid())
    with pytest.raises(CallError) as info:
        GenServer.stop(pid, "fail_in_terminate")
    assert isinstance(info.value.reason, RuntimeError)
    assert not is_alive(pid)


def test_supervisor_stop_is_genserver_stop():
    sup = Supervisor.start_link([ChildSpec("r", start=(Reporter.start_link, (self_pid(),)))])
    (_, child, _), = Supervisor.which_children(sup)
    GenServer.stop(sup)
    assert not is_alive(sup) and not is_alive(child)  # its terminate stopped the child first


# -- start timeout ----------------------------------------------------------------------


def test_a_hanging_init_is_killed_and_the_start_times_out():
    with pytest.raises(StartError) as info:
        Reporter.start_link(self_pid(), "hang", name="hanging", timeout=0.05)
    assert info.value.reason == "timeout"
    assert whereis("hanging") is None  # killed: its name is free again
    assert is_alive(self_pid())  # the kill did not reach the caller through the link
    assert no_message(lambda m: isinstance(m, (Exit, Down)))
    assert Reporter.start(self_pid(), name="hanging") is not None


def test_a_bad_start_timeout_is_refused_before_anything_starts():
    with pytest.raises(ValueError):
        Reporter.start(self_pid(), timeout=-1)


class SlowStarter(GenServer):
    """Hangs in init on the starts `hang_on` names (by count), with a start timeout."""

    start_timeout = 0.05
    starts = itertools.count()
    hang_on: set[int] = set()

    def init(self) -> None:
        if next(SlowStarter.starts) in SlowStarter.hang_on:
            receive(lambda m: m == "never")


def test_a_supervisor_is_not_blocked_by_a_hanging_init():
    SlowStarter.starts = itertools.count()
    SlowStarter.hang_on = {0}
    with pytest.raises(ChildStartError) as info:
        Supervisor.start_link([SlowStarter])
    assert info.value.reason.reason == "timeout"


def test_a_restart_whose_init_hangs_is_retried_and_reported_restarting():
    SlowStarter.starts = itertools.count()
    SlowStarter.hang_on = {1, 2, 3}  # the first three restarts hang, the fourth works
    sup = Supervisor.start_link([SlowStarter], max_restarts=10)
    (_, first, _), = Supervisor.which_children(sup)
    ref = monitor(first)
    GenServer.stop(first, "crash")
    receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT)
    # each call is answered between two attempts (a retry goes through the mailbox)
    answers = [Supervisor.which_children(sup)[0][1] for _ in range(4)]
    assert answers[:3] == [RESTARTING] * 3
    assert answers[3] not in (RESTARTING, None, first) and is_alive(answers[3])


# -- init returns Ignore ----------------------------------------------------------------


def test_an_ignored_start_returns_none_and_leaves_nothing_behind():
    trap_exits(True)
    assert Reporter.start_link(self_pid(), "ignore", name="ignorer") is None
    _, pid = receive(lambda m: m[0] == "init_ignored", timeout=0)
    assert not is_alive(pid)
    assert whereis("ignorer") is None
    assert no_message(lambda m: isinstance(m, (Exit, Down)))
    assert Reporter.start(self_pid(), "ignore") is None


def test_a_supervisor_keeps_an_ignored_child_without_a_pid():
    spec = ChildSpec("r", start=(Reporter.start_link, (self_pid(), "ignore")))
    sup = Supervisor.start_link([spec])
    assert Supervisor.which_children(sup) == [("r", None, "worker")]
    assert Supervisor.count_children(sup)["active"] == 0
    assert Supervisor.restart_child(sup, "r") is None  # ignored again
    temporary = ChildSpec("t", start=(Reporter.start_link, (self_pid(), "ignore")), restart="temporary")
    assert Supervisor.start_child(sup, temporary) is None
    assert [c[0] for c in Supervisor.which_children(sup)] == ["r"]  # a temporary one is not kept


def test_dynamic_supervisor_start_child_of_an_ignored_child_returns_none():
    sup = DynamicSupervisor.start_link()
    assert DynamicSupervisor.start_child(sup, (Reporter, self_pid())) is not None
    spec = ChildSpec("r", start=(Reporter.start_link, (self_pid(), "ignore")))
    assert DynamicSupervisor.start_child(sup, spec) is None
    assert len(DynamicSupervisor.which_children(sup)) == 1


# -- which_children: restarting and stopped ------------------------------------------------


def failing_then_working(gate: dict[str, bool], observer: Any) -> Any:
    if not gate["open"]:
        gevent.sleep(0.02)  # a slow failure: it yields, so calls get their turn between attempts
        raise RuntimeError("not yet")
    return Reporter.start_link(observer)


def test_which_children_tells_restarting_from_stopped():
    gate = {"open": True}
    me = self_pid()
    flaky = ChildSpec("flaky", start=(failing_then_working, (gate, me)))
    calm = ChildSpec("calm", start=(Reporter.start_link, (me,)))
    sup = Supervisor.start_link([flaky, calm], max_restarts=1000, max_seconds=60)
    Supervisor.terminate_child(sup, "calm")
    gate["open"] = False
    victim = {i: p for i, p, _ in Supervisor.which_children(sup)}["flaky"]
    ref = monitor(victim)
    GenServer.stop(victim, "crash")
    receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT)
    children = {i: p for i, p, _ in Supervisor.which_children(sup)}
    assert children == {"flaky": RESTARTING, "calm": None}
    gate["open"] = True
    for _ in range(3):  # each answer comes after one more attempt: the next one works
        pid = {i: p for i, p, _ in Supervisor.which_children(sup)}["flaky"]
        if pid != RESTARTING:
            break
    assert is_alive(pid)


def test_dynamic_which_children_reports_a_restarting_child():
    gate = {"open": True}
    sup = DynamicSupervisor.start_link(max_restarts=1000, max_seconds=60)
    spec = ChildSpec("flaky", start=(failing_then_working, (gate, self_pid())))
    pid = DynamicSupervisor.start_child(sup, spec)
    gate["open"] = False
    ref = monitor(pid)
    GenServer.stop(pid, "crash")
    receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=WAIT)
    assert DynamicSupervisor.which_children(sup) == [("flaky", RESTARTING, "worker")]
    gate["open"] = True
