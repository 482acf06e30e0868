"""The acceptor process of a voter: this node's vote for rounds proposed by other nodes.

It receives their flat phase 1a/2a messages (`paxtor.paxos.wire_format`),
has `LocalAcceptor` vote (which replies only once the vote is durable), and
answers lease heartbeats at once (lease state is volatile by design). Every
`NodeUp` counts as hearing that node (and reveals a newer incarnation at
once: the lease veto then admits releases of the earlier one's pids).

This node's own proposer votes through `LocalAcceptor` directly, without a
message to this process. When the acceptor log fails (a full disk), this
process tries `LocalAcceptor.resume` after `RESUME_FIRST` seconds, then
twice as long each time up to `RESUME_MAX`, in a greenlet of its own (the
files may take a while; heartbeats are answered meanwhile). The tombstone collectors of the voters call it:
``("tombstones", bucket, keys)`` (which it holds durably) and ``("collect",
bucket, ((key, ballot), ...))`` (drop those).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import structlog

from paxtor.actors import GenServer
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeUp, monitor_nodes
from paxtor.actors.ids import Pid
from paxtor.paxos.ballot import Ballot
from paxtor.actors.primitives import self_pid
from paxtor.actors.timers import send_after
from paxtor.paxos.envelopes import ACCEPTOR_NAME, LeaseHeartbeat, Timer
from paxtor.paxos.local_acceptor import LOG_FAILED
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.wire_format import REQUEST_TAGS, pack_reply, unpack_request

__all__ = ["AcceptorServer"]

log = structlog.get_logger(__name__)

#: Seconds from a log failure to the first attempt to resume, and the longest wait between two.
RESUME_FIRST = 1.0
RESUME_MAX = 60.0
_RESUME = "resume"


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
        self.me = self_pid()
        self.resume_wait: float | None = None  # set while resuming is scheduled or running
        monitor_nodes(True)
        if self.voting.failed:
            self._schedule_resume()

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
        elif msg == LOG_FAILED:
            self._schedule_resume()
        elif cls is Timer and msg.kind == _RESUME:
            gevent.spawn(self._resume, self.voting, self.node.local, self.me)
        elif cls is tuple and msg[:1] == (_RESUME,):
            self._resumed(msg[1])

    def _schedule_resume(self) -> None:
        if self.resume_wait is None:
            self.resume_wait = RESUME_FIRST
            send_after(self.node.local, self.me, self.resume_wait, Timer(_RESUME, None))

    @staticmethod
    def _resume(voting: Any, local: Any, me: Pid) -> None:
        """In a greenlet of its own: one attempt; its outcome goes back to the acceptor process."""
        local.deliver_message(me, (_RESUME, voting.resume()))

    def _resumed(self, ok: bool) -> None:
        if ok or not self.voting.failed:
            self.resume_wait = None
            return
        self.resume_wait = min(RESUME_MAX, (self.resume_wait or RESUME_FIRST) * 2)
        log.warning("acceptor_resume_later", node=self.name, retry_in=self.resume_wait)
        send_after(self.node.local, self.me, self.resume_wait, Timer(_RESUME, None))

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
