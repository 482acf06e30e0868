"""The proposer process of a node: runs Paxos rounds as pure `Proposer` state machines.

Every node runs one (voters and clients alike). It takes requests
("apply this change function to that key") and runs many rounds at once, at
most one per key: requests on one key queue behind each other, which keeps
this node from conflicting with itself and makes the CASPaxos 1-RTT path
(the node that wrote a key last skips phase 1, see `ProposerState`) the
common case for a key used from one node.

Per request, until its deadline (default 5 s):

- an attempt starts only when this node knows the voter configuration and a
  quorum of its voters can answer (connected, and not learners: so a request
  that cannot win sends nothing and leaves nothing half-written), and, for a
  claim of a local pid, only while this node's lease is valid;
- a voter that refuses a round's configuration as older than its own
  (NEW_CONFIG) is asked for its configuration (through the membership
  server), and the request retries once it is installed;
- CONFLICT and VETOED are retried after the core's randomized backoff (the
  random draws come from this process's own `random.Random`); from the
  second attempt on it waits at least a round's time as this node measures
  it (twice the median of its recent phase-1 times), so that a loser's retry
  does not preempt the round that beat it; an attempt with no quorum of
  answers within ``attempt_timeout`` is retried too (same backoff); a
  request that failed so (not a conflict) while others are queued on its
  key goes behind them instead (a release vetoed by acceptors that still
  hear the owner, as in a one-way partition, fails until its deadline: it
  must not stall every round on the key);
- after a CONFLICT the ballot counter skips ahead by blocks of
  `BALLOT_SKIP` (more for a request that lost more often, plus a random
  offset): the winner's 1-RTT rounds bump its counter by one or two each, so
  a retry one above what it heard of was outrun again before it landed, and
  equal ballot counters went to the larger node name (the node that wrote a
  key last starved the others). Any ballot is safe; only liveness depends
  on this;
- thrifty phases: each phase goes first to a quorum only (this node and
  voters picked by the key's hash until they make a quorum), the other voters
  get it on a refusal or after ``thrifty_after`` without a decision; this
  node votes once the phase's messages to the others are written, so their
  write+fsync, the longest leg of a round, starts first;
- on VETOED or CONFLICT, a lease fence naming a pid of THIS node that is not
  a live, granted owner here is vouched for: the pid is killed if alive (it was
  handed the key while this node was cut off) and the binding watcher
  releases the tenure with that real reason (`proposer.py`'s contract);
- a round that claims a key for a local pid holds it with the lease keeper
  if the lease term did not change from the round's start to its decision,
  and kills the pid ("lease_expired") otherwise;
- at the deadline the request fails with `NoQuorum` (``maybe_applied`` says
  whether accepts went out that a later round could still adopt).
"""

from __future__ import annotations

import random
import time
from collections.abc import Hashable, Iterable
from typing import Any

import structlog

from paxtor.actors import GenServer, NoReply, reply
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeDown, NodeUp
from paxtor.actors.ids import Pid
from paxtor.actors.messages import Caller, Cast
from paxtor.actors.primitives import self_pid
from paxtor.actors.timers import TimerHandle, send_after
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import (
    ACCEPTOR_NAME,
    BINDINGS_NAME,
    LEASE_KEEPER_NAME,
    MEMBERSHIP_NAME,
    PROPOSER_NAME,
    MembershipChanged,
    ProposeDone,
    Timer,
    VouchRelease,
    WatchTenure,
)
from paxtor.paxos.membership import QuorumView, watch_membership
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.proposer import ProposerState
from paxtor.paxos.proposer_engine import (
    BALLOT_SKIP,
    THRIFTY,
    AskConfig,
    CancelTimer,
    Finish,
    HoldOrKill,
    Kill,
    Learner,
    ProposerEngine,
    ProposeRequest,
    Send,
    StartTimer,
    TenureNow,
    Vote,
)
from paxtor.paxos.voter_config import VoterConfig
from paxtor.paxos.wire_format import REPLY_TAGS, pack_request, unpack_reply

__all__ = ["BALLOT_SKIP", "NodeHost", "ProposerServer", "ProposeRequest"]

log = structlog.get_logger(__name__)

