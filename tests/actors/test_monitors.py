"""Monitors: one Down per monitor, "noproc" at once for the dead, by-name
monitors, demonitor and flush."""

from __future__ import annotations

import pytest

from paxtor.actors import (
    Down,
    Pid,
    ReceiveTimeout,
    Via,
    demonitor,
    exit,
    monitor,
    receive,
    register,
    self_pid,
    send,
    spawn,
    spawn_monitor,
)
from paxtor.actors.node import current_node
from paxtor.actors.primitives import current_process
from paxtor.testing import DictVia


def down_of(ref, timeout=5):
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def no_more_downs():
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, Down), timeout=0)


def waiter():
    receive()


def settle(pid):
    """Return once every signal already sent to `pid` has been handled by the
    runtime: a monitor taken now is served after them."""
    down_of(monitor(pid))


@pytest.mark.parametrize("reason", ["normal", "shutdown", ("shutdown", "x"), ValueError("v")])
def test_down_carries_pid_and_reason_exactly_once(reason):
    def body():
        receive()
        if isinstance(reason, Exception):
            raise reason
        exit(reason)

    pid = spawn(body)
    ref = monitor(pid)
    send(pid, "go")
    down = down_of(ref)
    assert down == Down(ref, pid, reason)
    assert down.reason is reason
    settle(spawn(lambda: None))
    no_more_downs()


def test_spawn_monitor_reports_the_exit():
    pid, ref = spawn_monitor(exit, "why")
    assert down_of(ref) == Down(ref, pid, "why")


def test_monitoring_a_dead_pid_gives_noproc_at_once():
    pid, ref = spawn_monitor(lambda: None)
    down_of(ref)
    ref2 = monitor(pid)
    assert receive(timeout=0) == Down(ref2, pid, "noproc")


def test_monitoring_a_pid_that_never_existed_gives_noproc():
    node = current_node()
    ghost = Pid(node.name, node.incarnation, 999_999)
    ref = monitor(ghost)
    assert receive(timeout=0) == Down(ref, ghost, "noproc")


def test_two_monitors_give_two_downs():
    pid = spawn(waiter)
    r1, r2 = monitor(pid), monitor(pid)
    assert r1 != r2
    send(pid, "go")
    assert {down_of(r1).ref, down_of(r2).ref} == {r1, r2}


def test_monitor_by_registered_name_reports_name_and_node():
    pid = spawn(waiter)
    register("named", pid)
    ref = monitor("named")
    send(pid, "go")
    node = current_node().name
    assert down_of(ref) == Down(ref, ("named", node), "normal")


def test_monitor_by_name_and_node_tuple():
    pid = spawn(waiter)
    register("named", pid)
    node = current_node().name
    ref = monitor(("named", node))
    exit(pid, "kill")
    assert down_of(ref) == Down(ref, ("named", node), "killed")


def test_monitor_of_an_unregistered_name_gives_noproc_with_the_name():
    ref = monitor("nobody")
    assert receive(timeout=0) == Down(ref, ("nobody", current_node().name), "noproc")


def test_monitor_through_via_resolves_to_the_pid():
    names = DictVia()
    pid = spawn(waiter)
    names.register_name("k", pid)
    ref = monitor(Via(names, "k"))
    send(pid, "go")
    assert down_of(ref) == Down(ref, pid, "normal")
    missing = Via(names, "missing")
    ref2 = monitor(missing)
    assert receive(timeout=0) == Down(ref2, missing, "noproc")


def test_demonitor_prevents_the_down():
    pid = spawn(waiter)
    ref = monitor(pid)
    assert demonitor(ref) is True
    send(pid, "go")
    settle(pid)
    no_more_downs()
    assert demonitor(ref) is False


def test_demonitor_with_flush_removes_a_queued_down_and_keeps_other_messages():
    pid = spawn(waiter)
    ref = monitor(pid)
    send(self_pid(), "before")
    send(pid, "go")
    settle(pid)  # the Down for ref is queued now
    send(self_pid(), "after")
    assert demonitor(ref, flush=True) is False
    no_more_downs()
    assert [receive(timeout=0), receive(timeout=0)] == ["before", "after"]


def test_demonitor_without_flush_leaves_a_queued_down():
    pid, ref = spawn_monitor(lambda: None)
    settle(pid)
    demonitor(ref)
    assert down_of(ref, timeout=0).reason == "normal"


def test_a_dead_watcher_leaves_no_monitor_behind():
    target = spawn(waiter)
    target_proc = current_node().lookup(target)

    def watcher():
        monitor(target)
        monitor(target)

    _, ref = spawn_monitor(watcher)
    down_of(ref)
    assert target_proc.monitored_by == {}


def test_a_monitor_held_by_the_target_process_is_dropped_when_the_down_fires():
    pid = spawn(waiter)
    ref = monitor(pid)
    send(pid, "go")
    down_of(ref)
    assert ref not in current_process().monitors
