"""Task: run one function in a linked process and collect its result
(Elixir's Task.async / Task.await / Task.yield / Task.shutdown).

The task is linked and monitored: if it crashes, the link takes the owner
down too (unless the owner traps exits, then `await_` raises `TaskExited`),
so a failure is never silently lost. A timeout in `await_` raises but does
not stop the task; `shutdown()` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from paxtor.actors.errors import PaxtorError, PaxtorTimeout
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.messages import Down, Exit, ReceiveTimeout
from paxtor.actors.outcome import Err, Ok, Outcome
from paxtor.actors.primitives import demonitor, exit, monitor, receive, self_pid, send, spawn_link, unlink

__all__ = ["Task", "TaskExited", "TaskTimeout"]


class TaskTimeout(PaxtorTimeout):
    """`await_` saw no result within its timeout; the task keeps running."""


class TaskExited(PaxtorError):
    """The task exited before replying; `reason` is its exit reason."""

    def __init__(self, task: Task, reason: Any) -> None:
        super().__init__(f"task {task.pid!r} exited: {reason!r}")
        self.task = task
        self.reason = reason


class Task:
    """A running computation owned by the process that started it.

    Only the owner receives the result, so only the owner may await it.
    """

    __slots__ = ("pid", "ref", "owner", "settled")

    def __init__(self, pid: Pid, ref: Ref, owner: Pid) -> None:
        self.pid = pid
        self.ref = ref
        self.owner = owner
        self.settled = False  # its result or exit was taken (its monitor is spent)

    def __repr__(self) -> str:
        return f"Task(pid={self.pid!r}, owner={self.owner!r})"

    @classmethod
    def run(cls, fn: Callable[..., Any], *args: Any) -> Task:
        """Start ``fn(*args)`` in a new process linked to and monitored by
        the caller; its return value is sent back to the caller."""
        if not callable(fn):
            raise TypeError(f"Task.run needs a callable, got {fn!r}")
        owner = self_pid()
        pid = spawn_link(_task_body, owner, fn, args)
        ref = monitor(pid)
        send(pid, (_GO, ref))
        return cls(pid, ref, owner)

    def await_(self, timeout: float | None = 5.0) -> Any:
        """The task's result. Raises `TaskTimeout` after `timeout` seconds
        (None: wait forever), leaving the task running; raises `TaskExited`
        if it exited without a result (seen only when trapping exits: else
        the link has already taken the caller down)."""
        outcome = self.yield_(timeout)
        if outcome is None:
            raise TaskTimeout(f"task {self.pid!r} gave no result within {timeout}s")
        if isinstance(outcome, Ok):
            return outcome.value
        raise TaskExited(self, outcome.reason)

    def yield_(self, timeout: float | None = 5.0) -> Outcome[Any, Any] | None:
        """Wait for the task without raising: ``Ok(result)``,
        ``Err(exit_reason)`` if it died, or None if still running at the
        timeout (the task keeps running; call again or `shutdown()`)."""
        self._check_owner("yield_")
        try:
            msg = receive(match=self._is_outcome, timeout=timeout)
        except ReceiveTimeout:
            return None
        return self._settle(msg)

    def shutdown(self, timeout: float | str = 5.0) -> Outcome[Any, Any] | None:
        """Stop the task: unlink, exit it with "shutdown", kill it after
        `timeout` seconds ("brutal_kill": at once). Returns ``Ok(result)``
        if its result arrived first, ``Err(exit_reason)`` if it had died of
        something else, or None (also for a task already awaited or shut down:
        there is nothing left to stop or to wait for)."""
        self._check_owner("shutdown")
        unlink(self.pid)
        if self.settled:
            return None
        exit(self.pid, "kill" if timeout == "brutal_kill" else "shutdown")
        wait = None if isinstance(timeout, str) else timeout
        try:
            msg = receive(match=self._is_outcome, timeout=wait)
        except ReceiveTimeout:
            exit(self.pid, "kill")
            msg = receive(match=self._is_outcome)
        self._flush_exit()
        outcome = self._settle(msg)
        if isinstance(outcome, Err) and outcome.reason in ("shutdown", "killed"):
            return None
        return outcome

    @staticmethod
    def await_many(tasks: Iterable[Task], timeout: float | None = 5.0) -> list[Any]:
        """Results of all `tasks` in order; raises as `await_` does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        for task in tasks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            results.append(task.await_(left))
        return results

    # -- internals -------------------------------------------------------------

    def _is_outcome(self, msg: Any) -> bool:
        if isinstance(msg, Down):
            return msg.ref == self.ref
        return isinstance(msg, tuple) and len(msg) == 2 and msg[0] == self.ref

    def _settle(self, msg: Any) -> Outcome[Any, Any]:
        self.settled = True
        if isinstance(msg, Down):
            return Err(msg.reason)
        demonitor(self.ref)
        self._flush_down()
        return Ok(msg[1])

    def _flush_down(self) -> None:
        try:
            receive(match=lambda m: isinstance(m, Down) and m.ref == self.ref, timeout=0)
        except ReceiveTimeout:
            pass

    def _flush_exit(self) -> None:
        try:
            receive(match=lambda m: isinstance(m, Exit) and m.pid == self.pid, timeout=0)
        except ReceiveTimeout:
            pass

    def _check_owner(self, what: str) -> None:
        me = self_pid()
        if me != self.owner:
            raise RuntimeError(
                f"{what} on {self!r} from {me!r}: only the owner may wait for a task"
            )


_GO = "$task_go"


def _task_body(owner: Pid, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Wait for the reply tag (the owner's monitor ref), run, send the result."""
    _, ref = receive(match=lambda m: isinstance(m, tuple) and len(m) == 2 and m[0] == _GO)
    send(owner, (ref, fn(*args)))
