"""Binding watchers: notice that a binding ended and drive ONE release round for it.

A value bound to a pid, a node, a parent key or a deadline (`Binding`) goes
when that ends. Who notices, cluster-wide:

- every VOTER watches every bound value its acceptor accepts (told by its
  acceptor once the accept is durable, and by a scan of the acceptor's
  state when it starts), so a binding is watched on a quorum of voters
  whichever node made it and whichever nodes die;
- the OWNER's node (the pid's node, or the bound node) also watches the
  tenures its own rounds claimed, and it goes first: it sees the pid's real
  exit reason.

What ends a binding: a `Down` from the monitor on the pid (its real reason;
"noconnection" when the pid's node is cut off, "noproc" when it was already
dead), the bound node going down ("noconnection"), the parent key's tenure
ending ("parent_released"), ``until`` passing ("until_passed"), or a newer
incarnation of the owner's node appearing ("noproc" / "node_restarted": the
old life is certainly over). A noconnection release carries a lease fence
and is vetoed by acceptors until the owner's lease must have run out; it is
retried (with backoff) until chosen, and dropped if the pid turns out alive
when its node reconnects.

To avoid three nodes racing the same release, the owner's node proposes at
once and the others wait ``release_stagger`` times their rank among the
voters (lowest name first); a watcher stops as soon as its acceptor accepts
a register without that tenure (someone else's release got there).
The release itself is ``release_if_bound(EndedBinding(...), bucket.release_policy)``;
the node whose round changed the register then runs ``bucket.on_release``
in a new process. A node does not release in a bucket it has not started
until ``bucket_grace`` seconds after it started (the application registers
its buckets meanwhile; "default" always exists); after that, an unknown
bucket releases with the default policy (empty the value).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import structlog

from paxtor.actors import Down, GenServer, monitor, spawn
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeDown, NodeUp, distributed_node, monitor_nodes
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.primitives import demonitor, self_pid
from paxtor.actors.timers import TimerHandle, send_after
from paxtor.paxos.bucket import DEFAULT_BUCKET, BucketSpec
from paxtor.paxos.envelopes import (
    BINDINGS_NAME,
    PROPOSER_NAME,
    AcceptedNotice,
    ProposeDone,
    Timer,
    VouchRelease,
    WatchTenure,
)
from paxtor.paxos.errors import NoQuorum
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.proposer_engine import ProposeRequest
from paxtor.paxos.register import NOCONNECTION, Binding, EndedBinding, Register, identity, release_if_bound

__all__ = ["BindingWatcher", "PARENT_RELEASED", "UNTIL_PASSED", "NODE_RESTARTED"]

log = structlog.get_logger(__name__)

PARENT_RELEASED = "parent_released"
UNTIL_PASSED = "until_passed"
NODE_RESTARTED = "node_restarted"
NOPROC = "noproc"

_RELEASE = "release"
_UNTIL = "until"
_MAX_RETRY = 2.0

Slot = tuple[str, Hashable]
TenureId = tuple[str, Hashable, int, Binding]


@dataclass(eq=False)
class _Watch:
    """One tenure being watched, and the release it may need."""

    bucket: str
    key: Hashable
    epoch: int
    binding: Binding
    ref: Ref | None = None  # monitor on binding.pid
    node_incarnation: int | None = None  # binding.node's incarnation when watching began
    parent_epoch: int | None = None  # the parent's tenure when watching began
    until_timer: TimerHandle | None = None
    ended: EndedBinding | None = None
    release_timer: TimerHandle | None = None
    in_flight: bool = False
    retries: int = 0

    @property
    def tenure(self) -> TenureId:
        return (self.bucket, self.key, self.epoch, self.binding)

    @property
    def slot(self) -> Slot:
        return (self.bucket, self.key)


class BindingWatcher(GenServer):
    """See the module docstring. Registered as ``paxos_bindings`` on every node."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        self.node = node
        self.me = self_pid()
        self.watches: dict[TenureId, _Watch] = {}
        self.by_slot: dict[Slot, set[TenureId]] = {}
        self.by_ref: dict[Ref, TenureId] = {}
        self.by_node: dict[str, set[TenureId]] = {}
        self.by_parent: dict[Slot, set[TenureId]] = {}
        self.requests: dict[int, tuple[str, TenureId]] = {}  # tag -> (purpose, tenure)
        self.tags = itertools.count(1)
        self.incarnations: dict[str, int] = {node.name: node.incarnation}
        self.started_at = time.monotonic()
        node.watched.clear()
        monitor_nodes(True)
        dist = distributed_node(node.local)
        if dist is not None:
            for peer in dist.nodes():
                incarnation = dist.peer_incarnation(peer)
                if incarnation is not None:
                    self.incarnations[peer] = incarnation
        if node.acceptor is not None:
            for record in node.acceptor.records():
                register = record.accepted
                if register.filled and register.binding is not None:
                    self._watch(record.bucket, record.key, register)

    # -- requests -----------------------------------------------------------------------

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("start_bucket", BucketSpec() as spec):
                known = self.node.buckets.get(spec.name)
                built_in = known == BucketSpec(DEFAULT_BUCKET)  # the default bucket may be given functions once
                if known is not None and known != spec and not built_in:
                    return ValueError(f"bucket {spec.name!r} is already started with other functions")
                self.node.buckets[spec.name] = spec
                self._bucket_started(spec.name)
                return None
        return super().handle_call(request, caller)

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is AcceptedNotice:
            self._accepted(msg.bucket, msg.key, msg.register)
        elif cls is WatchTenure:
            self._accepted(msg.bucket, msg.key, msg.register)
        elif cls is Down:
            tenure = self.by_ref.pop(msg.ref, None)
            if tenure is not None and tenure in self.watches:
                watch = self.watches[tenure]
                watch.ref = None
                self._ended(watch, msg.reason)
        elif cls is ProposeDone:
            self._done(msg)
        elif cls is Timer:
            self._on_timer(msg)
        elif cls is NodeDown:
            for tenure in list(self.by_node.get(msg.node, ())):
                bound = self.watches.get(tenure)
                if bound is not None and bound.binding.pid is None:
                    self._ended(bound, NOCONNECTION)
        elif cls is NodeUp:
            self._node_up(msg.node, msg.incarnation)
        elif cls is VouchRelease:
            self._vouch(msg)

    # -- watching -------------------------------------------------------------------------

    def _accepted(self, bucket: str, key: Hashable, register: Register) -> None:
        """The key now holds ``register`` (accepted here, or chosen by this node's round)."""
        slot = (bucket, key)
        for tenure in list(self.by_slot.get(slot, ())):
            watch = self.watches[tenure]
            if not register.is_bound_to(watch.epoch, watch.binding):
                self._unwatch(watch)  # the tenure is over: someone released or handed it off
        for tenure in list(self.by_parent.get(slot, ())):
            child = self.watches.get(tenure)
            if child is not None and child.parent_epoch is not None:
                if not (register.filled and register.epoch == child.parent_epoch):
                    self._ended(child, PARENT_RELEASED)
        if register.filled and register.binding is not None:
            self._watch(bucket, key, register)

    def _watch(self, bucket: str, key: Hashable, register: Register) -> None:
        binding = register.binding
        assert binding is not None
        tenure = (bucket, key, register.epoch, binding)
        if tenure in self.watches:
            return
        watch = _Watch(bucket, key, register.epoch, binding)
        self.watches[tenure] = watch
        self.by_slot.setdefault(watch.slot, set()).add(tenure)
        self.node.watched.add(watch.slot)
        if binding.pid is not None:
            ref = monitor(binding.pid)  # Down at once ("noproc"/"noconnection") if it cannot be
            watch.ref = ref
            self.by_ref[ref] = tenure
        elif binding.node is not None:
            self.by_node.setdefault(binding.node, set()).add(tenure)
            watch.node_incarnation = self.incarnations.get(binding.node)
            if binding.node != self.node.name and binding.node not in self._connected():
                self._ended(watch, NOCONNECTION)
        if binding.parent is not None:
            self._watch_parent(watch, binding.parent)
        if binding.until is not None:
            delay = (binding.until - time.time() * 1000.0) / 1000.0
            watch.until_timer = send_after(self.node.local, self.me, delay, Timer(_UNTIL, tenure))

    def _watch_parent(self, watch: _Watch, parent: Hashable) -> None:
        """Learn the parent's current tenure with a read round; its end ends the child."""
        parent_slot = (watch.bucket, parent)
        self.by_parent.setdefault(parent_slot, set()).add(watch.tenure)
        self.node.watched.add(parent_slot)
        self._propose(watch.bucket, parent, identity, None, ("parent", watch.tenure))

    def _unwatch(self, watch: _Watch) -> None:
        tenure = watch.tenure
        if self.watches.pop(tenure, None) is None:
            return
        if watch.ref is not None:
            self.by_ref.pop(watch.ref, None)
            demonitor(watch.ref, flush=True)
        for timer in (watch.until_timer, watch.release_timer):
            if timer is not None:
                timer.cancel()
        self._discard(self.by_slot, watch.slot, tenure)
        if watch.binding.node is not None:
            self._discard(self.by_node, watch.binding.node, tenure)
        slots = [watch.slot]
        if watch.binding.parent is not None:
            parent_slot = (watch.bucket, watch.binding.parent)
            self._discard(self.by_parent, parent_slot, tenure)
            slots.append(parent_slot)
        for slot in slots:
            if slot not in self.by_slot and slot not in self.by_parent:
                self.node.watched.discard(slot)

    @staticmethod
    def _discard(index: dict[Any, set[TenureId]], key: Any, tenure: TenureId) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(tenure)
            if not members:
                del index[key]

    def _connected(self) -> list[str]:
        dist = distributed_node(self.node.local)
        return dist.nodes() if dist is not None else []

    # -- ends and releases ---------------------------------------------------------------

    def _ended(self, watch: _Watch, reason: Any) -> None:
        """The binding ended for ``reason``: schedule this node's release round."""
        if watch.ended is not None:
            if not (watch.ended.is_noconnection and reason != NOCONNECTION):
                return  # already on its way (a real reason beats noconnection)
        watch.ended = EndedBinding(watch.epoch, watch.binding, reason)
        log.debug(
            "binding_ended",
            node=self.node.name,
            bucket=watch.bucket,
            key=repr(watch.key)[:200],
            epoch=watch.epoch,
            reason=repr(reason)[:200],
        )
        if watch.in_flight:
            return  # the round in flight finishes first; its failure retries with this
        self._schedule(watch, self._stagger(watch))

    def _stagger(self, watch: _Watch) -> float:
        """0 for the owner's node; then voters in name order, one ``release_stagger`` apart."""
        node = self.node
        owner = watch.binding.owner_node
        if owner == node.name:
            return 0.0
        assert watch.ended is not None
        config = node.voter_config
        members = config.members if config is not None else node.initial_voters
        others = sorted(v for v in members if v != owner)
        rank = others.index(node.name) if node.name in others else len(others)
        owner_first = owner is not None and not watch.ended.is_noconnection
        return node.config.release_stagger * (rank + (1 if owner_first else 0))

    def _schedule(self, watch: _Watch, delay: float) -> None:
        if watch.release_timer is not None:
            watch.release_timer.cancel()
        watch.release_timer = send_after(self.node.local, self.me, delay, Timer(_RELEASE, watch.tenure))

    def _on_timer(self, msg: Timer) -> None:
        watch = self.watches.get(msg.token)
        if watch is None:
            return
        if msg.kind == _UNTIL:
            watch.until_timer = None
            self._ended(watch, UNTIL_PASSED)
        elif msg.kind == _RELEASE:
            watch.release_timer = None
            self._release(watch)

    def _release(self, watch: _Watch) -> None:
        ended = watch.ended
        if ended is None or watch.in_flight:
            return
        if watch.bucket not in self.node.buckets:
            # its policy may not be registered yet (the node is starting): give the
            # application its grace period, then release with the default policy
            wait = self.started_at + self.node.config.bucket_grace - time.monotonic()
            if wait > 0:
                self._schedule(watch, wait)
                return
        watch.in_flight = True
        log.debug(
            "release_proposed",
            node=self.node.name,
            bucket=watch.bucket,
            key=repr(watch.key)[:200],
            epoch=watch.epoch,
            reason=repr(ended.reason)[:200],
            attempt=watch.retries,
        )
        policy = self.node.bucket(watch.bucket).release_policy
        self._propose(watch.bucket, watch.key, release_if_bound(ended, policy), ended, ("release", watch.tenure))

    def _propose(
        self, bucket: str, key: Hashable, change: Any, ended: EndedBinding | None, purpose: tuple[str, TenureId]
    ) -> None:
        tag = next(self.tags)
        self.requests[tag] = purpose
        request = ProposeRequest(
            bucket, key, change, self.node.config.timeout, ended=ended, reply_to=self.me, tag=tag
        )
        self.node.local.deliver_named(PROPOSER_NAME, self.node.name, request)

    def _done(self, done: ProposeDone) -> None:
        purpose = self.requests.pop(done.tag, None)
        if purpose is None:
            return
        kind, tenure = purpose
        watch = self.watches.get(tenure)
        if kind == "parent":
            self._parent_read(watch, done)
            return
        bucket, key = tenure[0], tenure[1]
        if done.error is None and done.applied:
            self._on_release(bucket, key, done.register)  # type: ignore[arg-type]
        log.debug(
            "release_done",
            node=self.node.name,
            bucket=bucket,
            key=repr(key)[:200],
            applied=done.applied,
            error=repr(done.error) if done.error is not None else None,
        )
        if watch is None:
            return
        watch.in_flight = False
        if done.error is None:
            register = done.register
            assert register is not None
            if register.is_bound_to(watch.epoch, watch.binding):
                log.warning("release_kept_tenure", bucket=bucket, key=repr(key)[:200], epoch=watch.epoch)
            self._unwatch(watch)
        elif isinstance(done.error, NoQuorum):
            if watch.ended is not None:
                watch.retries += 1
                delay = min(_MAX_RETRY, 0.05 * 2**watch.retries)
                self._schedule(watch, delay)
        else:
            log.error(
                "release_failed",
                node=self.node.name,
                bucket=bucket,
                key=repr(key)[:200],
                epoch=watch.epoch,
                error=repr(done.error),
            )
            self._unwatch(watch)

    def _parent_read(self, child: _Watch | None, done: ProposeDone) -> None:
        if child is None or done.error is not None or done.register is None:
            if child is not None and isinstance(done.error, NoQuorum):
                assert child.binding.parent is not None
                self._propose(child.bucket, child.binding.parent, identity, None, ("parent", child.tenure))
            return
        parent = done.register
        if parent.is_empty:
            self._ended(child, PARENT_RELEASED)
        elif child.parent_epoch is None:
            child.parent_epoch = parent.epoch

    def _bucket_started(self, bucket: str) -> None:
        """Releases that waited for this bucket's policy go now."""
        for watch in self.watches.values():
            if watch.bucket == bucket and watch.ended is not None and not watch.in_flight:
                if watch.release_timer is not None:
                    self._schedule(watch, 0.0)

    def _on_release(self, bucket: str, key: Hashable, register: Register) -> None:
        hook = self.node.bucket(bucket).on_release
        if hook is not None:
            spawn(_run_on_release, hook, bucket, key, register.visible())

    # -- nodes coming back, and vouching ---------------------------------------------------

    def _node_up(self, name: str, incarnation: int) -> None:
        known = self.incarnations.get(name)
        self.incarnations[name] = incarnation
        for watch in list(self.watches.values()):
            binding = watch.binding
            if binding.owner_node != name:
                continue
            if binding.pid is not None:
                if binding.pid.incarnation < incarnation:
                    self._ended(watch, NOPROC)  # its node restarted: the pid is certainly dead
                elif watch.ended is not None and watch.ended.is_noconnection and watch.ref is None:
                    watch.ended = None  # back with the same life: is the pid still alive?
                    if watch.release_timer is not None:
                        watch.release_timer.cancel()
                        watch.release_timer = None
                    watch.ref = monitor(binding.pid)
                    self.by_ref[watch.ref] = watch.tenure
            elif watch.node_incarnation is not None and incarnation > watch.node_incarnation:
                self._ended(watch, NODE_RESTARTED)
            elif known == incarnation or watch.node_incarnation is None:
                if watch.ended is not None and watch.ended.is_noconnection and not watch.in_flight:
                    watch.ended = None
                    if watch.release_timer is not None:
                        watch.release_timer.cancel()
                        watch.release_timer = None
                if watch.node_incarnation is None:
                    watch.node_incarnation = incarnation

    def _vouch(self, msg: VouchRelease) -> None:
        """This node vouches that the fenced tenure is over: release it with the real reason."""
        register = Register(msg.fence.epoch, True, None, msg.fence.binding)
        self._watch(msg.bucket, msg.key, register)
        watch = self.watches[(msg.bucket, msg.key, msg.fence.epoch, msg.fence.binding)]
        if watch.ended is None or watch.ended.is_noconnection:
            watch.ended = EndedBinding(watch.epoch, watch.binding, msg.reason)
            if not watch.in_flight:
                self._schedule(watch, 0.0)


def _run_on_release(hook: Any, bucket: str, key: Hashable, register: Register) -> None:
    try:
        hook(bucket, key, register)
    except Exception:
        log.exception("on_release_failed", bucket=bucket, key=repr(key)[:200])


def _start(node: PaxosNode) -> Pid | None:
    return BindingWatcher.start_link(node, name=BINDINGS_NAME)
