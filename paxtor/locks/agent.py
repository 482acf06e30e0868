"""The node's lock agent: who holds or waits for a lock here, their wake-ups, and cleaning up.

One `LockAgent` runs on every Paxtor node (see `paxtor.locks.services`). Its
`LockTable` is what `paxtor.lock` consults without a message round trip:
which locks each local process holds (reentrancy, `unlock`) and which request
each local process is waiting on.

- Wake-ups (`LockWake`) for local processes come here and are handed on
  (`LockGranted`) only to a process still waiting for that request. A
  process that holds the lock already (it learned so from its own round) is
  not bothered; one that gave up (timed out) has the lock released again,
  so it passes on.
- The agent monitors every local process in the table. When a waiter dies,
  its request is withdrawn from the queue (and released, if the lock had
  reached it): a dead waiter never blocks a lock. A dead *owner*'s tenure
  is released by PaxosKV's binding machinery (``hold`` enrolled it).
- When a peer node goes down a wake-up may be lost with it (a handoff
  round proposed there, or on its far side of a partition, can still be
  chosen and its `LockWake` dropped): every local waiter is told to re-read
  its lock (`Recheck`) at once, again every `RECHECK_INTERVAL` while a peer
  that went down in the last `RECHECK_WINDOW` seconds stays down, and when
  one comes back. Polling only while the cluster is degraded, and cheap:
  one read round per waiter per interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gevent
import structlog

from paxtor.actors import (
    ChildSpec,
    Down,
    GenServer,
    Pid,
    Ref,
    monitor,
    self_pid,
    send,
    spawn,
)
from paxtor.actors.distribution import NodeDown, NodeUp, monitor_nodes
from paxtor.actors.messages import NotDistributed
from paxtor.actors.node import LocalNode, current_node
from paxtor.actors.node_slot import NodeSlot
from paxtor.actors.primitives import is_alive
from paxtor.actors.timers import send_after
from paxtor.locks.home import LockRouting, run_op
from paxtor.locks.messages import LOCK_AGENT, RECHECK, LockGranted, LockWake
from paxtor.locks.register import grant_of, owner_of
from paxtor.rounds import Deadline

__all__ = ["LockAgent", "LockTable", "lock_table", "withdraw_request", "ABANDONED"]

log = structlog.get_logger(__name__)

#: Backoff bounds of a withdrawal retried while the cluster has no quorum.
RETRY_MIN, RETRY_MAX = 0.05, 2.0
#: One withdrawal attempt's deadline before the next try.
RETRY_ATTEMPT = 10.0
#: Why a request is withdrawn when the waiter is alive but gave up.
ABANDONED = "abandoned"
#: While a peer is down, waiters re-read their lock this often (a wake-up may have been lost) ...
RECHECK_INTERVAL = 2.0
#: ... for at most this long after it went down (it rejoins, or it is gone for good).
RECHECK_WINDOW = 60.0
_RECHECK_TICK = ("lock_agent", "recheck_tick")

#: The node's lock table, while its lock agent runs.
LOCK_TABLE: NodeSlot[LockTable] = NodeSlot("locks")


@dataclass(frozen=True, slots=True)
class _Watch:
    pid: Pid


@dataclass(frozen=True, slots=True)
class _Withdraw:
    pid: Pid
    key: bytes
    ref: Ref
    reason: Any


class LockTable:
    """What the node's processes hold and wait for (read and written by `paxtor.lock`)."""

    __slots__ = ("agent", "owned", "waiting", "watched", "routing", "acquired", "handoffs", "__weakref__")

    def __init__(self, agent: Pid) -> None:
        self.agent = agent
        #: pid -> {lock key -> token} of the locks each local process holds
        self.owned: dict[Pid, dict[bytes, int]] = {}
        #: pid -> (lock key, request ref) a local process is waiting on
        self.waiting: dict[Pid, tuple[bytes, Ref]] = {}
        #: pids the agent monitors (so `watch` sends one message per process)
        self.watched: set[Pid] = set()
        #: which keys go to their home, and where homes are (`paxtor.locks.home`)
        self.routing = LockRouting()
        #: locks granted to local processes, and how many of those a waiter got from an owner (metrics)
        self.acquired = 0
        self.handoffs = 0

    def watch(self, pid: Pid) -> None:
        if pid not in self.watched:
            self.watched.add(pid)
            send(self.agent, _Watch(pid))

    def token(self, pid: Pid, key: bytes) -> int | None:
        held = self.owned.get(pid)
        return held.get(key) if held else None

    def record_owner(self, pid: Pid, key: bytes, token: int) -> None:
        self.acquired += 1
        self.watch(pid)
        self.owned.setdefault(pid, {})[key] = token

    def forget_owner(self, pid: Pid, key: bytes) -> None:
        held = self.owned.get(pid)
        if held is not None:
            held.pop(key, None)

    def start_waiting(self, pid: Pid, key: bytes, ref: Ref) -> None:
        self.watch(pid)
        self.waiting[pid] = (key, ref)

    def stop_waiting(self, pid: Pid) -> None:
        self.waiting.pop(pid, None)

    def withdraw_later(self, pid: Pid, key: bytes, ref: Ref) -> None:
        """Have the agent withdraw a request its live waiter gave up on (no quorum now)."""
        send(self.agent, _Withdraw(pid, key, ref, ABANDONED))


