"""The home of a lock: the one node that proposes every round on its key.

PaxosKV is leaderless: any node may propose on any key. On a contended lock
that is a problem. Rounds from several nodes on one key duel (each new ballot
preempts the other's), and the node that wrote the key last keeps winning
(its next round skips phase 1) while a request that lost a few times backs
off ever longer: waiters on other nodes would never even reach the FIFO
queue. So once a node has seen a lock contended (a round's result had
waiters, or a round of its own could not land), it sends its operations on
that key, as plain data (`register.Op`), to the `LockHome` of the
key's home node (rendezvous hashing over the nodes it sees), which proposes
them. Uncontended keys are proposed where the caller runs: no extra hop.
With one proposer per key, rounds do not conflict, the one-round-trip path
is the rule, and the requests that arrive while a round is in flight are
applied together in the next one (a batch: any number of queue changes and
at most one release), in arrival order.

Only liveness depends on this. If nodes disagree on the home (while the
membership changes) or the home cannot be reached, rounds come from more
than one node, or from the caller's node itself: Paxos keeps them safe.

After a batch whose release handed the lock on, the home sends `LockWake`
to the new owner's node agent (`paxtor.locks.agent`), unless the new owner's
own request was in that batch: its reply says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from paxtor import paxos
from paxtor.actors import (
    ChildSpec,
    Down,
    Exit,
    GenServer,
    NoReply,
    Pid,
    Ref,
    call,
    monitor,
    reply,
    self_pid,
    trap_exits,
)
from paxtor.actors.messages import NOCONNECTION, NOPROC, Caller, CallError, CallTimeout
from paxtor.actors.node import current_node
from paxtor.actors.timers import TimerHandle, send_after
from paxtor.locks.home_engine import (
    Answer,
    CancelDelay,
    LockHomeEngine,
    ProposeBatch,
    StartDelay,
    Wake,
    wake_for_batch,
)
from paxtor.locks.messages import LOCK_HOME, LOCKS_BUCKET, LockWake, send_wake
from paxtor.locks.register import Op, batch_change, grant_of, has_waiters, owner_of
from paxtor.paxos.envelopes import PROPOSER_NAME, ProposeDone
from paxtor.paxos.proposer_engine import ProposeRequest
from paxtor.paxos.register import Register
from paxtor.placement import lock_home_candidates, rendezvous_order
from paxtor.rounds import QUORUM_WAIT, Deadline

__all__ = ["LockHome", "LockRouting", "run_op", "apply_batch", "wake_new_owner"]

log = structlog.get_logger(__name__)

#: Added to a round's own timeout for the call that carries it.
CALL_SLACK = 5.0
#: A round's timeout when the caller has no deadline (PaxosKV's default).
DEFAULT_ROUND_TIMEOUT = 5.0
#: How long a round proposed here may take before the key counts as contended
#: (a round that cannot land is dueling with other proposers: it goes home).
LOCAL_ATTEMPT = 0.05
#: How long a request to queue behind a held lock may wait to share the release's round.
ENQUEUE_DELAY = 0.002
#: A key seen with waiters stays routed to its home this long after.
HOT_TTL = 5.0
#: Past this many remembered hot keys, the expired ones are dropped.
HOT_KEYS_MAX = 1024
#: A peer that answered "no lock home here" is not chosen as a home for this long.
HOMELESS_TTL = 30.0


class LockRouting:
    """A node's memory for routing lock rounds: which keys are contended, and
    which peers have no lock home (not Paxtor nodes: never chosen as a home)."""

    __slots__ = ("hot", "homeless")

    def __init__(self) -> None:
        self.hot: dict[bytes, float] = {}  # key -> until when it counts as contended
        self.homeless: dict[str, float] = {}  # node -> until when it is skipped

    def is_hot(self, key: bytes) -> bool:
        until = self.hot.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self.hot[key]
        return False

    def mark_hot(self, key: bytes) -> None:
        now = time.monotonic()
        if len(self.hot) >= HOT_KEYS_MAX:
            for stale in [k for k, until in self.hot.items() if until <= now]:
                del self.hot[stale]
        self.hot[key] = now + HOT_TTL

    def home_of(self, key: bytes) -> str:
        """The node whose `LockHome` proposes the rounds of lock `key` (among the
        visible Paxtor nodes this one is connected to, itself included: `paxtor.placement`)."""
        now = time.monotonic()
        here = current_node().name
        candidates = [n for n in lock_home_candidates() if n == here or self.homeless.get(n, 0.0) <= now]
        return rendezvous_order(key, candidates or [here])[0]

    def mark_homeless(self, node: str) -> None:
        self.homeless[node] = time.monotonic() + HOMELESS_TTL


def run_op(key: bytes, op: Op, deadline: Deadline, routing: LockRouting) -> Register:
    """Apply `op` to lock `key`; the chosen register.

    A key this node has seen contended lately (a result with waiters, or a
    round here that could not land within `LOCAL_ATTEMPT`) goes to its home;
    any other is proposed here, which costs no extra hop (one client alone
    on a key is the common case, and it cannot duel with itself). Waits for
    a quorum and tries again across `NoQuorum` until `deadline` (then
    `TimeoutError`).
    """
    while True:
        if deadline.expired():
            raise TimeoutError("no quorum for the lock before the deadline")
        round_timeout = deadline.cap(DEFAULT_ROUND_TIMEOUT)
        if routing.is_hot(key):
            outcome = _at_home(key, op, round_timeout, deadline.cap(round_timeout + CALL_SLACK), routing)
        else:
            outcome = apply_batch(key, [op], min(round_timeout, LOCAL_ATTEMPT))
            if outcome[0] == "ok":
                wake_after_batch(key, [op], outcome[1])
            elif outcome[0] == "no_quorum":
                routing.mark_hot(key)  # most likely dueling with the home's rounds: join them
                continue
        kind = outcome[0]
        if kind == "ok":
            if has_waiters(outcome[1]):
                routing.mark_hot(key)
            return outcome[1]
        if kind == "no_quorum":
            try:
                paxos.wait_for_quorum(timeout=deadline.cap(QUORUM_WAIT))
            except paxos.NoQuorum:
                pass
            continue
        raise outcome[1]


def _at_home(key: bytes, op: Op, round_timeout: float, call_timeout: float, routing: LockRouting) -> tuple:
    """`op` applied by the key's home (batched there); proposed here if the home is unreachable.

    `call_timeout` is capped by the caller's deadline: a home that stopped answering (a
    paused process) must not hold a `lock(key, timeout)` past its timeout.
    """
    home = routing.home_of(key)
    try:
        return call((LOCK_HOME, home), (key, op, round_timeout), timeout=call_timeout)
    except CallTimeout:
        return ("no_quorum", "the lock's home did not answer in time")
    except CallError as exc:
        if exc.reason not in (NOPROC, NOCONNECTION):
            raise
        log.info("lock_home_unreachable", home=home, reason=exc.reason)
        if exc.reason == NOPROC:
            routing.mark_homeless(home)
    outcome = apply_batch(key, [op], round_timeout)
    if outcome[0] == "ok":
        wake_after_batch(key, [op], outcome[1])
    return outcome


def apply_batch(key: bytes, ops: list[Op], timeout: float | None) -> tuple:
    """One round applying `ops` to lock `key`: ``("ok", register)``, ``("no_quorum", why)``
    or ``("error", exception)``."""
    try:
        change, ended = batch_change(ops)
        return ("ok", paxos.propose(key, change, bucket=LOCKS_BUCKET, timeout=timeout, ended=ended))
    except paxos.NoQuorum as exc:
        return ("no_quorum", str(exc))
    except Exception as exc:  # noqa: BLE001 - the caller's error (a bad op, a foreign value)
        return ("error", exc)


def wake_after_batch(key: bytes, ops: list[Op], chosen: Register) -> None:
    """After a batch with a release: wake the new owner, unless its own request was in the batch."""
    wake = wake_for_batch(key, ops, chosen)
    if wake is not None:
        send_wake(wake)


def wake_new_owner(bucket: str, key: Any, chosen: Register) -> None:
    """The locks bucket's `on_release` (a binding ended, e.g. an owner died): wake the new owner."""
    owner, grant = owner_of(chosen), grant_of(chosen)
    if owner is not None and grant is not None:  # an owned lock always has its grant
        send_wake(LockWake(owner, key, chosen.epoch, grant))


