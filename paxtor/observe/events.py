"""`paxtor.subscribe`: this node's cluster events as messages to a process.

In the style of `monitor_nodes`: the calling process subscribes, and each
event arrives in its mailbox as a message, in the order the node saw them.

    state = paxtor.subscribe()              # every kind; or subscribe("quorum", "lease")
    state.quorum, state.lease, state.nodes  # how things stood when it subscribed
    msg = receive(...)                      # then the changes:

    QuorumLost(node, connected, voters)     "quorum": this node reaches fewer than a
    QuorumReached(node, connected, voters)  quorum of the voters / a quorum again
    LeaseLost(node, term, reason)           "lease": its lease ended ("expired" or
    LeaseGained(node, term)                 "fenced"); local owners were killed / it holds one
    NodeUp(node, incarnation)               "nodes": a peer connected / was lost
    NodeDown(node, reason)                  (the messages `monitor_nodes` sends)

The returned state and the events come from one process (the node's
``paxtor_events`` server), so no change falls between them. Subscriptions end
with `unsubscribe` or when the subscriber exits. The events are local
messages (like kazoo's connection-state listeners, they describe this node's
view): they do not travel to other nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from paxtor.actors import ChildSpec, Down, GenServer, Pid, demonitor, monitor, self_pid, send
from paxtor.actors import call as actor_call
from paxtor.actors.distribution import NodeDown, NodeUp, distributed_node, monitor_nodes
from paxtor.actors.messages import Caller
from paxtor.actors.node import current_node
from paxtor.paxos.lease import LeaseGained as _PaxosLeaseGained
from paxtor.paxos.lease import LeaseLost as _PaxosLeaseLost
from paxtor.paxos.membership import QuorumChange, QuorumView
from paxtor.paxos.paxos_node import PaxosNode, open_paxos_node

__all__ = [
    "EVENT_KINDS",
    "EVENTS",
    "ClusterState",
    "QuorumLost",
    "QuorumReached",
    "LeaseLost",
    "LeaseGained",
    "NodeUp",
    "NodeDown",
    "EventServer",
    "subscribe",
    "unsubscribe",
]

log = structlog.get_logger(__name__)

EVENT_KINDS = ("quorum", "lease", "nodes")
#: the registered name of every node's event server
EVENTS = "paxtor_events"


@dataclass(frozen=True, slots=True)
class ClusterState:
    """This node's view when a process subscribed: quorum reachable, lease held, peers up."""

    node: str
    quorum: bool
    lease: bool
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuorumLost:
    """This node reaches fewer than a quorum of the voters (`connected` of `voters`)."""

    node: str
    connected: int
    voters: int


@dataclass(frozen=True, slots=True)
class QuorumReached:
    """This node reaches a quorum of the voters again (or for the first time)."""

    node: str
    connected: int
    voters: int


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """This node's lease ended (`reason` "expired" or "fenced"); its lock holders and
    singletons were killed with reason "lease_expired"."""

    node: str
    term: int
    reason: str


@dataclass(frozen=True, slots=True)
class LeaseGained:
    """This node holds a lease again (term `term`): it can grant locks and start singletons."""

    node: str
    term: int


def _check_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    if not kinds:
        return EVENT_KINDS
    for kind in kinds:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}: use {', '.join(map(repr, EVENT_KINDS))}")
    return tuple(dict.fromkeys(kinds))


def subscribe(*kinds: str, timeout: float = 5.0) -> ClusterState:
    """Send the calling process this node's events of `kinds` (default: all); the state now.

    Kinds: "quorum" (`QuorumLost`, `QuorumReached`), "lease" (`LeaseLost`,
    `LeaseGained`), "nodes" (`NodeUp`, `NodeDown`). Subscribing again adds kinds.
    """
    return actor_call(EVENTS, ("subscribe", self_pid(), _check_kinds(kinds)), timeout=timeout)


