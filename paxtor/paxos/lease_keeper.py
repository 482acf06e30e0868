"""The lease keeper: this node's lease with the voters, and the local owners it protects.

Every ``heartbeat_interval`` it sends a `Heartbeat` to every voter's acceptor
(which acks at once) and feeds the acks to the pure `LeaseClock`
(`paxtor.paxos.lease`); a timer at the lease's expiry polls it. Each
continuous stretch of validity is a *term*.

``holds`` records which local pids own which tenures (``hold``), each
granted within a term. When the lease is lost (it ran out, or an ack
revealed a fence: some voter released one of our bindings for
"noconnection"), every holder is killed with reason ``"lease_expired"`` at
once, untrappably, and nothing new is granted until the lease is gained
again. Killing is cooperative (a greenlet dies at its next switch or
receive): that is what the lease margin and the fencing tokens are for.
Every `LeaseGained` / `LeaseLost` also goes to the local pids in
``PaxosNode.lease_watchers`` (subscribers to this node's events).

Who holds what, and who is killed when, is the pure `LeaseHolds` engine
(`paxtor.paxos.lease_holds`), which the simulator runs too; this process
feeds it and carries out its effects.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

import structlog

from paxtor.actors import Down, GenServer, NoReply, monitor, reply
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.messages import Caller
from paxtor.actors.primitives import demonitor, self_pid, send
from paxtor.actors.timers import TimerHandle, send_after
from paxtor.paxos.envelopes import ACCEPTOR_NAME, LEASE_KEEPER_NAME, MEMBERSHIP_NAME, LeaseHeartbeat, Timer
from paxtor.paxos.lease import LEASE_EXPIRED, HeartbeatAck, LeaseEvent, LeaseGained, LeaseLost
from paxtor.paxos.lease_holds import KillHolder, LeaseHolds, Unwatch, Watch
from paxtor.paxos.paxos_node import PaxosNode

__all__ = ["LeaseKeeper", "LEASE_EXPIRED"]

log = structlog.get_logger(__name__)

_HEARTBEAT = "heartbeat"
_EXPIRY = "expiry"
_WAIT = "wait"


class LeaseKeeper(GenServer):
    """See the module docstring. Registered as ``paxos_lease`` on every node."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        self.node = node
        self.clock = node.lease
        self.me = self_pid()
        self.deliver_named = node.local.deliver_named
        self.interval: float = node.config.heartbeat_interval  # type: ignore[assignment]
        self.monitors: dict[Pid, Ref] = {}
        self.engine = LeaseHolds(node.holds, node.held_by)
        self.waiters: dict[Ref, Caller] = {}
        self._expiry: TimerHandle | None = None
        self._expiry_at: float | None = None
        # A restarted keeper carries on with the holds and the clock (they live in
        # PaxosNode): dropping them would leave owners that no lease loss kills.
        for pid in list(node.holds):
            proc = node.local.lookup(pid)
            alive = proc is not None and proc.alive
            self._perform(self.engine.rewatch(pid) if alive else self.engine.forget(pid))
        self._heartbeat()

    # -- heartbeats and acks --------------------------------------------------------

    def _heartbeat(self) -> None:
        send_after(self.node.local, self.me, self.interval, Timer(_HEARTBEAT, None))
        voters = self.clock.voters
        if not voters:
            return  # no voter configuration known yet
        hb = self.clock.send_heartbeat(time.monotonic())
        msg = LeaseHeartbeat(self.me, hb)
        for voter in voters:
            self.deliver_named(ACCEPTOR_NAME, voter, msg)

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is HeartbeatAck:
            self._events(self.clock.on_ack(msg.voter[0], msg, time.monotonic()))
            if self.clock.config_behind is not None:  # that voter knows a newer configuration
                self.deliver_named(MEMBERSHIP_NAME, self.node.name, ("ask", msg.voter[0]))
        elif cls is Timer:
            if msg.kind == _HEARTBEAT:
                self._heartbeat()
            elif msg.kind == _EXPIRY:
                self._expiry = self._expiry_at = None
                self._events(self.clock.poll(time.monotonic()))
            elif msg.kind == _WAIT:
                caller = self.waiters.pop(msg.token, None)
                if caller is not None:
                    reply(caller, False)
        elif cls is Down:
            self._perform(self.engine.forget(msg.pid))

    def _events(self, events: list[LeaseEvent]) -> None:
        for event in events:
            for watcher in self.node.lease_watchers:
                send(watcher, event)
            if isinstance(event, LeaseLost):
                self._lost(event)
            elif isinstance(event, LeaseGained):
                log.info("lease_gained", node=self.node.name, term=event.term)
                waiters, self.waiters = self.waiters, {}
                for caller in waiters.values():
                    reply(caller, True)
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        expires_at = self.clock.expires_at
        if expires_at is None or expires_at == self._expiry_at:
            return
        if self._expiry is not None and self._expiry_at is not None and self._expiry_at <= expires_at:
            return  # the earlier timer fires first and re-arms for the new expiry
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = expires_at
        self._expiry = send_after(
            self.node.local, self.me, expires_at - time.monotonic(), Timer(_EXPIRY, None)
        )

    def _lost(self, event: LeaseLost) -> None:
        killed = self._perform(self.engine.lost())
        log.warning(
            "lease_lost",
            node=self.node.name,
            term=event.term,
            reason=event.reason,
            owners_killed=killed,
        )

    # -- holds --------------------------------------------------------------------------

    def handle_call(self, request: Any, caller: Caller) -> Any:
        match request:
            case ("hold", Pid() as pid, str(bucket), key, int(epoch), term):
                return self._hold(pid, bucket, key, epoch, term)
            case ("wait_valid", timeout):
                if self.clock.valid(time.monotonic()):
                    return True
                ref = self.node.local.make_ref()
                self.waiters[ref] = caller
                if timeout is not None:
                    send_after(self.node.local, self.me, timeout, Timer(_WAIT, ref))
                return NoReply
        return super().handle_call(request, caller)

    def handle_cast(self, msg: Any) -> None:
        match msg:
            case ("hold_or_kill", Pid() as pid, str(bucket), key, int(epoch), term):
                if self.node.is_local(pid):
                    now = self.clock.term_at(time.monotonic())
                    alive = self._alive(pid)
                    self._perform(self.engine.hold_or_kill(pid, (bucket, key), epoch, term, now, alive))
            case ("tenure_now", str(bucket), key, int(epoch), owner):
                self._perform(self.engine.tenure_now((bucket, key), epoch, owner))
            case ("unhold", Pid() as pid, str(bucket), key, int(epoch)):
                self._perform(self.engine.unhold(pid, (bucket, key), epoch))
            case _:
                log.warning("lease_keeper_unexpected_cast", msg=repr(msg)[:200])

    def _hold(self, pid: Pid, bucket: str, key: Hashable, epoch: int, term: Any) -> bool:
        """Record that local ``pid`` owns tenure ``epoch`` of the key, if ``term`` is still valid."""
        if not self.node.is_local(pid):
            return False
        now = self.clock.term_at(time.monotonic())
        held, effects = self.engine.hold(pid, (bucket, key), epoch, term, now, self._alive(pid))
        self._perform(effects)
        return held

    def _alive(self, pid: Pid) -> bool:
        proc = self.node.local.lookup(pid)
        return proc is not None and proc.alive

    def _perform(self, effects: list[Any]) -> int:
        """Carry out the engine's effects; how many processes were killed."""
        killed = 0
        for effect in effects:
            cls = effect.__class__
            if cls is KillHolder:
                proc = self.node.local.lookup(effect.pid)
                if proc is None or not proc.alive:
                    continue
                if effect.why != "lease_lost":  # a lease loss logs once for all its holders
                    bucket, key = effect.slot if effect.slot is not None else ("", None)
                    log.warning(
                        "owner_killed",
                        why=effect.why,
                        node=self.node.name,
                        pid=repr(effect.pid),
                        bucket=bucket,
                        key=repr(key)[:200],
                        epoch=effect.epoch,
                    )
                proc.kill(LEASE_EXPIRED)  # untrappable: a holder must not outlive its tenure
                killed += 1
            elif cls is Watch:
                if effect.pid not in self.monitors:
                    self.monitors[effect.pid] = monitor(effect.pid)
            elif cls is Unwatch:
                ref = self.monitors.pop(effect.pid, None)
                if ref is not None:
                    demonitor(ref, flush=True)
        return killed


def _start(node: PaxosNode) -> Pid | None:
    return LeaseKeeper.start_link(node, name=LEASE_KEEPER_NAME)