@dataclass(frozen=True, slots=True)
class _StartDeferred:
    key: bytes


class LockHome(GenServer):
    """Proposes the rounds of the locks homed on this node, batching them per key: the
    gevent adapter of `LockHomeEngine` (`paxtor.locks.home_engine`), which decides.

    A batch is an asynchronous request to this node's proposer (`ProposeDone`
    answers it): no process per round. The proposer is monitored; if it exits,
    the running batches fail as a crashed call would.
    """

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        return ChildSpec(cls, start=(cls.start_link, ()))

    @classmethod
    def start_link(cls, *args: Any, name: Any = LOCK_HOME) -> Pid | None:  # type: ignore[override]
        return super().start_link(*args, name=name)

    def init(self) -> None:
        trap_exits(True)
        self.node = current_node()
        self.me = self_pid()
        self.engine = LockHomeEngine(ENQUEUE_DELAY)
        self.timers: dict[bytes, TimerHandle] = {}
        self.proposer: Ref | None = None  # the monitor of this node's proposer

    def handle_call(self, request: Any, caller: Caller) -> Any:
        key, op, timeout = request
        if not isinstance(key, bytes) or not isinstance(op, tuple) or not op:
            raise ValueError(f"not a lock round request: {request!r}")
        self._perform(self.engine.request(key, caller, op, timeout))
        return NoReply

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is ProposeDone:
            key, tag = msg.tag
            self._perform(self.engine.round_done(key, tag, msg.register, msg.error))
        elif cls is _StartDeferred:
            self.timers.pop(msg.key, None)
            self._perform(self.engine.deferred(msg.key))
        elif cls is Down:
            if msg.ref == self.proposer:
                self.proposer = None
                error = RuntimeError(f"lock round lost: the proposer exited ({msg.reason!r})")
                self._perform(self.engine.proposer_lost(error))
        elif cls is not Exit:  # links: only the parent's, which the server loop handles
            super().handle_info(msg)

    def _perform(self, effects: list[Any]) -> None:
        for effect in effects:
            cls = effect.__class__
            if cls is ProposeBatch:
                if self.proposer is None:
                    self.proposer = monitor(PROPOSER_NAME)  # a Down fails the batches it would lose
                # lock values are Pids, Refs and tuples of them (`batch_change` checks the ops): encodable
                request = ProposeRequest(
                    LOCKS_BUCKET, effect.key, effect.change, effect.timeout,
                    ended=effect.ended, checked=True, reply_to=self.me, tag=(effect.key, effect.tag),
                )  # fmt: skip
                self.node.deliver_named(PROPOSER_NAME, self.node.name, request)
            elif cls is Answer:
                reply(effect.token, effect.result)
            elif cls is Wake:
                send_wake(effect.wake)
            elif cls is StartDelay:
                self.timers[effect.key] = send_after(self.node, self.me, effect.delay, _StartDeferred(effect.key))
            elif cls is CancelDelay:
                timer = self.timers.pop(effect.key, None)
                if timer is not None:
                    timer.cancel()
