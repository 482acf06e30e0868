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
  ("batch", ops)                     one round of a lock home (`paxtor.locks.home_engine`): the
                                     lock register's `batch_change` of the lock operations
                                     ``ops`` (``("acquire", pid, ref)``, ``("withdraw", pid,
                                     ref)``, ``("release", epoch, pid, reason)``, ``("read",)``),
                                     applied in order in one round: one operation of the history
  ("release", epoch, binding, why)   a lock tenure ended by the owner's node (its exit, a
                                     reap, a vouch): `paxtor.locks.register.release`, which
                                     hands the lock to the first waiter
  ("claim_start", keeper, node)      the name register's `claim_for_start`
  ("bind", epoch, keeper, child, node)
                                     the name register's `bind_child`, justified by the end
                                     of the keeper's claim (`ended_binding(..., STARTED)`)
  ("end", epoch, binding, why)       a singleton tenure ended by its node: the names bucket's
                                     release, ``release_if_bound(ended, empty_released)``
Outputs are the visible register after the operation (`Register.visible`). The
lock and name operations are the production registers' change functions
(`paxtor.locks.register`, `paxtor.singletons.register`), so the simulator
checks their FIFO handoff, queue and start protocol, not a model of them. The
cluster may run a deliberately broken change instead (`paxtor.sim.mutations`);
the model never does.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from paxtor.locks.register import batch_change, release
from paxtor.paxos.register import (
    ChangeFunction,
    EndedBinding,
    Register,
    check_transition,
    empty_released,
    identity,
    put_if_empty,
    release_if_bound,
)
from paxtor.singletons.register import STARTED, bind_child, claim_for_start, ended_binding

__all__ = ["RegisterModel", "change_for", "delete_unbound"]


def delete_unbound(register: Register) -> Register:
    """Empty a value that no binding protects (a plain PaxosKV delete)."""
    if register.filled and register.binding is None:
        return register.release()
    return register


def change_for(op: tuple[Any, ...]) -> tuple[ChangeFunction, EndedBinding | None]:
    """The change function and release justification of one workload input."""
    kind = op[0]
    if kind == "get":
        return identity, None
    if kind == "put":
        return put_if_empty(op[1]), None
    if kind == "delete":
        return delete_unbound, None
    if kind == "batch":
        return batch_change(list(op[1]))
    if kind == "release":
        ended = EndedBinding(op[1], op[2], op[3])
        return release(ended), ended
    if kind == "claim_start":
        return claim_for_start(op[1], op[2]), None
    if kind == "bind":
        return bind_child(op[1], op[2], op[3], op[4]), ended_binding(op[1], op[2], STARTED)
    if kind == "end":
        ended = EndedBinding(op[1], op[2], op[3])
        return release_if_bound(ended, empty_released), ended
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
        """A get (or a lock batch of reads) never changes the register: the checker places
        it without backtracking."""
        kind = input[0]
        return kind == "get" or (kind == "batch" and all(op[0] == "read" for op in input[1]))
