"""Cluster membership as PaxosKV sees it: which CONFIGURED voters are connected.

Quorum is always a majority of the configured voters (``node1..nodeN`` by
default), never of whoever is connected, so two sides of a partition can
never both have one. `QuorumView` is the pure count (this node counts
itself when it votes); the membership process logs its transitions:

    quorum_reached      message="Quorum reached. [cluster:2/3]"     (a voter)
    quorum_lost         message="Quorum lost. [cluster:1/3]"
    quorum_reachable    message="Quorum reachable. [voters:2/3]"    (a client:
    quorum_unreachable  message="Quorum unreachable. [voters:1/3]"   not one of them)

(``node_up``/``node_down`` are logged by the distribution layer.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from paxtor.actors import GenServer
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeDown, NodeUp, distributed_node, monitor_nodes
from paxtor.actors.ids import Pid
from paxtor.paxos.envelopes import MEMBERSHIP_NAME
from paxtor.paxos.paxos_node import PaxosNode

__all__ = ["QuorumView", "QuorumChange", "MembershipServer", "quorum_event", "quorum_message", "watch_membership"]

log = structlog.get_logger(__name__)


def quorum_message(reached: bool, connected: int, voters: int, client: bool = False) -> str:
    """The human line: ``Quorum reached. [cluster:2/3]`` / ``Quorum lost. [cluster:1/3]``
    on a voter (it counts itself); a client counts the voters it reaches:
    ``Quorum reachable. [voters:2/3]`` / ``Quorum unreachable. [voters:1/3]``."""
    if client:
        return f"Quorum {'reachable' if reached else 'unreachable'}. [voters:{connected}/{voters}]"
    return f"Quorum {'reached' if reached else 'lost'}. [cluster:{connected}/{voters}]"


def quorum_event(reached: bool, client: bool = False) -> str:
    """The log event of a quorum transition (see the module docstring)."""
    if client:
        return "quorum_reachable" if reached else "quorum_unreachable"
    return "quorum_reached" if reached else "quorum_lost"


@dataclass(frozen=True, slots=True)
class QuorumChange:
    """The connected voters crossed the quorum line (up if ``reached``)."""

    reached: bool
    connected: int
    voters: int

    @property
    def message(self) -> str:
        return quorum_message(self.reached, self.connected, self.voters)


class QuorumView:
    """Connected configured voters, self included when voting (pure)."""

    def __init__(self, voters: Iterable[str], quorum: int, me: str) -> None:
        self.voters = tuple(voters)
        self.quorum = quorum
        self.connected: set[str] = {me} if me in self.voters else set()

    @property
    def has_quorum(self) -> bool:
        return len(self.connected) >= self.quorum

    def up(self, node: str) -> QuorumChange | None:
        if node not in self.voters or node in self.connected:
            return None
        before = self.has_quorum
        self.connected.add(node)
        return self._change(before)

    def down(self, node: str) -> QuorumChange | None:
        if node not in self.connected:
            return None
        before = self.has_quorum
        self.connected.discard(node)
        return self._change(before)

    def _change(self, before: bool) -> QuorumChange | None:
        after = self.has_quorum
        if after == before:
            return None
        return QuorumChange(after, len(self.connected), len(self.voters))


def watch_membership(node: PaxosNode) -> QuorumView:
    """A `QuorumView` of the calling process's node, kept current by NodeUp/NodeDown messages.

    Subscribes the calling process (it must feed `NodeUp`/`NodeDown` to the view).
    """
    view = QuorumView(node.voters, node.quorum, node.name)
    monitor_nodes(True)
    dist = distributed_node(node.local)
    if dist is not None:
        for peer in dist.nodes():
            view.up(peer)
    return view


class MembershipServer(GenServer):
    """Logs quorum transitions of this node's view (see the module docstring)."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        self.node = node
        self.view = watch_membership(node)
        if self.view.has_quorum:
            self._log(QuorumChange(True, len(self.view.connected), len(self.view.voters)))

    def handle_info(self, msg: Any) -> None:
        if msg.__class__ is NodeUp:
            change = self.view.up(msg.node)
        elif msg.__class__ is NodeDown:
            change = self.view.down(msg.node)
        else:
            return
        if change is not None:
            self._log(change)

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "connected_voters":
            return sorted(self.view.connected)
        return super().handle_call(request, caller)

    def _log(self, change: QuorumChange) -> None:
        level = log.info if change.reached else log.warning
        client = not self.node.voter
        level(
            quorum_event(change.reached, client),
            message=quorum_message(change.reached, change.connected, change.voters, client),
            node=self.node.name,
            connected=change.connected,
            voters=change.voters,
        )


def _start(node: PaxosNode) -> Pid:
    return MembershipServer.start_link(node, name=MEMBERSHIP_NAME)
