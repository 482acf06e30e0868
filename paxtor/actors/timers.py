"""Timers for processes: a message to a local process after a delay (Erlang's send_after).

A libev timer on the hub delivers the message through the node's seam, so no
greenlet is spawned per timer (rounds set one each) and a timer of a process
that died simply delivers to nobody. `cancel` is idempotent.
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.ids import Pid
from paxtor.actors.node import LocalNode

__all__ = ["TimerHandle", "send_after"]


class TimerHandle:
    """A pending `send_after`; `cancel()` stops it if it has not fired."""

    __slots__ = ("_watcher", "_node", "_pid", "_msg")

    def __init__(self, watcher: Any, node: LocalNode, pid: Pid, msg: Any) -> None:
        self._watcher = watcher
        self._node = node
        self._pid = pid
        self._msg = msg

    def _fire(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
            self._node.deliver_message(self._pid, self._msg)

    def cancel(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()

    @property
    def active(self) -> bool:
        return self._watcher is not None


def send_after(node: LocalNode, pid: Pid, delay: float, msg: Any) -> TimerHandle:
    """Deliver ``msg`` to local process ``pid`` after ``delay`` seconds."""
    if pid.__class__ is not Pid:
        raise TypeError(f"send_after() delivers to a Pid, got {pid!r}")
    watcher = node.hub().loop.timer(max(delay, 0.0))
    handle = TimerHandle(watcher, node, pid, msg)
    watcher.start(handle._fire)
    return handle