Slot = tuple[str, Hashable]


class NodeHost:
    """What the proposer engine reads of a running node: its `PaxosNode` and quorum view."""

    def __init__(self, node: PaxosNode, view: QuorumView) -> None:
        self.node = node
        self.view = view

    def voter_config(self) -> VoterConfig | None:
        return self.node.voter_config

    def has_quorum(self) -> bool:
        return self.view.has_quorum

    def able(self) -> Iterable[str]:
        return self.view.able

    def connected_others(self) -> list[str]:
        """The members that can answer, other than this node, in configured order."""
        node = self.node
        config = node.voter_config
        if config is None:
            return []
        able = self.view.able
        return [v for v in config.members if v != node.name and v in able]

    def down_members(self) -> Iterable[str]:
        return self.view.down_members()

    def votes_here(self) -> bool:
        return self.node.voting

    def lease_term(self, now: float) -> int | None:
        return self.node.lease.term_at(now)

    def promised(self, bucket: str, key: Hashable) -> Ballot | None:
        acceptor = self.node.acceptor
        return acceptor.promised(bucket, key) if acceptor is not None else None

    def is_local(self, pid: Pid) -> bool:
        return self.node.is_local(pid)

    def holds_key(self, slot: Slot) -> bool:
        return slot in self.node.held_by

    def holds_tenure(self, pid: Pid, bucket: str, key: Hashable, epoch: int) -> bool:
        return self.node.holds_tenure(pid, bucket, key, epoch)

    def is_alive(self, pid: Pid) -> bool:
        proc = self.node.local.lookup(pid)
        return proc is not None and proc.alive


