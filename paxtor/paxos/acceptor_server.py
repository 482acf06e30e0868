"""The acceptor process of a voter: this node's vote for rounds proposed by other nodes.

It receives their flat phase 1a/2a messages (`paxtor.paxos.wire_format`),
has `LocalAcceptor` vote (which replies only once the vote is durable), and
answers lease heartbeats at once (lease state is volatile by design). Every
`NodeUp` counts as hearing that node (and reveals a newer incarnation at
once: the lease veto then admits releases of the earlier one's pids).

This node's own proposer votes through `LocalAcceptor` directly, without a
message to this process. The tombstone collectors of the voters call it:
``("tombstones", bucket, keys)`` (which it holds durably) and ``("collect",
bucket, ((key, ballot), ...))`` (drop those).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from paxtor.actors import GenServer
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeUp, monitor_nodes
from paxtor.actors.ids import Pid
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import ACCEPTOR_NAME, LeaseHeartbeat
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.wire_format import REQUEST_TAGS, pack_reply, unpack_request

__all__ = ["AcceptorServer"]

log = structlog.get_logger(__name__)


class AcceptorServer(GenServer):
    """See the module docstring. Registered as ``paxos_acceptor`` on voters."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        if node.local_acceptor is None:
            raise RuntimeError("the acceptor state is not open (PaxosNode.open() first)")
        self.node = node
        self.name = node.name
        self.voting = node.local_acceptor
        self.deliver = node.local.deliver_message
        monitor_nodes(True)

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is tuple and msg and msg[0] in REQUEST_TAGS:
            try:
                sender, request = unpack_request(msg)
            except ValueError as exc:
                log.warning("acceptor_bad_request", node=self.name, error=str(exc)[:300])
                return
            reply = self.voting.handle(sender, request)
            if reply is not None:
                self.deliver(sender, pack_reply(self.name, reply))
        elif cls is LeaseHeartbeat:
            sender = msg.sender
            ack = self.voting.acceptor.on_heartbeat(sender.node, sender.incarnation, msg.heartbeat, time.monotonic())
            self.deliver(sender, ack)
        elif cls is NodeUp:
            self.voting.heard(msg.node, msg.incarnation)

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("read", str(bucket), key):
                return self.voting.acceptor.state(bucket, key)
            case ("key_count",):
                return self.voting.acceptor.key_count()
            case ("tombstones", str(bucket), tuple(keys)):
                return tuple(self.voting.held_tombstones(bucket, keys))
            case ("collect", str(bucket), tuple(tombstones)) if all(
                isinstance(t, tuple) and len(t) == 2 and isinstance(t[1], Ballot) for t in tombstones
            ):
                return self.voting.collect(bucket, tombstones)
        return super().handle_call(request, caller)


def _start(node: PaxosNode) -> Pid:
    return AcceptorServer.start_link(node, name=ACCEPTOR_NAME)
