"""A fair lock as one PaxosKV register: its value, and the change functions on it.

Pure (no processes, no clocks): `paxtor.lock` proposes these changes and the
locks bucket applies `hand_to_next` when a tenure ends, so the whole protocol
can be tested as plain functions over `Register`.

The register of a held lock is bound to the owner's pid (``Binding(pid=...)``)
and its epoch is the fencing token. Its value is ``(grant, waiters)``:

- ``grant``: the `Ref` of the request that won the current tenure, so the
  wake-up sent to the next owner names the request it answers (a wake-up
  left over from an earlier, abandoned request can never be mistaken for it);
- ``waiters``: the FIFO queue of requests ``(pid, ref)``, stored flat: one
  tuple of scalars, six per request, ``pid.node, pid.incarnation,
  pid.serial, ref.node, ref.incarnation, ref.serial``.

Plain tuples of scalars, not a dataclass: the value is stored by acceptors
that decode it without knowing this module, and it is encoded and decoded
several times per round (accept, log record, reply) on a busy lock: as nested
tuples of Pids and Refs each request cost the wire codec three callbacks per
pass, flat it costs none. A queue in the nested form (``((pid, ref), ...)``)
is read too, so logs that hold it stay readable.

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
    "has_waiters",
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


_STRIDE = 6  # scalars per queued request


def _entry(pid: Pid, ref: Ref) -> tuple[Any, ...]:
    return (pid.node, pid.incarnation, pid.serial, ref.node, ref.incarnation, ref.serial)


def _parse(register: Register) -> tuple[Ref, tuple[Any, ...]]:
    """The grant and the flat queue of a lock register's value."""
    value = register.value
    if not (value.__class__ is tuple and len(value) == 2 and value[1].__class__ is tuple):
        raise ChangeRejected(f"not a lock register value: {value!r}")
    queue = value[1]
    if queue and queue[0].__class__ is tuple:  # the nested form, still read
        queue = tuple(x for pid, ref in queue for x in _entry(pid, ref))
    if len(queue) % _STRIDE:
        raise ChangeRejected(f"not a lock queue: {queue!r}")
    return value[0], queue


def _request_at(queue: tuple[Any, ...], i: int) -> Waiter:
    return Pid(queue[i], queue[i + 1], queue[i + 2]), Ref(queue[i + 3], queue[i + 4], queue[i + 5])


def _find(queue: tuple[Any, ...], pid: Pid, ref: Ref) -> bool:
    """True if request ``(pid, ref)`` is in the flat `queue`."""
    serial, ref_serial = pid.serial, ref.serial
    for i in range(0, len(queue), _STRIDE):
        if queue[i + 2] == serial and queue[i + 5] == ref_serial and queue[i : i + _STRIDE] == _entry(pid, ref):
            return True
    return False


def _without(queue: tuple[Any, ...], pid: Pid, ref: Ref | None) -> tuple[Any, ...]:
    """The flat `queue` without `pid`'s request `ref` (every request of `pid` if `ref` is None)."""
    who = (pid.node, pid.incarnation, pid.serial)
    what = None if ref is None else (ref.node, ref.incarnation, ref.serial)
    kept: list[Any] = []
    for i in range(0, len(queue), _STRIDE):
        if queue[i : i + 3] == who and (what is None or queue[i + 3 : i + _STRIDE] == what):
            continue
        kept.extend(queue[i : i + _STRIDE])
    return queue if len(kept) == len(queue) else tuple(kept)


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
    if not register.filled:
        return ()
    queue = _parse(register)[1]
    return tuple(_request_at(queue, i) for i in range(0, len(queue), _STRIDE))


def has_waiters(register: Register) -> bool:
    """True if requests wait in the queue (``bool(waiters_of(register))``, cheaper)."""
    return register.filled and bool(_parse(register)[1])


def is_queued(register: Register, pid: Pid, ref: Ref) -> bool:
    """True if request ``(pid, ref)`` waits in the queue."""
    return register.filled and _find(_parse(register)[1], pid, ref)


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
        grant, queue = _parse(register)
        if owner_of(register) == pid or _find(queue, pid, ref):
            return register
        return register.with_value((grant, queue + _entry(pid, ref)))

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
        grant, queue = _parse(register)
        kept = _without(queue, pid, ref)
        if kept is queue:
            return register
        return register.with_value((grant, kept))

    return change


def hand_to_next(register: Register, ended: EndedBinding) -> Register:
    """The locks bucket's release policy: the first waiter gets the lock in this round.

    Requests of the pid whose tenure ended are dropped with it (an owner never
    waits, but a dead pid must not be served). No waiter: the lock is free.
    """
    _, queue = _parse(register)
    gone = ended.binding.pid
    if gone is not None:
        queue = _without(queue, gone, None)
    if not queue:
        return register.release()
    pid, ref = _request_at(queue, 0)
    return register.handoff((ref, queue[_STRIDE:]), pid=pid)


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

Op = tuple[Any, ...]


def _op_change(op: Op) -> tuple[ChangeFunction | None, EndedBinding | None]:
    kind = op[0]
    if kind in ("acquire", "try", "withdraw"):
        # what a request puts in the value is a Pid and a Ref: it can travel (see `batch_change`)
        if len(op) != 3 or op[1].__class__ is not Pid or not (
            op[2].__class__ is Ref or (kind == "withdraw" and op[2] is None)
        ):
            raise ValueError(f"malformed lock operation {op!r}")
        if kind == "acquire":
            return acquire(op[1], op[2]), None  # type: ignore[arg-type]  # a Ref: checked above
        if kind == "try":
            return try_acquire(op[1], op[2]), None  # type: ignore[arg-type]  # a Ref: checked above
        return withdraw(op[1], op[2]), None
    if kind == "release":
        ended = ended_binding(op[1], op[2], op[3])
        return release(ended), ended
    if kind == "read":
        return None, None
    raise ValueError(f"unknown lock operation {op!r}")


def batch_change(ops: list[Op]) -> tuple[ChangeFunction, EndedBinding | None]:
    """One change applying `ops` in order, and the round's `EndedBinding` (at most one release).

    The ops are checked (ValueError): the change only ever puts their Pids and
    Refs into a lock value, so every value it produces can travel on the wire.
    """
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

    def apply_all(register: Register) -> Register:
        for one in changes:
            register = one(register)
        return register

    return apply_all, ended


def ops_of_pid(ops: list[Op], pid: Pid, ref: Ref | None) -> bool:
    """True if `ops` hold a request ``(pid, ref)`` to take the lock (its caller gets the result)."""
    return any(op[0] in ("acquire", "try") and op[1] == pid and op[2] == ref for op in ops)
