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
  random draws come from this process's own `random.Random`); an attempt
  with no quorum of answers within ``attempt_timeout`` is retried too; a
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
  get it on a refusal or after ``thrifty_after`` without a decision;
- on VETOED, a lease fence naming a pid of THIS node that is not a live,
  granted owner here is vouched for: the pid is killed if alive (it was
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
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import structlog

from paxtor.actors import GenServer, NoReply, reply
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeDown, NodeUp
from paxtor.actors.ids import Pid
from paxtor.actors.messages import Caller, Cast
from paxtor.actors.primitives import self_pid
from paxtor.actors.timers import TimerHandle, send_after
from paxtor.actors.wire import encode
from paxtor.paxos.acceptor import NACK_LEARNER, Accept, Accepted, Nack, Promise
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
from paxtor.paxos.errors import ChangeRejected, NoQuorum
from paxtor.paxos.lease_keeper import LEASE_EXPIRED
from paxtor.paxos.membership import watch_membership
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.proposer import (
    CHOSEN,
    CONFLICT,
    NEW_CONFIG,
    NO_QUORUM,
    REJECTED,
    VETOED,
    Decision,
    ExactlyOnce,
    Proposer,
    ProposerState,
    Step,
)
from paxtor.paxos.register import ChangeFunction, EndedBinding, Register
from paxtor.paxos.request_size import encode_within
from paxtor.paxos.wire_format import REPLY_TAGS, pack_request, unpack_reply

__all__ = ["ProposerServer", "ProposeRequest"]

log = structlog.get_logger(__name__)

_ATTEMPT = "attempt"  # an attempt's wait for replies ran out
_RETRY = "retry"  # start the next attempt
_NOQUORUM_WAIT = "wait"  # re-check quorum/lease for a waiting request
_THRIFTY = "thrifty"  # the voters a phase first skipped get its message after all

Slot = tuple[str, Hashable]

#: After a conflict, the next ballot's counter jumps past the winner's by at least this much.
BALLOT_SKIP = 1 << 16


@dataclass(frozen=True, slots=True)
class ProposeRequest:
    """Apply ``change`` to ``bucket``/``key`` in one linearizable round (retried until ``timeout``).

    ``ended``: a release round's justification. ``claims_local``: the change
    binds a local pid, so the round waits for a valid lease. ``checked``: the
    values the change can produce were checked to be encodable by the caller.
    ``reply_to``/``tag``: asynchronous requests get a `ProposeDone(tag, ...)`.
    """

    bucket: str
    key: Hashable
    change: ChangeFunction
    timeout: float | None = None  # None: the node's default (PaxosConfig.timeout)
    ended: EndedBinding | None = None
    claims_local: bool = False
    checked: bool = False
    reply_to: Pid | None = None
    tag: Any = None
    spread: bool = False


@dataclass(eq=False)
class _Pending:
    """A request being served: its deadline, its attempts, what its change did."""

    request: ProposeRequest
    caller: Caller | None
    deadline: float
    change: ExactlyOnce
    attempt: int = 0
    maybe_applied: bool = False


@dataclass(eq=False)
class _KeySlot:
    """Everything this node does on one key: the request being served and those queued."""

    active: _Pending | None = None
    queue: deque[_Pending] = field(default_factory=deque)
    round: Proposer | None = None
    timer: TimerHandle | None = None
    seq: int = 0  # tags timers, so a stale one is ignored
    waiting: bool = False  # waits for quorum (or lease) before its next attempt
    deferred: list[tuple[str, Any]] = field(default_factory=list)  # (voter, message) not sent yet
    thrifty: TimerHandle | None = None
    first: set[str] | None = None  # the voters a phase goes to first ...
    first_of: list[str] | None = None  # ... computed for this list of connected voters


class ProposerServer(GenServer):
    """See the module docstring. Registered as ``paxos_proposer`` on every node."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        config = node.config
        self.node = node
        self.local = node.local
        self.me = self_pid()
        self.state = ProposerState(node.identity, one_rtt=config.one_rtt)
        self.rng = random.Random(config.seed)
        self.view = watch_membership(node)
        self.attempt_timeout = config.attempt_timeout
        self.thrifty_after = config.thrifty_after
        cap = config.max_request_time
        self.max_request_time = float("inf") if cap is None else cap
        self._others = self._connected_others()
        self.slots: dict[Slot, _KeySlot] = {}
        self.deliver = node.local.deliver_message
        self.deliver_named = node.local.deliver_named
        self.voting = node.local_acceptor  # this node's own vote: no message hop
        self.counters = node.counters
        # op numbers must never repeat within this node incarnation, across restarts of this process
        self._op = time.monotonic_ns()

    # -- requests -----------------------------------------------------------------------

    def handle_call(self, request: Any, caller: Caller) -> Any:
        if request.__class__ is ProposeRequest:
            self._submit(request, caller)
            return NoReply
        return super().handle_call(request, caller)

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is tuple and msg and msg[0] in REPLY_TAGS:
            self._on_reply(msg)
        elif cls is Timer:
            self._on_timer(msg)
        elif cls is ProposeRequest:
            self._submit(msg, None)
        elif cls is NodeUp:
            self.view.up(msg.node)
            self._others = self._connected_others()
            self._resume_waiting()
        elif cls is NodeDown:
            self.view.down(msg.node)
            self._others = self._connected_others()
        elif cls is MembershipChanged:
            self._others = self._connected_others()
            self._resume_waiting()

    def _submit(self, request: ProposeRequest, caller: Caller | None) -> None:
        timeout = self.node.config.timeout if request.timeout is None else request.timeout
        if timeout > self.max_request_time:
            timeout = self.max_request_time  # a retry must never outlive its collected op mark
        change = ExactlyOnce(request.change, self.node.identity)
        pending = _Pending(request, caller, time.monotonic() + timeout, change)
        slot_key = (request.bucket, request.key)
        slot = self.slots.get(slot_key)
        if slot is None:
            slot = self.slots[slot_key] = _KeySlot()
        if slot.active is None:
            slot.active = pending
            self._attempt(slot_key, slot)
        else:
            slot.queue.append(pending)

    # -- attempts -------------------------------------------------------------------------

    def _attempt(self, slot_key: Slot, slot: _KeySlot) -> None:
        pending = slot.active
        assert pending is not None
        now = time.monotonic()
        remaining = pending.deadline - now
        if remaining <= 0:
            self._fail_no_quorum(slot_key, slot, "no quorum of voters answered in time")
            return
        term = self.node.lease.term_at(now)
        config = self.node.voter_config
        if config is None or not self.view.has_quorum or (pending.request.claims_local and term is None):
            # nothing is sent that cannot win: wait for quorum (NodeUp) or the lease
            slot.waiting = True
            wait = min(remaining, self.node.config.heartbeat_interval)  # type: ignore[type-var]
            self._set_timer(slot_key, slot, wait, _NOQUORUM_WAIT)
            return
        slot.waiting = False
        counters = self.counters
        counters.rounds += 1
        if pending.attempt:
            counters.retries += 1
        self._op += 1
        mark = pending.change.begin(self._op, term)
        request = pending.request
        acceptor = self.node.acceptor
        known = acceptor.promised(request.bucket, request.key) if acceptor is not None else None
        round_ = self.state.new_round(
            request.bucket,
            request.key,
            pending.change,
            config,
            ended=request.ended,
            attempt=pending.attempt,
            backoff_draw=self.rng.random(),
            known_promised=known,
            op=mark,
            spread=request.spread,
        )
        slot.round = round_
        self._set_timer(slot_key, slot, min(remaining, self.attempt_timeout), _ATTEMPT)
        self._step(slot_key, slot, round_.start())

    def _set_timer(self, slot_key: Slot, slot: _KeySlot, delay: float, kind: str) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
        slot.seq += 1
        slot.timer = send_after(self.local, self.me, delay, Timer(kind, (slot_key, slot.seq)))

    def _on_timer(self, msg: Timer) -> None:
        slot_key, seq = msg.token
        slot = self.slots.get(slot_key)
        if slot is None or slot.seq != seq:
            return  # stale
        if msg.kind == _THRIFTY:
            slot.thrifty = None
            self._send_deferred(slot)
            return
        slot.timer = None
        if msg.kind == _ATTEMPT:
            if slot.round is not None:
                self._step(slot_key, slot, slot.round.on_timeout())
        else:  # _RETRY, _NOQUORUM_WAIT
            if slot.active is not None and slot.round is None:
                self._attempt(slot_key, slot)

    def _resume_waiting(self) -> None:
        for slot_key, slot in list(self.slots.items()):
            if slot.waiting and slot.active is not None and slot.round is None:
                self._attempt(slot_key, slot)

    # -- messages of a round -----------------------------------------------------------------

    def _on_reply(self, flat: tuple[Any, ...]) -> None:
        try:
            voter, msg = unpack_reply(flat)
        except ValueError as exc:
            log.warning("proposer_bad_reply", node=self.node.name, error=str(exc)[:300])
            return
        slot_key = (msg.bucket, msg.key)
        slot = self.slots.get(slot_key)
        if slot is None or slot.round is None:
            if msg.__class__ is Nack:
                # late: the round is over, chosen by the others. Its refusal still tells how
                # far to fast-forward, or the next round (a spread to bring this voter level)
                # is refused again
                self.state.observe(msg.promised)
            return
        self._on_vote(slot_key, slot, voter, msg)

    def _on_vote(self, slot_key: Slot, slot: _KeySlot, voter: str, msg: Any) -> None:
        round_ = slot.round
        assert round_ is not None
        cls = msg.__class__
        if cls is Nack and slot.deferred:
            self._send_deferred(slot)  # a refusal: the others' answers are needed now
        if cls is Accepted:
            step = round_.on_accepted(voter, msg)
        elif cls is Promise:
            step = round_.on_promise(voter, msg)
        elif cls is Nack:
            self.counters.nacks += 1
            self._learn_from(voter, msg)
            # voters that are down cannot answer: with them a remote nack may decide the round now
            # (not the local vote's, answered inside this very dispatch: a retry must not recurse)
            down = self.view.down_members() if voter != self.node.name else ()
            step = round_.on_nack(voter, msg, down=down)
        else:
            return
        if step.send or step.decision is not None:
            self._step(slot_key, slot, step)

    def _learn_from(self, voter: str, nack: Nack) -> None:
        """A refusal may tell of a learner, or of a newer voter configuration."""
        config = self.node.voter_config
        if voter == self.node.name:
            return
        if nack.reason == NACK_LEARNER:
            self.deliver_named(MEMBERSHIP_NAME, self.node.name, ("learner", voter))
        if config is not None and nack.config > config.version:
            self.deliver_named(MEMBERSHIP_NAME, self.node.name, ("ask", voter))

    def _step(self, slot_key: Slot, slot: _KeySlot, step: Step) -> None:
        if step.send and not self._dispatch(slot_key, slot, step):
            return
        if step.decision is not None:
            self._decided(slot_key, slot, step.decision)

    def _dispatch(self, slot_key: Slot, slot: _KeySlot, step: Step) -> bool:
        """Send a step's messages (one envelope per message); False if it could not be encoded."""
        pending = slot.active
        assert pending is not None
        envelope: tuple[Any, ...] | None = None
        last: Any = None
        first = None if pending.request.spread else self._first_voters(slot_key, slot)
        deferred: list[tuple[str, Any]] = []
        own_vote: Any = None
        for voter, msg in step.send:
            if msg is not last:
                last = msg
                if msg.__class__ is Accept:
                    if not pending.request.checked:
                        try:
                            self._check_size(pending.request.key, msg.register)
                        except (TypeError, ValueError) as exc:
                            self._reject(slot_key, slot, exc)
                            return False
                    pending.maybe_applied = True
                envelope = None
            if voter == self.node.name and self.voting is not None:
                own_vote = msg
                continue
            if envelope is None:
                envelope = pack_request(self.me, msg)
            if first is None or voter in first:
                self.deliver_named(ACCEPTOR_NAME, voter, envelope)
            else:
                deferred.append((voter, envelope))
        slot.deferred = deferred  # a new phase: the last one's skipped voters are moot
        if slot.thrifty is not None:
            slot.thrifty.cancel()
            slot.thrifty = None
        if deferred:
            token = (slot_key, slot.seq)
            slot.thrifty = send_after(self.local, self.me, self.thrifty_after, Timer(_THRIFTY, token))
        if own_vote is not None:
            self._vote_here(slot_key, slot, own_vote)
        return True

    def _check_size(self, key: Hashable, register: Register) -> None:
        """ValueError if the key and the register a change made exceed ``max_request_bytes``
        (so every message of the round fits a frame); TypeError if they cannot be encoded."""
        limit = self.node.config.max_request_bytes
        encode_within(register, limit, "the key and the register the change made", already=len(encode(key)))

    def _vote_here(self, slot_key: Slot, slot: _KeySlot, msg: Any) -> None:
        """This node's acceptor votes at once; its answer comes back now, or once durable."""
        reply = self.voting.handle(self.me, msg)  # type: ignore[union-attr]
        if reply is not None and slot.round is not None:
            self._on_vote(slot_key, slot, self.node.name, reply)

    def _first_voters(self, slot_key: Slot, slot: _KeySlot) -> set[str] | None:
        """Thrifty phases: a quorum to ask first (this node, if it votes, plus connected
        voters picked by the key's hash, which spreads keys over the voters); None: ask all.

        The others get the message if an answer is a refusal or none comes within
        ``thrifty_after``: half the messages per round, and no waiting on the slowest.
        """
        if self.thrifty_after is None:
            return None
        if slot.first_of is self._others:  # replaced on every NodeUp/NodeDown
            return slot.first
        slot.first, slot.first_of = self._pick_first(slot_key), self._others
        return slot.first

    def _pick_first(self, slot_key: Slot) -> set[str] | None:
        config = self.node.voter_config
        if config is None:
            return None
        first = {self.node.name} if self.node.voting else set()
        others = self._others
        if others:
            start = hash(slot_key) % len(others)
            for voter in others[start:] + others[:start]:
                if config.is_quorum(first):
                    break
                first.add(voter)
        return first if config.is_quorum(first) else None

    def _connected_others(self) -> list[str]:
        """The members that can answer, other than this node, in configured order."""
        config = self.node.voter_config
        if config is None:
            return []
        able = self.view.able
        return [v for v in config.members if v != self.node.name and v in able]

    def _send_deferred(self, slot: _KeySlot) -> None:
        deferred, slot.deferred = slot.deferred, []
        if slot.thrifty is not None:
            slot.thrifty.cancel()
            slot.thrifty = None
        for voter, envelope in deferred:
            self.deliver_named(ACCEPTOR_NAME, voter, envelope)

    def _reject(self, slot_key: Slot, slot: _KeySlot, exc: BaseException) -> None:
        """The round's value cannot travel: fail the request, send nothing."""
        slot.round = None
        slot.deferred = []
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        error = type(exc)(f"the value cannot be sent to other nodes: {exc}")  # TypeError or ValueError
        self._finish(slot_key, slot, None, error)

    # -- decisions ---------------------------------------------------------------------------

    def _decided(self, slot_key: Slot, slot: _KeySlot, decision: Decision) -> None:
        round_ = slot.round
        assert round_ is not None
        slot.round = None
        slot.deferred = []
        if slot.thrifty is not None:
            slot.thrifty.cancel()
            slot.thrifty = None
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        self.state.on_decision(round_, decision)
        pending = slot.active
        assert pending is not None
        outcome = decision.outcome
        if outcome == CONFLICT:
            self.counters.conflicts += 1
            self.state.observe(self._skip_ahead(decision.highest_seen, pending.attempt))
        elif outcome == VETOED:
            self.counters.vetoed += 1
        if outcome == CHOSEN:
            self.counters.chosen += 1
            register = decision.register
            assert register is not None
            adopted = pending.change.adopted
            if adopted is None:
                self._chosen(pending, register, pending.change.base, pending.change.term)
                self._finish(slot_key, slot, register, None)
            else:  # an earlier attempt's change is in: its lease duties and its result
                self._chosen(pending, register, adopted.base, adopted.term)
                self._finish(slot_key, slot, adopted.result, None)
            return
        if outcome == REJECTED:
            error = pending.change.error
            if error is None:
                error = ChangeRejected(decision.error or "the change function was rejected")
            pending.maybe_applied = False
            self._finish(slot_key, slot, None, error)
            return
        if decision.maybe_applied:
            pending.maybe_applied = True
        if outcome == VETOED:
            self._vouch(pending, decision)
        if outcome != CONFLICT and slot.queue and not pending.maybe_applied and time.monotonic() < pending.deadline:
            # a veto, or a prepare some voters do not answer (they veto it or are cut off),
            # can last as long as a partition: the others on the key go first. A conflict
            # backs off instead (yielding would only feed the duel), and a maybe-applied
            # request retries first (its op mark).
            self._yield_slot(slot_key, slot)
            return
        delay = decision.retry_after
        if outcome == NEW_CONFIG:
            config = self.node.voter_config
            if config is None or config.version < decision.config_version:
                delay = None  # not here yet (the membership server asked for it): back off
        if delay is None:  # NO_QUORUM: an attempt got too few answers; back off a little
            delay = self.state.backoff.delay(pending.attempt, self.rng.random())
        pending.attempt += 1
        if time.monotonic() + delay >= pending.deadline:
            why = {CONFLICT: "competing proposals", VETOED: "lease veto", NO_QUORUM: "no quorum",
                   NEW_CONFIG: "the voter configuration changed"}
            self._fail_no_quorum(slot_key, slot, f"gave up at the deadline ({why.get(outcome, outcome)})")
            return
        self._set_timer(slot_key, slot, delay, _RETRY)

    def _yield_slot(self, slot_key: Slot, slot: _KeySlot) -> None:
        """An attempt failed: the requests queued on the key go first, this one retries
        after them (a vetoed release can fail until its deadline; it must not stall the key)."""
        pending = slot.active
        assert pending is not None
        pending.attempt += 1
        slot.queue.append(pending)
        slot.active = slot.queue.popleft()
        slot.waiting = False
        self._attempt(slot_key, slot)

    def _skip_ahead(self, seen: Ballot, attempt: int) -> Ballot:
        """The ballot to fast-forward past after losing to ``seen`` (see the module docstring).

        A request that lost more often jumps further (it outranks those that
        lost less: ageing), and a random offset breaks ties between nodes that
        lost equally often (else the larger node name would always win).
        """
        block = seen.counter // BALLOT_SKIP + 1 + attempt
        return Ballot(block * BALLOT_SKIP + self.rng.randrange(BALLOT_SKIP // 2), seen.node)

    def _chosen(self, pending: _Pending, register: Register, base: Register | None, term: int | None) -> None:
        """Lease and binding duties once ``register`` is chosen, by a change made on ``base``
        in lease term ``term``."""
        request = pending.request
        node = self.node
        slot_key = (request.bucket, request.key)
        binding = register.binding
        changed_tenure = base is not None and register.filled and (
            base.is_empty or base.epoch != register.epoch or base.binding != binding
        )
        owner = binding.pid if binding is not None else None
        if changed_tenure and owner is not None and node.is_local(owner):
            term_now = node.lease.term_at(time.monotonic())
            term = term if term is not None and term_now == term else None
            # the keeper re-checks the term when it records the hold; a lapse kills the owner
            self.local.deliver_named(
                LEASE_KEEPER_NAME,
                node.name,
                Cast(("hold_or_kill", owner, request.bucket, request.key, register.epoch, term)),
            )
        elif slot_key in node.held_by:
            owner_now = owner if register.filled else None
            self.local.deliver_named(
                LEASE_KEEPER_NAME,
                node.name,
                Cast(("tenure_now", request.bucket, request.key, register.epoch, owner_now)),
            )
        if changed_tenure and binding is not None and binding.owner_node == node.name:
            self.deliver_named(BINDINGS_NAME, node.name, WatchTenure(request.bucket, request.key, register))

    def _vouch(self, pending: _Pending, decision: Decision) -> None:
        """A VETOED round carries fences; vouch for those naming this node's dead or ungranted pids."""
        proposed = decision.proposed
        if proposed is None:
            return
        request = pending.request
        node = self.node
        for fence in proposed.lease_fences:
            pid = fence.binding.pid
            if pid is None or pid.node != node.name:
                continue
            if pid.incarnation == node.incarnation:
                if node.holds_tenure(pid, request.bucket, request.key, fence.epoch):
                    continue  # a live, granted owner: the veto is right
                proc = node.local.lookup(pid)
                if proc is not None and proc.alive:
                    proc.kill(LEASE_EXPIRED)  # handed the key while this node was cut off
                    reason: Any = LEASE_EXPIRED
                else:
                    reason = "noproc"
            elif pid.incarnation < node.incarnation:
                reason = "noproc"  # an earlier life of this node: certainly dead
            else:
                continue
            log.info(
                "lease_fence_vouched",
                node=node.name,
                bucket=request.bucket,
                key=repr(request.key)[:200],
                epoch=fence.epoch,
                pid=repr(pid),
                reason=reason,
            )
            self.deliver_named(BINDINGS_NAME, node.name, VouchRelease(request.bucket, request.key, fence, reason))

    # -- finishing ---------------------------------------------------------------------------

    def _fail_no_quorum(self, slot_key: Slot, slot: _KeySlot, why: str) -> None:
        pending = slot.active
        assert pending is not None
        self.counters.no_quorum += 1
        request = pending.request
        config = self.node.voter_config
        voters = config.describe() if config is not None else "not known yet"
        error = NoQuorum(
            f"{why}: bucket {request.bucket!r} key {request.key!r} "
            f"(voters {voters}; able to answer {', '.join(sorted(self.view.able)) or 'none'})",
            maybe_applied=pending.maybe_applied,
        )
        self._finish(slot_key, slot, None, error)

    def _finish(self, slot_key: Slot, slot: _KeySlot, register: Register | None, error: BaseException | None) -> None:
        pending = slot.active
        assert pending is not None
        request = pending.request
        # this request's change made the chosen value (in this attempt, or in an
        # earlier one whose accepts a later round adopted)
        applied = register is not None and pending.change.applied
        if request.reply_to is not None:
            self.deliver(request.reply_to, ProposeDone(request.tag, register, error, applied))
        elif pending.caller is not None:
            reply(pending.caller, (register, error))
        slot.active = None
        slot.waiting = False
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if slot.queue:
            slot.active = slot.queue.popleft()
            self._attempt(slot_key, slot)
        else:
            del self.slots[slot_key]


def _start(node: PaxosNode) -> Pid:
    return ProposerServer.start_link(node, name=PROPOSER_NAME)
