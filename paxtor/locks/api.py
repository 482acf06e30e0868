"""Cluster-wide locks: fair, reentrant, fenced, released when the owner exits.

``token = paxtor.lock(key)`` blocks the calling process until it owns the
lock on `key` in the whole cluster, and returns the fencing token (the lock
register's epoch: larger for every new owner, never reused). At most one
live process owns a lock at any time; see docs/protocol.md for the lease
model that makes this hold across partitions, and `paxtor.locks.fence` for the
resource side of the token (a process paused past its lease still believes
it owns the lock; its writes carry an old token and are refused).

How (the register protocol is in `paxtor.locks.register`, the rounds are
proposed by the key's home, `paxtor.locks.home`):

- ``lock`` sends an ``acquire``: a free lock is claimed (bound to the
  caller's pid), else the request joins the FIFO queue in the register. A
  waiter then sleeps in ``receive`` until a `LockGranted` for its request
  comes: when a tenure ends (``unlock``, or the owner exits on any node),
  the release round hands the lock to the queue's head (epoch + 1) and the
  new owner's node agent wakes that one process. One round per handoff, no
  stampede.
- No waiter depends on that one message forever: it re-reads the register
  after `RECHECK_SAFETY` seconds without news, and every `RECHECK_FAST`
  seconds while the wake-up may not be able to reach it (the owner's node
  is not connected to this one, or the mesh is incomplete: a node that
  peers reach and this one does not). A lock released on the other side of
  such a partition is thus found within about `RECHECK_FAST`.
- Ownership is granted within one lease term (docs/protocol.md): a
  decision taken elsewhere is trusted if this node's lease term is still
  the one in which the request was sent (``hold`` says so); otherwise the
  waiter confirms with a read round in the current term.
- A waiter that times out withdraws its request before `TimeoutError`
  returns; if the lock reached it meanwhile, it is released to the next one.
  A waiter that dies is withdrawn by its node's `LockAgent`.

The owner releases by exiting (any reason, any node) or by ``unlock``;
``with locked(key) as token:`` releases at the end of the block unless the
process already held the lock when the block began. ``lock`` is reentrant
(the owner gets its token again at once) and not counted: one ``unlock``
releases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from greenlet import GreenletExit

from paxtor import paxos
from paxtor.actors import Pid, ReceiveTimeout, Ref, receive, self_pid
from paxtor.actors.distribution import distributed_node
from paxtor.actors.errors import PaxtorError, PaxtorTimeout
from paxtor.actors.primitives import make_ref
from paxtor.locks.agent import LockTable, lock_table, withdraw_request
from paxtor.locks.home import LockRouting, run_op
from paxtor.locks.messages import LOCKS_BUCKET, LockGranted, Recheck
from paxtor.locks.register import UNLOCKED, Op, is_queued, owner_of
from paxtor.paxos.register import Register
from paxtor.rounds import Deadline, lease_term, paxos_key

__all__ = ["lock", "try_lock", "unlock", "locked", "LockNotHeld", "LOCKS_BUCKET"]

log = structlog.get_logger(__name__)

#: How long a waiter that timed out keeps trying to withdraw before its agent takes over.
WITHDRAW_TIMEOUT = 2.0
#: The reason recorded when a waiter that timed out releases a lock that reached it.
TIMED_OUT = "lock_timeout"
#: How long try_lock waits for a quorum's answer before it raises NoQuorum.
TRY_TIMEOUT = 5.0
#: A waiter re-reads its lock after this long without a wake-up, whatever the cluster's state ...
RECHECK_SAFETY = 5.0
#: ... and this often while a wake-up may not be able to reach it (see the module doc).
RECHECK_FAST = 0.5


class LockNotHeld(PaxtorError, RuntimeError):
    """`unlock` by a process that does not own the lock."""


# -- the API ---------------------------------------------------------------------------


def lock(key: Any, timeout: float | None = None) -> int:
    """Block until the calling process owns the lock on `key`; return its fencing token.

    Reentrant: the owner gets its token at once. `timeout` (seconds, None =
    forever) raises `TimeoutError`, leaving no request behind. `key` is any
    value the wire can carry.
    """
    deadline = Deadline(timeout)
    me, k, table, held = _reentry(key)
    if held is not None:
        return held
    request = _Request(me, k, make_ref(), table.routing)
    table.start_waiting(me, k, request.ref)
    try:
        token = _acquire(table, request, deadline)
    except GreenletExit:
        raise  # the process is exiting: the agent withdraws its request when it is gone
    except TimeoutError:
        _stop_waiting(table, me)
        if request.sent:
            _give_up(table, request)
        raise PaxtorTimeout(f"lock({key!r}) timed out after {timeout} s") from None
    except BaseException:
        _stop_waiting(table, me)
        if request.sent:
            table.withdraw_later(me, k, request.ref)
        raise
    _stop_waiting(table, me)
    return token


def try_lock(key: Any) -> int | None:
    """Take the lock on `key` if it is free now (or already ours): its token; None if taken.

    Never queues. Raises `paxtor.paxos.NoQuorum` if the cluster cannot answer now.
    """
    me, k, table, held = _reentry(key)
    if held is not None:
        return held
    term = paxos.lease_term()
    if term is None:
        raise paxos.NoQuorum("this node holds no lease: it cannot grant a lock now")
    deadline = Deadline(TRY_TIMEOUT)
    ref = make_ref()
    try:
        reg = run_op(k, ("try", me, ref), deadline, table.routing)
        while owner_of(reg) == me:
            token = _hold(table, me, k, reg.epoch, term)
            if token is not None:
                return token
            term = lease_term(deadline)  # the term moved on during the round: confirm
            reg = run_op(k, ("read",), deadline, table.routing)
    except TimeoutError:
        table.withdraw_later(me, k, ref)  # in case the claim was chosen after all
        raise paxos.NoQuorum(f"no quorum answered try_lock({key!r}) in time") from None
    return None


def unlock(key: Any) -> None:
    """Release the lock on `key`, held by the calling process; the next waiter gets it.

    Raises `LockNotHeld` if the caller does not own it. Waits for a quorum if
    needed (a holder cut off from the quorum loses its lease, and with it the
    lock, by being killed).
    """
    me = self_pid()
    k = paxos_key(key)
    table = lock_table()
    token = table.token(me, k)
    if token is None:
        raise LockNotHeld(f"{me!r} does not hold the lock on {key!r}")
    _release(table, me, k, token)


@contextmanager
def locked(key: Any, timeout: float | None = None) -> Iterator[int]:
    """``with locked(key) as token:`` hold the lock for the block.

    Released at the end (also on an exception) unless the process held it
    already when the block began; a process that exits inside the block
    releases it by exiting.
    """
    me = self_pid()
    k = paxos_key(key)
    table = lock_table()
    already = table.token(me, k) is not None
    token = lock(key, timeout)
    try:
        yield token
    except GreenletExit:
        raise
    except BaseException:
        if not already and table.token(me, k) is not None:
            _release(table, me, k, token)
        raise
    if not already and table.token(me, k) is not None:
        _release(table, me, k, token)


# -- acquiring ---------------------------------------------------------------------------


def _reentry(key: Any) -> tuple[Pid, bytes, LockTable, int | None]:
    """The caller, the lock's key, this node's table, and the caller's token if it holds
    the lock already (and this node's lease still holds: reentrancy needs no round)."""
    me = self_pid()
    k = paxos_key(key)
    table = lock_table()
    held = table.token(me, k)
    if held is not None and paxos.lease_term() is None:
        held = None
    return me, k, table, held


class _Request:
    """One `lock` call: who asks, for which key, under which ref; whether it was sent."""

    __slots__ = ("pid", "key", "ref", "routing", "sent")

    def __init__(self, pid: Pid, key: bytes, ref: Ref, routing: LockRouting) -> None:
        self.pid = pid
        self.key = key
        self.ref = ref
        self.routing = routing
        self.sent = False  # a round carrying the request may have run (it may be queued)

    def run(self, op: Op, deadline: Deadline) -> Register:
        if op[0] == "acquire":
            self.sent = True
        return run_op(self.key, op, deadline, self.routing)


def _acquire(table: LockTable, request: _Request, deadline: Deadline) -> int:
    """Queue the request (or take the lock), then wait for the handoff to it."""
    me, k, ref = request.pid, request.key, request.ref
    enqueue: Op = ("acquire", me, ref)
    term = lease_term(deadline)
    reg = request.run(enqueue, deadline)
    while True:
        if owner_of(reg) == me:
            token = _hold(table, me, k, reg.epoch, term)
            if token is not None:
                return token
            # the lease term changed since the request was sent: confirm in this one
            term = lease_term(deadline)
            reg = request.run(("read",), deadline)
            continue
        if not is_queued(reg, me, ref):
            # the request left the queue without winning (the lock reached us while
            # this node's lease had lapsed, and passed on): queue up again
            term = lease_term(deadline)
            reg = request.run(enqueue, deadline)
            continue
        grant = _await_wakeup(k, ref, deadline, _recheck_after(reg))
        # a wake-up for a handoff no later than the last answer, which showed the request
        # queued, is stale: the lock reached the request, then left it (released for
        # noconnection while this node's lease had lapsed); trusted in this term, it
        # would grant a tenure that is over
        if grant is not None and grant.epoch > reg.epoch:
            token = _hold(table, me, k, grant.epoch, term)
            if token is not None:
                table.handoffs += 1
                return token
        # a wake-up that cannot be trusted in this term, or one that may have been lost
        term = lease_term(deadline)
        reg = request.run(("read",), deadline)


def _hold(table: LockTable, me: Pid, k: bytes, epoch: int, term: int) -> int | None:
    """Record the ownership if this node's lease is still in `term`; the token, or None."""
    if not paxos.hold(me, LOCKS_BUCKET, k, epoch, term):
        return None
    table.record_owner(me, k, epoch)
    return epoch


def _recheck_after(reg: Register) -> float:
    """How long a waiter may trust the wake-up to come (see the module doc)."""
    dist = distributed_node()
    if dist is None:
        return RECHECK_SAFETY
    owner = owner_of(reg)
    if owner is not None and owner.node != dist.name and owner.node not in dist.peers.up:
        return RECHECK_FAST
    return RECHECK_FAST if dist.unreached() else RECHECK_SAFETY


def _await_wakeup(k: bytes, ref: Ref, deadline: Deadline, recheck: float) -> LockGranted | None:
    """The `LockGranted` for request `ref`, or None on a `Recheck` or after `recheck`
    seconds (read the register again); TimeoutError at the deadline."""

    def wakeup(m: Any) -> bool:
        cls = m.__class__
        return (cls is LockGranted and m.ref == ref and m.key == k) or cls is Recheck

    try:
        msg = receive(wakeup, timeout=deadline.cap(recheck))
    except ReceiveTimeout:
        if deadline.expired():
            raise TimeoutError from None
        return None
    return msg if msg.__class__ is LockGranted else None


def _stop_waiting(table: LockTable, me: Pid) -> None:
    """No more wake-ups come once the table says so; drop any that came meanwhile."""
    table.stop_waiting(me)
    stale = lambda m: m.__class__ is LockGranted or m.__class__ is Recheck  # noqa: E731
    while True:
        try:
            receive(stale, timeout=0)
        except ReceiveTimeout:
            return


def _give_up(table: LockTable, request: _Request) -> None:
    """After a timeout: withdraw the request (releasing the lock if it reached us meanwhile).

    Without a lease now, no round can succeed soon: the node's lock agent
    withdraws it once the quorum is back, so the caller is not held up.
    """
    try:
        if paxos.lease_term() is None:
            raise TimeoutError
        withdraw_request(request.pid, request.key, request.ref, TIMED_OUT, Deadline(WITHDRAW_TIMEOUT))
    except TimeoutError:
        log.info("lock_withdraw_deferred", pid=repr(request.pid))
        table.withdraw_later(request.pid, request.key, request.ref)


# -- releasing ---------------------------------------------------------------------------


def _release(table: LockTable, me: Pid, k: bytes, token: int) -> None:
    """End `me`'s tenure `token`; the key's home hands the lock to the next waiter.

    Unheld first: the round that ends the tenure tells this node's lease keeper,
    which kills a holder it still sees as the owner (one that did not give it up)."""
    paxos.unhold(me, LOCKS_BUCKET, k, token)
    run_op(k, ("release", token, me, UNLOCKED), Deadline(None), table.routing)
    table.forget_owner(me, k)
