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
files may take a while; heartbeats are answered meanwhile). The tombstone
collectors of the voters call it:
``("tombstones", bucket, keys)`` (which it holds durably) and ``("collect",
bucket, ((key, ballot), ...))`` (drop those). Voter changes and catch-up
(`paxtor.paxos.reconfig`) call it too, each answered once durable:

- ``("install", cluster, config)``: install a newer voter configuration;
- ``("floor",)``: the promise floor (above every promise made so far);
- ``("adopt_floors", collected)``: take other voters' floors of dropped keys;
- ``("snapshot", ballot | None)``: promise ``ballot`` for every key (if
  given), then keep a copy of this acceptor's state to be read in pages with
  ``("page", token, index)`` (a tuple of records encoded as in the log,
  `paxtor.paxos.log_codec`, and the next index, None at the end: flat
  records cost a fraction of wire dataclasses to encode and to decode);
- ``("bulk_accept", ballot, config_version, items)``: accept each
  ``(bucket, key, register)`` at ``ballot``; the ``(bucket, key)`` refused.

A learner (its acceptor does not vote) answers no heartbeat, no call of
the collectors and no ``floor`` or ``snapshot`` (None: a voter wiped since a
change asked its floor must not report its blank state), and refuses rounds
with "learner".
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import structlog

from paxtor.actors import GenServer, NoReply, reply
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeUp, monitor_nodes
from paxtor.actors.ids import Pid
from paxtor.actors.primitives import self_pid
from paxtor.actors.timers import send_after
from paxtor.paxos.acceptor import Collected, LogRecord, MemberState
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import ACCEPTOR_NAME, LeaseHeartbeat, Timer
from paxtor.paxos.local_acceptor import LOG_FAILED
from paxtor.paxos.log_codec import encode_log_record
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.voter_config import VoterConfig
from paxtor.paxos.wire_format import REQUEST_TAGS, pack_reply, unpack_request

__all__ = ["AcceptorServer"]

log = structlog.get_logger(__name__)

#: The calls of a voter change or a catch-up (a change that makes them is alive).
_CHANGE_CALLS = frozenset(("install", "floor", "snapshot", "page", "bulk_accept", "adopt_floors"))
#: A page of a snapshot is cut once its records encode to this many bytes.
PAGE_BYTES = 1 << 20
#: An unread snapshot is dropped after this long.
SNAPSHOT_TTL = 120.0
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
        self._snapshots: dict[int, tuple[list[LogRecord], float]] = {}
        self._next_token = 0
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
            if ack is not None:
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
        voting = self.voting
        if request.__class__ is tuple and request and request[0] in _CHANGE_CALLS:
            self.node.change_activity = time.monotonic()  # a change of the voters is running
        match request:
            case ("read", str(bucket), key):
                return voting.acceptor.state(bucket, key)
            case ("key_count",):
                return voting.acceptor.key_count()
            case ("tombstones", str(bucket), tuple(keys)):
                if not voting.acceptor.voting:
                    return None  # a learner's tombstones say nothing: the batch is skipped
                return tuple(voting.held_tombstones(bucket, keys))
            case ("collect", str(bucket), tuple(tombstones)) if all(
                isinstance(t, tuple) and len(t) == 2 and isinstance(t[1], Ballot) for t in tombstones
            ):
                return voting.collect(bucket, tombstones) if voting.acceptor.voting else 0
            case ("install", str(cluster), VoterConfig() as config):
                if cluster != self.node.cluster:
                    return None  # another cluster's configuration (or none yet): not installed
                self.node.install_config(config, lambda: reply(caller, voting.acceptor.config_version))
                return NoReply
            case ("snapshot", ballot) if ballot is None or isinstance(ballot, Ballot):
                if not voting.acceptor.voting:
                    return None  # a learner's state says nothing (wiped since it was asked its floor)
                if ballot is None:
                    return self._snapshot()
                voting.fence(ballot, lambda: reply(caller, self._snapshot()))
                return NoReply
            case ("floor",):  # a learner's promises do not count: it says nothing
                return voting.acceptor.promise_floor if voting.acceptor.voting else None
            case ("adopt_floors", tuple(rows)) if all(r.__class__ is Collected for r in rows):
                voting.persist(voting.acceptor.adopt(rows, 0), lambda: reply(caller, True))
                return NoReply
            case ("page", int(token), int(index)):
                return self._page(token, index)
            case ("bulk_accept", Ballot() as ballot, int(config), tuple(items)):
                voting.bulk_accept(ballot, config, items, lambda refused: reply(caller, tuple(refused)))
                return NoReply
        return super().handle_call(request, caller)

    # -- snapshots read in pages ----------------------------------------------------------

    def _snapshot(self) -> tuple[int, int]:
        """Copy this acceptor's state now; (token, records) to read it with ``page``."""
        now = time.monotonic()
        for token in [t for t, (_, born) in self._snapshots.items() if now - born > SNAPSHOT_TTL]:
            del self._snapshots[token]
        self._next_token += 1
        records = [r for r in self.voting.acceptor.snapshot() if r.__class__ is not MemberState]
        self._snapshots[self._next_token] = (records, now)
        return self._next_token, len(records)

    def _page(self, token: int, index: int) -> tuple[tuple[bytes, ...], int | None]:
        """Records from ``index``, log-encoded, about `PAGE_BYTES` in all, and the next index."""
        entry = self._snapshots.get(token)
        if entry is None:
            raise KeyError(f"no snapshot {token} (it expired after {SNAPSHOT_TTL} s, or was read)")
        records = entry[0]
        page: list[bytes] = []
        size = 0
        while index < len(records) and (not page or size < PAGE_BYTES):
            raw = encode_log_record(records[index])
            size += len(raw)
            page.append(raw)
            index += 1
        if index >= len(records):
            del self._snapshots[token]
            return tuple(page), None
        return tuple(page), index


def _start(node: PaxosNode) -> Pid | None:
    return AcceptorServer.start_link(node, name=ACCEPTOR_NAME)
