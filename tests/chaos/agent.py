"""Runs inside a chaos node's OS process: the fault injector the nemesis drives.

`node_main` installs `INJECTOR`; the harness reaches it by remote spawn of
`apply_faults` on that node (a module-level function travels as a reference).
"""

from __future__ import annotations

from typing import Any

from paxtor.actors import Pid, send
from paxtor.actors.faults import FaultInjector

INJECTOR: FaultInjector | None = None


def apply_faults(ops: list[tuple[Any, ...]], reply_to: Pid, tag: Any) -> None:
    """Apply `ops` (("block", src, dst), ("partition", a, b), ("heal",)) here; ack to `reply_to`."""
    injector = INJECTOR
    if injector is None:
        send(reply_to, ("fault_ack", tag, "no_injector"))
        return
    for op in ops:
        kind = op[0]
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