def lock_table(node: LocalNode | None = None) -> LockTable:
    """The lock table of `node` (the current node by default)."""
    return (node or current_node()).require(LOCK_TABLE, "lock service")


def withdraw_request(
    pid: Pid, key: bytes, ref: Ref | None, reason: Any, deadline: Deadline, *, epoch: int | None = None
) -> None:
    """Take request ``(pid, ref)`` out of the queue; if it had already won the lock, release it.

    `reason` justifies the release (the waiter's exit reason, or that it gave up).
    `epoch`: release only that tenure (the one a wake-up announced). A request
    that left the queue without winning queues up again under the same ref, so
    a late wake-up of an earlier tenure must not end the one it holds now.
    """
    routing = lock_table().routing
    reg = run_op(key, ("withdraw", pid, ref), deadline, routing)
    if owner_of(reg) == pid and (ref is None or grant_of(reg) == ref) and epoch in (None, reg.epoch):
        run_op(key, ("release", reg.epoch, pid, reason), deadline, routing)


def _withdraw_until_done(pid: Pid, key: bytes, ref: Ref, reason: Any, epoch: int | None = None) -> None:
    """Body of a process that keeps trying `withdraw_request` (capped backoff)."""
    delay = RETRY_MIN
    while True:
        try:
            withdraw_request(pid, key, ref, reason, Deadline(RETRY_ATTEMPT), epoch=epoch)
            return
        except TimeoutError:
            log.info("lock_withdraw_retry", pid=repr(pid), delay=delay)
        gevent.sleep(delay)
        delay = min(RETRY_MAX, delay * 2)


def _exit_reason_word(reason: Any) -> Any:
    """A compact exit reason for the register (exceptions become their class name)."""
    if reason is None or isinstance(reason, (str, int)):
        return reason
    if isinstance(reason, tuple) and all(isinstance(x, (str, int)) for x in reason):
        return reason
    return type(reason).__name__


class LockAgent(GenServer):
    """The node's lock agent (see the module docstring); registered as `LOCK_AGENT`."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        return ChildSpec(cls, start=(cls.start_link, ()))

    @classmethod
    def start_link(cls, *args: Any, name: Any = LOCK_AGENT) -> Pid | None:  # type: ignore[override]
        return super().start_link(*args, name=name)

    def init(self) -> None:
        self.node = current_node()
        self.table = LockTable(self_pid())
        self.monitors: dict[Ref, Pid] = {}
        self.down_since: dict[str, float] = {}  # peers down now, and since when (monotonic)
        self.ticking = False
        self.node.install(LOCK_TABLE, self.table)
        try:
            monitor_nodes(True)
        except NotDistributed:
            pass  # a node without peers loses no wake-ups

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is LockWake:
            self._wake(msg)
        elif cls is _Watch:
            self.monitors[monitor(msg.pid)] = msg.pid
        elif cls is Down:
            self._process_down(msg)
        elif cls is _Withdraw:
            spawn(_withdraw_until_done, msg.pid, msg.key, msg.ref, msg.reason)
        elif cls is NodeDown:
            self.down_since[msg.node] = time.monotonic()
            self._recheck_waiters()
            self._tick_later()
        elif cls is NodeUp:
            if self.down_since.pop(msg.node, None) is not None:
                self._recheck_waiters()
        elif msg == _RECHECK_TICK:
            self.ticking = False
            horizon = time.monotonic() - RECHECK_WINDOW
            self.down_since = {n: t for n, t in self.down_since.items() if t > horizon}
            if self.down_since:
                self._recheck_waiters()
                self._tick_later()
        else:
            super().handle_info(msg)

    def _recheck_waiters(self) -> None:
        for pid in list(self.table.waiting):
            send(pid, RECHECK)

    def _tick_later(self) -> None:
        if not self.ticking:
            self.ticking = True
            send_after(self.node, self_pid(), RECHECK_INTERVAL, _RECHECK_TICK)

    def _wake(self, wake: LockWake) -> None:
        pid, table = wake.pid, self.table
        if table.waiting.get(pid) == (wake.key, wake.ref):
            send(pid, LockGranted(wake.key, wake.epoch, wake.ref))
        elif table.token(pid, wake.key) == wake.epoch:
            pass  # it knows: its own round told it
        elif self.node.is_local(pid) and is_alive(pid):
            # it gave up on that request: the lock must not stay with it (that tenure only:
            # a late wake-up must not end a later one the same request holds now)
            spawn(_withdraw_until_done, pid, wake.key, wake.ref, ABANDONED, wake.epoch)
        # a dead waiter's request is withdrawn by its Down

    def _process_down(self, msg: Down) -> None:
        pid = self.monitors.pop(msg.ref, None)
        if pid is None:
            return
        table = self.table
        table.watched.discard(pid)
        table.owned.pop(pid, None)
        request = table.waiting.pop(pid, None)
        if request is not None:
            key, ref = request
            log.debug("lock_waiter_down", pid=repr(pid), reason=repr(msg.reason))
            spawn(_withdraw_until_done, pid, key, ref, _exit_reason_word(msg.reason))

    def terminate(self, reason: Any) -> None:
        self.node.uninstall(LOCK_TABLE, self.table)
