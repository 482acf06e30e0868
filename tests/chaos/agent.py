"""Runs inside a chaos node's OS process: the fault injector and slow disk the nemesis drives.

`node_main` installs `INJECTOR` (and `slow_disk`); the harness reaches them by
remote spawn of `apply_faults` on that node (a module-level function travels
as a reference).
"""

from __future__ import annotations

from typing import Any

from paxtor.actors import Pid, send
from paxtor.actors.faults import FaultInjector
from tests.chaos import slow_disk

INJECTOR: FaultInjector | None = None


def apply_faults(ops: list[tuple[Any, ...]], reply_to: Pid, tag: Any) -> None:
    """Apply `ops` (("block", src, dst), ("partition", a, b), ("heal",), ("fsync_delay", s))
    here; ack to `reply_to`."""
    injector = INJECTOR
    for op in ops:
        kind = op[0]
        if kind == "fsync_delay":
            slow_disk.set_delay(op[1])
            continue
        if injector is None:
            send(reply_to, ("fault_ack", tag, "no_injector"))
            return
        if kind == "block":
            injector.block(op[1], op[2])
        elif kind == "partition":
            injector.partition(op[1], op[2])
        elif kind == "heal":
            injector.heal()
        else:
            send(reply_to, ("fault_ack", tag, f"unknown op {op!r}"))
            return
    send(reply_to, ("fault_ack", tag, "ok"))


def disk_stats(reply_to: Pid, tag: Any) -> None:
    """Tell `reply_to` how many fsyncs were delayed here, and on which thread."""
    send(reply_to, ("disk_stats", tag, dict(slow_disk.STATS)))
