"""A fair lock as one PaxosKV register: its value, and the change functions on it.

Pure (no processes, no clocks): `paxtor.lock` proposes these changes and the
locks bucket applies `hand_to_next` when a tenure ends, so the whole protocol
can be tested as plain functions over `Register`.

The register of a held lock is bound to the owner's pid (``Binding(pid=...)``)
and its epoch is the fencing token. Its value is ``(grant, waiters)``:

- ``grant``: the `Ref` of the request that won the current tenure, so the
  wake-up sent to the next owner names the request it answers (a wake-up
  left over from an earlier, abandoned request can never be mistaken for it);
- ``waiters``: the FIFO queue, a tuple of ``(pid, ref)`` requests.

Plain tuples, not a dataclass: the value is stored by acceptors that decode it
without knowing this module.

Fairness: a request joins the tail of the queue, and when a tenure ends (the
owner unlocks or exits) `hand_to_next` gives the lock to the head of the queue
in the same round, as a handoff (epoch + 1), so a release never lets the
waiters race for the lock.
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.ids import Pid, Ref
from paxtor.paxos.register import (
    Binding,
    ChangeFunction,
    ChangeRejected,
    EndedBinding,
    Register,
    release_if_bound,
)

__all__ = [
    "Waiter",
    "UNLOCKED",
    "acquire",
    "try_acquire",
    "withdraw",
    "hand_to_next",
    "release",
    "owner_of",
    "grant_of",
    "waiters_of",
    "is_queued",
    "tenure_of",
    "ended_binding",
    "Op",
    "batch_change",
    "ops_of_pid",
]

Waiter = tuple[Pid, Ref]

#: The exit reason recorded when an owner unlocks (its tenure ends, it lives on).
UNLOCKED = "unlocked"


def _parse(register: Register) -> tuple[Ref, tuple[Waiter, ...]]:
    value = register.value
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], tuple)):
        raise ChangeRejected(f"not a lock register value: {value!r}")
    return value[0], value[1]


def owner_of(register: Register) -> Pid | None:
    """The pid holding the lock, or None when it is free."""
    if register.is_empty or register.binding is None:
        return None
    return register.binding.pid


def grant_of(register: Register) -> Ref | None:
    """The request that won the current tenure (None when free)."""
    return _parse(register)[0] if register.filled else None


def waiters_of(register: Register) -> tuple[Waiter, ...]:
    """The queued requests, first to be served first."""
    return _parse(register)[1] if register.filled else ()


def is_queued(register: Register, pid: Pid, ref: Ref) -> bool:
    """True if request ``(pid, ref)`` waits in the queue."""
    return (pid, ref) in waiters_of(register)


def tenure_of(register: Register, pid: Pid, reason: Any) -> EndedBinding | None:
    """The `EndedBinding` that ends `pid`'s tenure for `reason`, if `pid` owns the lock."""
    if owner_of(register) != pid:
        return None
    assert register.binding is not None
    return EndedBinding(register.epoch, register.binding, reason)


def acquire(pid: Pid, ref: Ref) -> ChangeFunction:
    """`lock()`: take a free lock; keep it if `pid` owns it (reentrant); else queue up once."""

    def change(register: Register) -> Register:
        if register.is_empty:
            return register.claim((ref, ()), pid=pid)
        grant, waiters = _parse(register)
        if owner_of(register) == pid or (pid, ref) in waiters:
            return register
        return register.with_value((grant, (*waiters, (pid, ref))))

    return change


def try_acquire(pid: Pid, ref: Ref) -> ChangeFunction:
    """`try_lock()`: take a free lock; otherwise change nothing (never queue)."""

    def change(register: Register) -> Register:
        if register.is_empty:
            return register.claim((ref, ()), pid=pid)
        return register

    return change


def withdraw(pid: Pid, ref: Ref | None = None) -> ChangeFunction:
    """Leave the queue: request ``(pid, ref)``, or every request of `pid` if `ref` is None.

    Ownership is not touched (ending a tenure needs its `EndedBinding`, see `release`).
    """

    def change(register: Register) -> Register:
        if register.is_empty:
            return register
        grant, waiters = _parse(register)
        kept = tuple(w for w in waiters if not (w[0] == pid and (ref is None or w[1] == ref)))
        if len(kept) == len(waiters):
            return register
        return register.with_value((grant, kept))

    return change


def hand_to_next(register: Register, ended: EndedBinding) -> Register:
    """The locks bucket's release policy: the first waiter gets the lock in this round.

    Requests of the pid whose tenure ended are dropped with it (an owner never
    waits, but a dead pid must not be served). No waiter: the lock is free.
    """
    _, waiters = _parse(register)
    gone = ended.binding.pid
    queue = tuple(w for w in waiters if w[0] != gone)
    if not queue:
        return register.release()
    (pid, ref), rest = queue[0], queue[1:]
    return register.handoff((ref, rest), pid=pid)


def release(ended: EndedBinding) -> ChangeFunction:
    """End the tenure `ended` names (if it is still in place) and serve the next waiter."""
    return release_if_bound(ended, hand_to_next)


def ended_binding(epoch: int, pid: Pid, reason: Any) -> EndedBinding:
    """The justification for ending `pid`'s tenure `epoch` of a lock."""
    return EndedBinding(epoch, Binding(pid=pid), reason)


# -- operations: what a request asks the key's home to apply, as plain data -------------
#
#   ("acquire", pid, ref)          lock(): take, or queue up
#   ("try", pid, ref)              try_lock(): take if free
#   ("withdraw", pid, ref | None)  leave the queue
#   ("release", epoch, pid, reason) end pid's tenure `epoch`, serve the next waiter
#   ("read",)                      nothing (a linearizable read)
#
# Operations travel between nodes (change functions cannot), and several are
# applied in one round, in arrival order: a batch.

Op = tuple


def _op_change(op: Op) -> tuple[ChangeFunction | None, EndedBinding | None]:
    kind = op[0]
    if kind == "acquire":
        return acquire(op[1], op[2]), None
    if kind == "try":
        return try_acquire(op[1], op[2]), None
    if kind == "withdraw":
        return withdraw(op[1], op[2]), None
    if kind == "release":
        ended = ended_binding(op[1], op[2], op[3])
        return release(ended), ended
    if kind == "read":
        return None, None
    raise ValueError(f"unknown lock operation {op!r}")


def batch_change(ops: list[Op]) -> tuple[ChangeFunction, EndedBinding | None]:
    """One change applying `ops` in order, and the round's `EndedBinding` (at most one release)."""
    changes: list[ChangeFunction] = []
    ended: EndedBinding | None = None
    for op in ops:
        change, op_ended = _op_change(op)
        if op_ended is not None:
            if ended is not None:
                raise ValueError("a batch ends at most one tenure")
            ended = op_ended
        if change is not None:
            changes.append(change)

    def change(register: Register) -> Register:
        for one in changes:
            register = one(register)
        return register

    return change, ended


def ops_of_pid(ops: list[Op], pid: Pid, ref: Ref | None) -> bool:
    """True if `ops` hold a request ``(pid, ref)`` to take the lock (its caller gets the result)."""
    return any(op[0] in ("acquire", "try") and op[1] == pid and op[2] == ref for op in ops)
