"""Fixtures for the supervision tests: recorder children that report their
life to the test process, so tests assert on events and their order.

A recorder's start function returns only once the recorder has set itself
up (as any start_link does), having already sent its "started" event; a
trapping recorder sends "stopping" when it gets an exit signal. Every event
a supervisor's action causes is therefore in the test's mailbox by the time
the supervisor answers a call made after that action.
"""

from __future__ import annotations

from typing import Any

import pytest

from paxtor.actors import (
    ChildSpec,
    Down,
    Exit,
    ReceiveTimeout,
    exit,
    monitor,
    receive,
    self_pid,
    send,
    spawn_link,
    trap_exits,
)

WAIT = 5.0  # upper bound for anything that should happen "now"


def start_recorder(child_id: Any, events: Any, trap: bool = True, ignore_shutdown: bool = False):
    """Start function of a recorder, linked to the caller."""
    pid = spawn_link(recorder_loop, self_pid(), child_id, events, trap, ignore_shutdown)
    receive(match=lambda m: m == ("recorder_ready", pid), timeout=WAIT)
    return pid


def recorder_loop(starter: Any, child_id: Any, events: Any, trap: bool, ignore_shutdown: bool) -> None:
    if trap:
        trap_exits(True)
    send(events, ("started", child_id, self_pid()))
    send(starter, ("recorder_ready", self_pid()))
    while True:
        msg = receive()
        if isinstance(msg, Exit):
            send(events, ("stopping", child_id, msg.reason))
            if not ignore_shutdown:
                exit(msg.reason)
        elif msg[0] == "exit":
            exit(msg[1])
        elif msg[0] == "crash":
            raise RuntimeError(f"{child_id} crashed on purpose")
        elif msg[0] == "finish":  # leave on request, after a "stopping"
            exit("shutdown")


def is_event(msg: Any) -> bool:
    return isinstance(msg, tuple) and msg[:1] in (("started",), ("stopping",))


class Recorder:
    """Child specs of recorders reporting to the current (test) process,
    and the helpers to read their events."""

    def spec(self, child_id: Any, **options: Any) -> ChildSpec:
        trap = options.pop("trap", True)
        ignore_shutdown = options.pop("ignore_shutdown", False)
        args = (child_id, self_pid(), trap, ignore_shutdown)
        return ChildSpec(child_id, start=(start_recorder, args), **options)

    def drain(self) -> list[tuple]:
        """Every event already in the mailbox, in arrival order."""
        events = []
        while True:
            try:
                events.append(receive(match=is_event, timeout=0))
            except ReceiveTimeout:
                return events

    def summary(self) -> list[tuple[str, Any]]:
        """`drain()` without pids and reasons, for order assertions."""
        return [(kind, child_id) for kind, child_id, _ in self.drain()]

    @staticmethod
    def wait_down(ref: Any, timeout: float = WAIT) -> Down:
        return receive(match=lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)

    def end(self, pid: Any, how: Any) -> Any:
        """Make a child exit ("crash", "kill" or a reason) and wait until it
        has; returns its exit reason."""
        ref = monitor(pid)
        if how == "crash":
            send(pid, ("crash",))
        elif how == "kill":
            exit(pid, "kill")
        else:
            send(pid, ("exit", how))
        return self.wait_down(ref).reason


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
