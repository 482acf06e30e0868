"""Task: Elixir's Task.async/await/yield/shutdown semantics."""

from __future__ import annotations

from typing import Any

import gevent
import pytest

from paxtor.actors import Down, Err, Exit, Ok, ReceiveTimeout, Task, monitor, receive, self_pid, send, spawn, trap_exits
from paxtor.actors.primitives import is_alive
from paxtor.actors.task import TaskExited, TaskTimeout

WAIT = 5.0


def add(a: int, b: int) -> int:
    return a + b


def wait_for_go(result: Any) -> Any:
    receive(match=lambda m: m == "go")
    return result


def crash() -> None:
    raise RuntimeError("task failed")


def stubborn(owner: Any) -> None:
    trap_exits(True)
    send(owner, "trapping")
    while True:
        receive()


def assert_mailbox_empty() -> None:
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0)


def down_of(ref: Any, timeout: float = WAIT) -> Down:
    return receive(match=lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def test_await_returns_the_result_and_leaves_nothing_behind():
    task = Task.run(add, 2, 3)
    assert task.owner == self_pid()
    assert task.await_() == 5
    assert_mailbox_empty()  # the reply, the Down and the (normal) link are consumed


def test_await_many_keeps_order():
    tasks = [Task.run(add, i, i) for i in range(5)]
    assert Task.await_many(tasks) == [0, 2, 4, 6, 8]


def test_timeout_raises_and_the_task_keeps_running():
    task = Task.run(wait_for_go, "late")
    with pytest.raises(TaskTimeout, match="no result within 0.05s"):
        task.await_(timeout=0.05)
    assert is_alive(task.pid)
    send(task.pid, "go")
    assert task.await_() == "late"


def test_crash_takes_the_caller_down():
    def caller():
        Task.run(crash).await_()

    pid = spawn(caller)
    ref = monitor(pid)
    reason = down_of(ref).reason
    assert isinstance(reason, RuntimeError) and str(reason) == "task failed"


def test_trapping_caller_gets_task_exited():
    trap_exits(True)
    task = Task.run(crash)
    with pytest.raises(TaskExited, match="task failed") as info:
        task.await_()
    assert isinstance(info.value.reason, RuntimeError)
    exit_msg = receive(match=lambda m: isinstance(m, Exit), timeout=WAIT)
    assert exit_msg.pid == task.pid and exit_msg.reason is info.value.reason


def test_yield_does_not_raise():
    task = Task.run(wait_for_go, 7)
    assert task.yield_(timeout=0.01) is None
    send(task.pid, "go")
    assert task.yield_() == Ok(7)

    trap_exits(True)
    failing = Task.run(crash)
    outcome = failing.yield_()
    assert isinstance(outcome, Err) and isinstance(outcome.reason, RuntimeError)


def test_shutdown_stops_a_running_task():
    task = Task.run(wait_for_go, None)
    ref = monitor(task.pid)
    assert task.shutdown() is None
    assert down_of(ref, timeout=0).reason == "shutdown"
    assert_mailbox_empty()  # no Exit: the task was unlinked first


def test_shutdown_kills_a_task_that_ignores_it():
    task = Task.run(stubborn, self_pid())
    ref = monitor(task.pid)
    receive(match=lambda m: m == "trapping", timeout=WAIT)
    assert task.shutdown(timeout=0.05) is None
    assert down_of(ref, timeout=0).reason == "killed"


def test_shutdown_brutal_kill():
    task = Task.run(stubborn, self_pid())
    ref = monitor(task.pid)
    receive(match=lambda m: m == "trapping", timeout=WAIT)
    assert task.shutdown("brutal_kill") is None
    assert down_of(ref, timeout=0).reason == "killed"


def test_shutdown_after_the_result_returns_it():
    task = Task.run(add, 1, 1)
    ref = monitor(task.pid)
    down_of(ref)  # finished: its reply is waiting in the mailbox
    assert task.shutdown() == Ok(2)
    assert_mailbox_empty()


def test_only_the_owner_may_wait():
    task = Task.run(wait_for_go, 1)
    me = self_pid()

    def stranger():
        try:
            task.await_(timeout=0)
        except RuntimeError as err:
            send(me, str(err))

    spawn(stranger)
    assert "only the owner" in receive(match=lambda m: isinstance(m, str), timeout=WAIT)
    send(task.pid, "go")
    assert task.await_() == 1


def test_run_needs_a_callable():
    with pytest.raises(TypeError, match="needs a callable"):
        Task.run(42)


@pytest.mark.parametrize("how", [1.0, "brutal_kill"])
def test_shutdown_of_a_task_already_awaited_or_shut_down_returns_at_once(how):
    done = Task.run(lambda: 42)
    assert done.await_(5) == 42
    with gevent.Timeout(5, AssertionError("shutdown hung")):
        assert done.shutdown(how) is None  # its monitor is spent: nothing to wait for
    sleeper = Task.run(gevent.sleep, 10)
    assert sleeper.shutdown(1.0) is None
    with gevent.Timeout(5, AssertionError("a second shutdown hung")):
        assert sleeper.shutdown(how) is None