class ProposerServer(GenServer):
    """See the module docstring: the gevent adapter of `ProposerEngine`. Registered as
    ``paxos_proposer`` on every node."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        config = node.config
        self.node = node
        self.local = node.local
        self.me = self_pid()
        self.view = watch_membership(node)
        heartbeat = config.heartbeat_interval
        assert heartbeat is not None
        self.engine = ProposerEngine(
            NodeHost(node, self.view),
            name=node.name,
            identity=node.identity,
            incarnation=node.incarnation,
            state=ProposerState(node.identity, one_rtt=config.one_rtt),
            rng=random.Random(config.seed),
            default_timeout=config.timeout,
            attempt_timeout=config.attempt_timeout,
            wait_interval=heartbeat,
            thrifty_after=config.thrifty_after,
            max_request_time=config.max_request_time,
            max_request_bytes=config.max_request_bytes,
            local_vote=node.local_acceptor is not None,
            # op numbers must never repeat within this node incarnation, across restarts of this process
            first_op=time.monotonic_ns(),
            counters=node.counters,
        )
        self.timers: dict[tuple[bool, Slot], tuple[Any, TimerHandle]] = {}
        self.deliver = node.local.deliver_message
        self.deliver_named = node.local.deliver_named
        self.voting = node.local_acceptor  # this node's own vote, not through the acceptor process
        self._run_callback = node.local.hub().loop.run_callback

    # -- events in ----------------------------------------------------------------------

    def handle_call(self, request: Any, caller: Caller) -> Any:
        if request.__class__ is ProposeRequest:
            self._perform(self.engine.submit(request, caller, time.monotonic()))
            return NoReply
        return super().handle_call(request, caller)

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        engine = self.engine
        if cls is tuple and msg and msg[0] in REPLY_TAGS:
            try:
                voter, vote = unpack_reply(msg)
            except ValueError as exc:
                log.warning("proposer_bad_reply", node=self.node.name, error=str(exc)[:300])
                return
            self._perform(engine.on_reply(voter, vote, time.monotonic()))
        elif cls is Timer:
            token = msg.token
            group = (token[0] == THRIFTY, token[1])
            held = self.timers.get(group)
            if held is not None and held[0] == token:
                del self.timers[group]
            self._perform(engine.on_timer(token, time.monotonic()))
        elif cls is _LocalVote:
            self._vote(msg.msg)
        elif cls is ProposeRequest:
            self._perform(engine.submit(msg, None, time.monotonic()))
        elif cls is NodeUp:
            self.view.up(msg.node)
            self._perform(engine.view_changed(time.monotonic()))
        elif cls is NodeDown:
            self.view.down(msg.node)
            self._perform(engine.view_changed(time.monotonic(), resume=False))
        elif cls is MembershipChanged:
            self._perform(engine.view_changed(time.monotonic()))

    # -- effects out ----------------------------------------------------------------------

    def _perform(self, effects: list[Any]) -> None:
        """Carry out the engine's effects in order (an envelope is packed once per message)."""
        last: Any = None
        envelope: Any = None
        for effect in effects:
            cls = effect.__class__
            if cls is Send:
                if effect.msg is not last:
                    last, envelope = effect.msg, pack_request(self.me, effect.msg)
                self.deliver_named(ACCEPTOR_NAME, effect.voter, envelope)
            elif cls is Vote and last is not None:
                # the other voters' messages are written at the end of this loop turn: vote
                # after that write, so their write+fsync starts before this node's vote work
                self._run_callback(self.deliver, self.me, _LocalVote(effect.msg))
            elif cls is StartTimer:
                self._start_timer(effect)
            elif cls is CancelTimer:
                held = self.timers.pop((effect.kind == THRIFTY, effect.slot), None)
                if held is not None:
                    held[1].cancel()
            elif cls is Vote:
                self._vote(effect.msg)
            elif cls is Finish:
                self._finish(effect)
            else:
                self._duty(effect)

    def _vote(self, msg: Any) -> None:
        """This node's acceptor votes at once; its answer comes back now, or once durable."""
        answer = self.voting.handle(self.me, msg)  # type: ignore[union-attr]
        if answer is not None:
            self._perform(self.engine.on_reply(self.node.name, answer, time.monotonic()))

    def _start_timer(self, effect: StartTimer) -> None:
        token = effect.token
        group = (token[0] == THRIFTY, token[1])
        held = self.timers.pop(group, None)
        if held is not None:
            held[1].cancel()
        handle = send_after(self.local, self.me, effect.delay, Timer(token[0], token))
        self.timers[group] = (token, handle)

    def _finish(self, effect: Finish) -> None:
        request = effect.request
        if request.reply_to is not None:
            self.deliver(request.reply_to, ProposeDone(request.tag, effect.register, effect.error, effect.applied))
        elif effect.token is not None:
            reply(effect.token, effect.outcome)

    def _duty(self, effect: Any) -> None:
        """The lease, binding and membership duties the engine asks for."""
        node = self.node
        cls = effect.__class__
        if cls is HoldOrKill:
            # the keeper re-checks the term when it records the hold; a lapse kills the owner
            hold = ("hold_or_kill", effect.pid, effect.bucket, effect.key, effect.epoch, effect.term)
            self.deliver_named(LEASE_KEEPER_NAME, node.name, Cast(hold))
        elif cls is TenureNow:
            tenure = ("tenure_now", effect.bucket, effect.key, effect.epoch, effect.owner)
            self.deliver_named(LEASE_KEEPER_NAME, node.name, Cast(tenure))
        elif cls is WatchTenure:
            self.deliver_named(BINDINGS_NAME, node.name, effect)
        elif cls is Kill:
            proc = node.local.lookup(effect.pid)
            if proc is not None and proc.alive:
                proc.kill(effect.reason)
        elif cls is VouchRelease:
            log.info(
                "lease_fence_vouched",
                node=node.name,
                bucket=effect.bucket,
                key=repr(effect.key)[:200],
                epoch=effect.fence.epoch,
                pid=repr(effect.fence.binding.pid),
                reason=effect.reason,
            )
            self.deliver_named(BINDINGS_NAME, node.name, effect)
        elif cls is AskConfig:
            self.deliver_named(MEMBERSHIP_NAME, node.name, ("ask", effect.voter))
        elif cls is Learner:
            self.deliver_named(MEMBERSHIP_NAME, node.name, ("learner", effect.voter))


class _LocalVote:
    """This node's vote on a message of a round, taken once the round's writes to the
    other voters are out (`ProposerServer._perform`)."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg


def _start(node: PaxosNode) -> Pid | None:
    return ProposerServer.start_link(node, name=PROPOSER_NAME)