def unsubscribe(*kinds: str, timeout: float = 5.0) -> None:
    """Stop the events of `kinds` (default: all) to the calling process."""
    actor_call(EVENTS, ("unsubscribe", self_pid(), _check_kinds(kinds)), timeout=timeout)


class EventServer(GenServer):
    """Fans this node's quorum, lease and node events out to subscribers (see the module docstring)."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        return ChildSpec(cls, start=(_start, ()))

    def init(self) -> None:
        self.paxos: PaxosNode | None = open_paxos_node(current_node())
        if self.paxos is None:
            raise RuntimeError("the event server needs the node's PaxosKV services")
        self.name = self.paxos.name
        self.me = self_pid()
        monitor_nodes(True)
        # the membership server decides quorum transitions (they follow node and configuration
        # changes) and tells its watchers; until the first one, the state it would compute now
        self.paxos.quorum_watchers.add(self.me)
        self.quorum = watch_quorum(self.paxos).has_quorum
        self.paxos.lease_watchers.add(self.me)
        self.lease = self.paxos.lease.valid(time.monotonic())
        self.subscribers: dict[Pid, tuple[Any, set[str]]] = {}  # pid -> (monitor ref, kinds)

    def terminate(self, reason: Any) -> None:
        if self.paxos is not None:
            self.paxos.lease_watchers.discard(self.me)
            self.paxos.quorum_watchers.discard(self.me)

    def handle_call(self, request: Any, caller: Caller) -> Any:
        match request:
            case ("subscribe", Pid() as pid, tuple(kinds)) if pid.node == self.name:
                entry = self.subscribers.get(pid)
                if entry is None:
                    entry = self.subscribers[pid] = (monitor(pid), set())
                entry[1].update(kinds)
                return ClusterState(self.name, self.quorum, self.lease, tuple(sorted(self.connected())))
            case ("unsubscribe", Pid() as pid, tuple(kinds)):
                entry = self.subscribers.get(pid)
                if entry is not None:
                    entry[1].difference_update(kinds)
                    if not entry[1]:
                        self._drop(pid)
                return None
        # answered, not raised: a bad request must not end every subscription (events are local)
        log.warning("event_server_bad_request", request=repr(request)[:200], caller=repr(caller.pid))
        return ("bad_request", repr(request)[:200])

    def connected(self) -> list[str]:
        dist = distributed_node(self.paxos.local) if self.paxos is not None else None
        return dist.nodes() if dist is not None else []

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is NodeUp or cls is NodeDown:
            self._publish("nodes", msg)
        elif cls is QuorumChange:
            if msg.reached != self.quorum:
                self.quorum = msg.reached
                event = QuorumReached if msg.reached else QuorumLost
                self._publish("quorum", event(self.name, msg.connected, msg.voters))
        elif cls is _PaxosLeaseLost:
            self.lease = False
            self._publish("lease", LeaseLost(self.name, msg.term, msg.reason))
        elif cls is _PaxosLeaseGained:
            self.lease = True
            self._publish("lease", LeaseGained(self.name, msg.term))
        elif cls is Down:
            entry = self.subscribers.get(msg.pid)
            if entry is not None and entry[0] == msg.ref:
                del self.subscribers[msg.pid]

    def _publish(self, kind: str, event: Any) -> None:
        for pid, (_, kinds) in self.subscribers.items():
            if kind in kinds:
                send(pid, event)

    def _drop(self, pid: Pid) -> None:
        ref, _ = self.subscribers.pop(pid)
        demonitor(ref, flush=True)


def watch_quorum(paxos: PaxosNode) -> QuorumView:
    """A `QuorumView` of `paxos` as connected now (read once: the membership server keeps the real one)."""
    dist = distributed_node(paxos.local)
    return QuorumView(paxos, dist.nodes() if dist is not None else ())


def _start() -> Pid | None:
    return EventServer.start_link(name=EVENTS)
