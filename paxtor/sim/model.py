"""The simulated workload's operations as change functions, and their sequential model.

Each operation is a hashable *input* tuple. `change_for(input)` gives the
change function (and release justification) the cluster runs for it, and
`RegisterModel` applies the same function to a plain sequential register, so
the linearizability check asks exactly: does the replicated system behave as
if these change functions ran one at a time on one register?

Inputs:
  ("put", v)                         put_if_empty(v)
  ("get",)                           identity (a linearizable read)
  ("delete",)                        empty an unbound value (no-op otherwise)
  ("claim", pid, ref)                the lock register's `acquire` (`paxtor.locks.register`):
                                     take a free lock, else queue the request
  ("withdraw", pid, ref)             the lock register's `withdraw`: leave the queue
  ("release", epoch, binding, why)   the lock register's `release`: end the tenure if it
                                     is still in place and hand the lock to the first waiter
Outputs are the visible register after the operation (`Register.visible`). The
lock operations are the production lock register's change functions, so the
simulator checks its FIFO handoff and queue, not a model of them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from paxtor.locks.register import acquire, release, withdraw
from paxtor.paxos.register import (
    Binding,
    ChangeFunction,
    EndedBinding,
    Register,
    check_transition,
    identity,
    put_if_empty,
)

__all__ = ["RegisterModel", "change_for", "delete_unbound"]


def delete_unbound(register: Register) -> Register:
    """Empty a value that no binding protects (a plain PaxosKV delete)."""
    if register.filled and register.binding is None:
        return register.release()
    return register


def change_for(op: tuple[Any, ...]) -> tuple[ChangeFunction, EndedBinding | None]:
    """The change function and release justification of one workload input."""
    kind = op[0]
    if kind == "put":
        return put_if_empty(op[1]), None
    if kind == "get":
        return identity, None
    if kind == "delete":
        return delete_unbound, None
    if kind == "claim":
        return acquire(op[1], op[2]), None
    if kind == "withdraw":
        return withdraw(op[1], op[2]), None
    if kind == "release":
        ended = EndedBinding(op[1], op[2], op[3])
        return release(ended), ended
    raise ValueError(f"unknown operation {op!r}")


class RegisterModel:
    """The sequential specification: one register, the change functions applied in order."""

    def init(self) -> Hashable:
        return Register.empty()

    def step(self, state: Register, input: tuple[Any, ...]) -> tuple[Hashable, Any]:
        change, ended = change_for(input)
        new = change(state)
        check_transition(state, new, ended)
        new = new.visible()
        return new, new

    def is_read_only(self, input: tuple[Any, ...], output: Any) -> bool:
        """A get never changes the register: the checker places it without backtracking."""
        return input[0] == "get"


def release_input(epoch: int, binding: Binding, reason: str) -> tuple[Any, ...]:
    return ("release", epoch, binding, reason)
