"""A cluster singleton as one PaxosKV register: its states and the change functions.

Pure (no processes): `paxtor.name` proposes these. The register of a key goes

    empty --claim--> STARTING, bound to the keeper --handoff--> RUNNING, bound to the child
                         |                                          |
                         +--- start failed / keeper died ---> empty <-- child exited

The claim comes first, bound to the *keeper* (the process on the chosen node
that starts and parents the child), so two children for one key never run,
not even during ``init``; only then is the child started, and the key handed
off to it (epoch + 1). Values are plain tuples ``(state, node)``: acceptors
store them without knowing this module.
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.ids import Pid
from paxtor.paxos.register import Binding, ChangeFunction, EndedBinding, Register

__all__ = [
    "STARTING",
    "RUNNING",
    "STARTED",
    "claim_for_start",
    "bind_child",
    "register_pid",
    "state_of",
    "running_pid",
    "starting_keeper",
    "ended_binding",
]

STARTING = "starting"
RUNNING = "running"
#: The reason recorded when a keeper's claim ends because its child took over.
STARTED = "started"


def state_of(register: Register) -> str | None:
    """STARTING, RUNNING, or None for a free key (or a value that is not ours)."""
    value = register.value
    if register.filled and isinstance(value, tuple) and len(value) == 2 and value[0] in (STARTING, RUNNING):
        return value[0]
    return None


def _bound_pid(register: Register) -> Pid | None:
    binding = register.binding
    return binding.pid if binding is not None else None


def running_pid(register: Register) -> Pid | None:
    """The singleton's pid when the key is RUNNING, else None."""
    return _bound_pid(register) if state_of(register) == RUNNING else None


def starting_keeper(register: Register) -> Pid | None:
    """The keeper starting the singleton when the key is STARTING, else None."""
    return _bound_pid(register) if state_of(register) == STARTING else None


def claim_for_start(keeper: Pid, node: str) -> ChangeFunction:
    """A free key becomes STARTING, bound to `keeper` on `node`; a taken key stays as it is."""

    def change(register: Register) -> Register:
        if register.filled:
            return register
        return register.claim((STARTING, node), pid=keeper)

    return change


def bind_child(epoch: int, keeper: Pid, child: Pid, node: str) -> ChangeFunction:
    """Hand the key from `keeper`'s claim (tenure `epoch`) to its started `child`.

    Proposed with ``ended=ended_binding(epoch, keeper, STARTED)``. If the claim
    is gone (the keeper's tenure was released), nothing changes and the
    keeper must stop the child.
    """

    def change(register: Register) -> Register:
        if not register.is_bound_to(epoch, Binding(pid=keeper)):
            return register
        return register.handoff((RUNNING, node), pid=child)

    return change


def register_pid(pid: Pid, node: str) -> ChangeFunction:
    """`Via` registration of an already running process: a free key becomes RUNNING, bound to it."""

    def change(register: Register) -> Register:
        if register.filled:
            return register
        return register.claim((RUNNING, node), pid=pid)

    return change


def ended_binding(epoch: int, pid: Pid, reason: Any) -> EndedBinding:
    """The justification for ending tenure `epoch` bound to `pid`."""
    return EndedBinding(epoch, Binding(pid=pid), reason)
