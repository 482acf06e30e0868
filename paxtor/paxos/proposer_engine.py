"""The proposer's policy as a pure engine: requests, replies and timer firings in, effects out.

`ProposerEngine` holds what `ProposerServer` used to do inline: per-key
queues, attempts with deadlines and backoff, thrifty phases, `BALLOT_SKIP`
after a conflict, vouching after a veto and the lease duties of a chosen
value. It has no sockets, greenlets or clocks: every event takes ``now``
(the node's monotonic clock), a timer is an effect (`StartTimer`) whose
firing comes back as `on_timer`, and what the engine needs to know of the
node it asks a `ProposerHost` (the voter configuration, the quorum view, the
lease term, its own processes). Two adapters drive it: the gevent
`ProposerServer` and the simulator's node (`paxtor.sim`), so the simulator
checks this very code. The policy itself is described in
`paxtor.paxos.proposer_server`'s module docstring.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from paxtor.actors.ids import Pid
from paxtor.actors.outcome import Err, Ok, Outcome
from paxtor.actors.wire import encode
from paxtor.paxos.acceptor import NACK_LEARNER, Accept, Accepted, Nack, Promise
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import VouchRelease, WatchTenure
from paxtor.paxos.errors import ChangeRejected, NoQuorum
from paxtor.paxos.lease import LEASE_EXPIRED
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
from paxtor.paxos.voter_config import VoterConfig

__all__ = [
    "BALLOT_SKIP",
    "AskConfig",
    "Decided",
    "Finish",
    "HoldOrKill",
    "Kill",
    "Learner",
    "ProposeRequest",
    "ProposerEngine",
    "ProposerHost",
    "Send",
    "Started",
    "StartTimer",
    "CancelTimer",
    "TenureNow",
    "Vote",
]

Slot = tuple[str, Hashable]

#: After a conflict, the next ballot's counter jumps past the winner's by at least this much.
BALLOT_SKIP = 1 << 16

ATTEMPT = "attempt"  # an attempt's wait for replies ran out
RETRY = "retry"  # start the next attempt
NOQUORUM_WAIT = "wait"  # re-check quorum/lease for a waiting request
THRIFTY = "thrifty"  # the voters a phase first skipped get its message after all
#: Keys whose first voters the engine remembers (forgotten all at once past it, on a view change
#: and on a new voter configuration).
FIRST_CACHE_SIZE = 4096
_UNKNOWN: Any = object()


@dataclass(frozen=True, slots=True)
class ProposeRequest:
    """Apply ``change`` to ``bucket``/``key`` in one linearizable round (retried until ``timeout``).

    ``ended``: a release round's justification. ``claims_local``: the change
    binds a local pid, so the round waits for a valid lease. ``checked``: the
    values the change can produce were checked to be encodable by the caller.
    ``reply_to``/``tag``: asynchronous requests get a `ProposeDone(tag, ...)`.
    ``attempt``: attempts already made for the same operation by earlier requests
    (a client sending it again after `NoQuorum`): backoff and ballot skips go on
    growing from there instead of starting over.
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
    attempt: int = 0


# -- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` (a `Prepare` or an `Accept`) to the acceptor of ``voter``."""

    voter: str
    msg: Any


@dataclass(frozen=True, slots=True)
class Vote:
    """This node's own acceptor votes on ``msg``; feed its reply back through `on_reply`."""

    msg: Any


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Call `on_timer(token, now)` after ``delay`` seconds (replaces a timer of the same kind and key)."""

    delay: float
    token: tuple[str, Slot, int]


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """The timer of this kind on this key is moot (a late firing is ignored anyway)."""

    kind: str
    slot: Slot


@dataclass(frozen=True, slots=True)
class Finish:
    """The request submitted with ``token`` is done: `Ok` (the register chosen) or `Err`.

    ``applied``: its change made the chosen value; ``term``: the lease term
    that change was made in (None: none was valid)."""

    token: Any
    request: ProposeRequest
    outcome: Outcome[Register, BaseException]
    applied: bool
    term: int | None = None

    @property
    def register(self) -> Register | None:
        return self.outcome.value if self.outcome.ok else None

    @property
    def error(self) -> BaseException | None:
        return None if self.outcome.ok else self.outcome.reason


@dataclass(frozen=True, slots=True)
class HoldOrKill:
    """A local pid was given the key: the lease keeper holds it if ``term`` is still current,
    else kills it (``term`` None: the lease lapsed during the round)."""

    pid: Pid
    bucket: str
    key: Hashable
    epoch: int
    term: int | None


@dataclass(frozen=True, slots=True)
class TenureNow:
    """A key this node holds for a local owner changed: who holds it now (None: nobody)."""

    bucket: str
    key: Hashable
    epoch: int
    owner: Pid | None


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill a local process (handed a key while this node was cut off)."""

    pid: Pid
    reason: Any


@dataclass(frozen=True, slots=True)
class AskConfig:
    """``voter`` knows a newer voter configuration: ask it."""

    voter: str


@dataclass(frozen=True, slots=True)
class Learner:
    """``voter`` answered as a learner (it votes on nothing yet)."""

    voter: str


@dataclass(frozen=True, slots=True)
class Started:
    """An attempt of the request ``token`` started ``round`` (only with ``observe``)."""

    token: Any
    round: Proposer


@dataclass(frozen=True, slots=True)
class Decided:
    """``round`` of the request ``token`` ended with ``decision`` (only with ``observe``)."""

    token: Any
    round: Proposer
    decision: Decision


class ProposerHost(Protocol):
    """What the engine reads of its node (no I/O: answers from memory)."""

    def voter_config(self) -> VoterConfig | None: ...

    def has_quorum(self) -> bool: ...

    def able(self) -> Iterable[str]: ...

    def connected_others(self) -> list[str]: ...

    def down_members(self) -> Iterable[str]: ...

    def votes_here(self) -> bool: ...

    def lease_term(self, now: float) -> int | None: ...

    def promised(self, bucket: str, key: Hashable) -> Ballot | None: ...

    def is_local(self, pid: Pid) -> bool: ...

    def holds_key(self, slot: Slot) -> bool: ...

    def holds_tenure(self, pid: Pid, bucket: str, key: Hashable, epoch: int) -> bool: ...

    def is_alive(self, pid: Pid) -> bool: ...


@dataclass(eq=False)
class _Pending:
    """A request being served: its deadline, its attempts, what its change did."""

    request: ProposeRequest
    token: Any
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
    timer: bool = False  # an attempt, retry or wait timer is set
    seq: int = 0  # tags timers, so a stale one is ignored
    waiting: bool = False  # waits for quorum (or lease) before its next attempt
    deferred: list[tuple[str, Any]] = field(default_factory=list)  # (voter, message) not sent yet
    thrifty: bool = False
    first: set[str] | None = None  # the voters a phase goes to first ...
    first_of: list[str] | None = None  # ... computed for this list of connected voters
    started: float = 0.0  # when the current round started (the engine's clock)


@dataclass
class EngineCounters:
    """Round outcomes, for a node without `paxtor.paxos.counters.Counters`."""

    rounds: int = 0
    retries: int = 0
    nacks: int = 0
    conflicts: int = 0
    vetoed: int = 0
    chosen: int = 0
    no_quorum: int = 0


class ProposerEngine:
    """See the module docstring. One per node incarnation.

    ``proposer_class``: the `Proposer` class of a round (release rounds get
    ``proposer_class(True)``), so a negative control can swap it.
    ``max_request_bytes``: None skips the size check of proposed values.
    ``observe``: also emit `Started` and `Decided` (for the simulator's checkers).
    """

    def __init__(
        self,
        host: ProposerHost,
        *,
        name: str,
        identity: Any,
        incarnation: int,
        state: ProposerState,
        rng: random.Random,
        default_timeout: float,
        attempt_timeout: float,
        wait_interval: float,
        thrifty_after: float | None,
        max_request_time: float | None = None,
        max_request_bytes: int | None = None,
        local_vote: bool = False,
        first_op: int = 0,
        counters: Any = None,
        proposer_class: Any = None,
        observe: bool = False,
    ) -> None:
        self.host = host
        self.name = name
        self.identity = identity
        self.incarnation = incarnation
        self.state = state
        self.rng = rng
        self.default_timeout = default_timeout
        self.attempt_timeout = attempt_timeout
        self.wait_interval = wait_interval
        self.thrifty_after = thrifty_after
        self.max_request_time = float("inf") if max_request_time is None else max_request_time
        self.max_request_bytes = max_request_bytes
        self.local_vote = local_vote
        self.counters = EngineCounters() if counters is None else counters
        self.proposer_class = proposer_class
        self.observe = observe
        self.slots: dict[Slot, _KeySlot] = {}
        self._op = first_op  # op numbers never repeat within this node incarnation
        self._others: list[str] = host.connected_others()
        # the voters each key's phases go to first, for this list of connected voters and config
        self._first: dict[Slot, set[str] | None] = {}
        self._first_of: list[str] | None = None
        self._first_config: VoterConfig | None = None
        self._out: list[Any] = []

    # -- events ---------------------------------------------------------------------------

    def submit(self, request: ProposeRequest, token: Any, now: float) -> list[Any]:
        """A new request; ``token`` comes back in its `Finish`."""
        timeout = self.default_timeout if request.timeout is None else request.timeout
        if timeout > self.max_request_time:
            timeout = self.max_request_time  # a retry must never outlive its collected op mark
        change = ExactlyOnce(request.change, self.identity)
        pending = _Pending(request, token, now + timeout, change, attempt=request.attempt)
        slot_key = (request.bucket, request.key)
        slot = self.slots.get(slot_key)
        if slot is None:
            slot = self.slots[slot_key] = _KeySlot()
        if slot.active is None:
            slot.active = pending
            self._attempt(slot_key, slot, now)
        else:
            slot.queue.append(pending)
        return self._flush()

    def on_reply(self, voter: str, msg: Any, now: float) -> list[Any]:
        """A `Promise`, `Accepted` or `Nack` from ``voter``'s acceptor."""
        slot_key = (msg.bucket, msg.key)
        slot = self.slots.get(slot_key)
        if slot is not None and slot.round is not None:
            self._on_vote(slot_key, slot, voter, msg, now)
        elif msg.__class__ is Nack:
            # late: the round is over, chosen by the others. Its refusal still tells how far
            # to fast-forward, or the next round (a spread to bring this voter level) is
            # refused again
            self.state.refused(msg.bucket, msg.key, msg.promised)
        return self._flush()

    def on_timer(self, token: tuple[str, Slot, int], now: float) -> list[Any]:
        kind, slot_key, seq = token
        slot = self.slots.get(slot_key)
        if slot is None or slot.seq != seq:
            return self._flush()  # stale
        if kind == THRIFTY:
            slot.thrifty = False
            self._send_deferred(slot)
        else:
            slot.timer = False
            if kind == ATTEMPT:
                if slot.round is not None:
                    self._step(slot_key, slot, slot.round.on_timeout(), now)
            elif slot.active is not None and slot.round is None:  # RETRY, NOQUORUM_WAIT
                self._attempt(slot_key, slot, now)
        return self._flush()

    def view_changed(self, now: float, resume: bool = True) -> list[Any]:
        """The voters able to answer (or the configuration) changed; ``resume``: retry now
        the requests that wait for a quorum."""
        self._others = self.host.connected_others()
        if resume:
            for slot_key, slot in list(self.slots.items()):
                if slot.waiting and slot.active is not None and slot.round is None:
                    self._attempt(slot_key, slot, now)
        return self._flush()

    def _flush(self) -> list[Any]:
        out, self._out = self._out, []
        return out

    # -- attempts -------------------------------------------------------------------------

    def _attempt(self, slot_key: Slot, slot: _KeySlot, now: float) -> None:
        pending = slot.active
        assert pending is not None
        remaining = pending.deadline - now
        if remaining <= 0:
            self._fail_no_quorum(slot_key, slot, "no quorum of voters answered in time", now)
            return
        host = self.host
        term = host.lease_term(now)
        config = host.voter_config()
        if config is None or not host.has_quorum() or (pending.request.claims_local and term is None):
            # nothing is sent that cannot win: wait for quorum (view_changed) or the lease
            slot.waiting = True
            self._set_timer(slot_key, slot, min(remaining, self.wait_interval), NOQUORUM_WAIT)
            return
        slot.waiting = False
        counters = self.counters
        counters.rounds += 1
        if pending.attempt:
            counters.retries += 1
        self._op += 1
        mark = pending.change.begin(self._op, term)
        request = pending.request
        extra: dict[str, Any] = {}
        if self.proposer_class is not None:
            extra["proposer_class"] = self.proposer_class(request.ended is not None)
        round_ = self.state.new_round(
            request.bucket,
            request.key,
            pending.change,
            config,
            ended=request.ended,
            attempt=pending.attempt,
            backoff_draw=self.rng.random(),
            known_promised=host.promised(request.bucket, request.key),
            op=mark,
            spread=request.spread,
            **extra,
        )
        slot.round = round_
        slot.started = now
        if self.observe:
            self._out.append(Started(pending.token, round_))
        self._set_timer(slot_key, slot, min(remaining, self.attempt_timeout), ATTEMPT)
        self._step(slot_key, slot, round_.start(), now)

    def _set_timer(self, slot_key: Slot, slot: _KeySlot, delay: float, kind: str) -> None:
        slot.seq += 1
        slot.timer = True
        self._out.append(StartTimer(delay, (kind, slot_key, slot.seq)))

    def _cancel_timer(self, slot_key: Slot, slot: _KeySlot) -> None:
        if slot.timer:
            slot.timer = False
            self._out.append(CancelTimer(ATTEMPT, slot_key))

    def _cancel_thrifty(self, slot_key: Slot, slot: _KeySlot) -> None:
        if slot.thrifty:
            slot.thrifty = False
            self._out.append(CancelTimer(THRIFTY, slot_key))

    # -- messages of a round -----------------------------------------------------------------

    def _on_vote(self, slot_key: Slot, slot: _KeySlot, voter: str, msg: Any, now: float) -> None:
        round_ = slot.round
        assert round_ is not None
        cls = msg.__class__
        if cls is Nack and slot.deferred:
            self._send_deferred(slot)  # a refusal: the others' answers are needed now
        if cls is Accepted:
            step = round_.on_accepted(voter, msg)
        elif cls is Promise:
            step = round_.on_promise(voter, msg)
            if step.send or step.decision is not None:  # phase 1 has its quorum: time it
                self.state.phase_took(min(now - slot.started, self.attempt_timeout))
        elif cls is Nack:
            self.counters.nacks += 1
            self._learn_from(voter, msg)
            # voters that are down cannot answer: with them a remote nack may decide the round now
            # (not the local vote's, answered inside this very dispatch: a retry must not recurse)
            down = self.host.down_members() if voter != self.name else ()
            step = round_.on_nack(voter, msg, down=down)
        else:
            return
        if step.send or step.decision is not None:
            self._step(slot_key, slot, step, now)

    def _learn_from(self, voter: str, nack: Nack) -> None:
        """A refusal may tell of a learner, or of a newer voter configuration."""
        if voter == self.name:
            return
        if nack.reason == NACK_LEARNER:
            self._out.append(Learner(voter))
        config = self.host.voter_config()
        if config is not None and nack.config > config.version:
            self._out.append(AskConfig(voter))

    def _step(self, slot_key: Slot, slot: _KeySlot, step: Step, now: float) -> None:
        if step.send and not self._dispatch(slot_key, slot, step, now):
            return
        if step.decision is not None:
            self._decided(slot_key, slot, step.decision, now)

    def _dispatch(self, slot_key: Slot, slot: _KeySlot, step: Step, now: float) -> bool:
        """Emit a step's messages; False if the proposed value cannot be sent."""
        pending = slot.active
        assert pending is not None
        out = self._out
        last: Any = None
        first = None if pending.request.spread else self._first_voters(slot_key, slot)
        deferred: list[tuple[str, Any]] = []
        own_vote: Any = None
        for voter, msg in step.send:
            if msg is not last:
                last = msg
                if msg.__class__ is Accept:
                    if not pending.request.checked and self.max_request_bytes is not None:
                        try:
                            self._check_size(pending.request.key, msg.register)
                        except (TypeError, ValueError) as exc:
                            self._reject(slot_key, slot, exc, now)
                            return False
                    pending.maybe_applied = True
            if voter == self.name and self.local_vote:
                own_vote = msg
            elif first is None or voter in first:
                out.append(Send(voter, msg))
            else:
                deferred.append((voter, msg))
        slot.deferred = deferred  # a new phase: the last one's skipped voters are moot
        self._cancel_thrifty(slot_key, slot)
        if deferred and self.thrifty_after is not None:
            slot.thrifty = True
            out.append(StartTimer(self.thrifty_after, (THRIFTY, slot_key, slot.seq)))
        if own_vote is not None:
            out.append(Vote(own_vote))
        return True

    def _check_size(self, key: Hashable, register: Register) -> None:
        """ValueError if the key and the register a change made exceed ``max_request_bytes``
        (so every message of the round fits a frame); TypeError if they cannot be encoded."""
        limit = self.max_request_bytes
        assert limit is not None
        encode_within(register, limit, "the key and the register the change made", already=len(encode(key)))

    def _first_voters(self, slot_key: Slot, slot: _KeySlot) -> set[str] | None:
        """Thrifty phases: a quorum to ask first (this node, if it votes, plus connected
        voters picked by the key's hash, which spreads keys over the voters); None: ask all.

        The others get the message if an answer is a refusal or none comes within
        ``thrifty_after``: half the messages per round, and no waiting on the slowest.
        """
        if self.thrifty_after is None:
            return None
        if slot.first_of is self._others:  # replaced on every view change
            return slot.first
        config = self.host.voter_config()
        stale = self._first_of is not self._others or self._first_config is not config
        if stale or len(self._first) > FIRST_CACHE_SIZE:
            self._first, self._first_of, self._first_config = {}, self._others, config
        first = self._first.get(slot_key, _UNKNOWN)
        if first is _UNKNOWN:
            first = self._first[slot_key] = self._pick_first(slot_key)
        slot.first, slot.first_of = first, self._others
        return first

    def _pick_first(self, slot_key: Slot) -> set[str] | None:
        config = self.host.voter_config()
        if config is None:
            return None
        first = {self.name} if self.host.votes_here() else set()
        others = self._others
        if others:
            start = _spread(slot_key) % len(others)
            for voter in others[start:] + others[:start]:
                if config.is_quorum(first):
                    break
                first.add(voter)
        return first if config.is_quorum(first) else None

    def _send_deferred(self, slot: _KeySlot) -> None:
        deferred, slot.deferred = slot.deferred, []
        slot.thrifty = False  # a late firing finds nothing deferred
        for voter, msg in deferred:
            self._out.append(Send(voter, msg))

    def _reject(self, slot_key: Slot, slot: _KeySlot, exc: BaseException, now: float) -> None:
        """The round's value cannot travel: fail the request, send nothing."""
        slot.round = None
        slot.deferred = []
        self._cancel_timer(slot_key, slot)
        error = type(exc)(f"the value cannot be sent to other nodes: {exc}")  # TypeError or ValueError
        self._finish(slot_key, slot, None, error, now)

    # -- decisions ---------------------------------------------------------------------------

    def _decided(self, slot_key: Slot, slot: _KeySlot, decision: Decision, now: float) -> None:
        round_ = slot.round
        assert round_ is not None
        slot.round = None
        slot.deferred = []
        self._cancel_thrifty(slot_key, slot)
        self._cancel_timer(slot_key, slot)
        self.state.on_decision(round_, decision)
        pending = slot.active
        assert pending is not None
        if self.observe:
            self._out.append(Decided(pending.token, round_, decision))
        outcome = decision.outcome
        counters = self.counters
        if outcome == CONFLICT:
            counters.conflicts += 1
            self.state.observe(self._skip_ahead(decision.highest_seen, pending.attempt))
        elif outcome == VETOED:
            counters.vetoed += 1
        if outcome == CHOSEN:
            counters.chosen += 1
            register = decision.register
            assert register is not None
            adopted = pending.change.adopted
            if adopted is None:
                term = pending.change.term
                self._chosen(pending, register, pending.change.base, term, now)
                self._finish(slot_key, slot, register, None, now, term)
            else:  # an earlier attempt's change is in: its lease duties and its result
                self._chosen(pending, register, adopted.base, adopted.term, now)
                self._finish(slot_key, slot, adopted.result, None, now, adopted.term)
            return
        if outcome == REJECTED:
            error = pending.change.error
            if error is None:
                error = ChangeRejected(decision.error or "the change function was rejected")
            pending.maybe_applied = False
            self._finish(slot_key, slot, None, error, now)
            return
        if decision.maybe_applied:
            pending.maybe_applied = True
        if outcome == VETOED or outcome == CONFLICT:
            # a fence of this node's own is vouched for whatever else refused the round: with
            # rivals on the key, a ballot refusal among the vetoes makes it a CONFLICT, and
            # the key stayed fenced for as long as they kept trying
            self._vouch(pending, decision)
        if outcome != CONFLICT and slot.queue and not pending.maybe_applied and now < pending.deadline:
            # a veto, or a prepare some voters do not answer (they veto it or are cut off),
            # can last as long as a partition: the others on the key go first. A conflict
            # backs off instead (yielding would only feed the duel), and a maybe-applied
            # request retries first (its op mark).
            self._yield_slot(slot_key, slot, now)
            return
        delay = decision.retry_after
        if outcome == NEW_CONFIG:
            config = self.host.voter_config()
            if config is None or config.version < decision.config_version:
                delay = None  # not here yet (the membership server asked for it): back off
        if delay is None:  # NO_QUORUM: an attempt got too few answers; back off a little
            delay = self.state.retry_backoff.delay(pending.attempt, self.rng.random())
        pending.attempt += 1
        if now + delay >= pending.deadline:
            why = {CONFLICT: "competing proposals", VETOED: "lease veto", NO_QUORUM: "no quorum",
                   NEW_CONFIG: "the voter configuration changed"}
            self._fail_no_quorum(slot_key, slot, f"gave up at the deadline ({why.get(outcome, outcome)})", now)
            return
        self._set_timer(slot_key, slot, delay, RETRY)

    def _yield_slot(self, slot_key: Slot, slot: _KeySlot, now: float) -> None:
        """An attempt failed: the requests queued on the key go first, this one retries
        after them (a vetoed release can fail until its deadline; it must not stall the key)."""
        pending = slot.active
        assert pending is not None
        pending.attempt += 1
        slot.queue.append(pending)
        slot.active = slot.queue.popleft()
        slot.waiting = False
        self._attempt(slot_key, slot, now)

    def _skip_ahead(self, seen: Ballot, attempt: int) -> Ballot:
        """The ballot to fast-forward past after losing to ``seen``.

        A request that lost more often jumps further (it outranks those that
        lost less: ageing), and a random offset breaks ties between nodes that
        lost equally often (else the larger node name would always win).
        """
        block = seen.counter // BALLOT_SKIP + 1 + attempt
        return Ballot(block * BALLOT_SKIP + self.rng.randrange(BALLOT_SKIP // 2), seen.node)

    def _chosen(
        self, pending: _Pending, register: Register, base: Register | None, term: int | None, now: float
    ) -> None:
        """Lease and binding duties once ``register`` is chosen, by a change made on ``base``
        in lease term ``term``."""
        request = pending.request
        host = self.host
        slot_key = (request.bucket, request.key)
        binding = register.binding
        changed_tenure = base is not None and register.filled and (
            base.is_empty or base.epoch != register.epoch or base.binding != binding
        )
        owner = binding.pid if binding is not None else None
        if changed_tenure and owner is not None and host.is_local(owner):
            # the keeper re-checks the term when it records the hold; a lapse kills the owner
            still = term if term is not None and host.lease_term(now) == term else None
            self._out.append(HoldOrKill(owner, request.bucket, request.key, register.epoch, still))
        elif host.holds_key(slot_key):
            self._out.append(TenureNow(request.bucket, request.key, register.epoch,
                                       owner if register.filled else None))
        if changed_tenure and binding is not None and binding.owner_node == self.name:
            self._out.append(WatchTenure(request.bucket, request.key, register))

    def _vouch(self, pending: _Pending, decision: Decision) -> None:
        """A VETOED (or CONFLICT) round's value carries fences; vouch for those naming this
        node's dead or ungranted pids."""
        proposed = decision.proposed
        if proposed is None:
            return
        request = pending.request
        host = self.host
        for fence in proposed.lease_fences:
            pid = fence.binding.pid
            if pid is None or pid.node != self.name:
                continue
            if pid.incarnation == self.incarnation:
                if host.holds_tenure(pid, request.bucket, request.key, fence.epoch):
                    continue  # a live, granted owner: the veto is right
                if host.is_alive(pid):
                    self._out.append(Kill(pid, LEASE_EXPIRED))  # handed the key while this node was cut off
                    reason: Any = LEASE_EXPIRED
                else:
                    reason = "noproc"
            elif pid.incarnation < self.incarnation:
                reason = "noproc"  # an earlier life of this node: certainly dead
            else:
                continue
            self._out.append(VouchRelease(request.bucket, request.key, fence, reason))

    # -- finishing ---------------------------------------------------------------------------

    def _fail_no_quorum(self, slot_key: Slot, slot: _KeySlot, why: str, now: float) -> None:
        pending = slot.active
        assert pending is not None
        self.counters.no_quorum += 1
        request = pending.request
        config = self.host.voter_config()
        voters = config.describe() if config is not None else "not known yet"
        able = self.host.able()
        error = NoQuorum(
            f"{why}: bucket {request.bucket!r} key {request.key!r} "
            f"(voters {voters}; able to answer {', '.join(sorted(able)) or 'none'})",
            maybe_applied=pending.maybe_applied,
        )
        self._finish(slot_key, slot, None, error, now)

    def _finish(
        self,
        slot_key: Slot,
        slot: _KeySlot,
        register: Register | None,
        error: BaseException | None,
        now: float,
        term: int | None = None,
    ) -> None:
        pending = slot.active
        assert pending is not None
        # this request's change made the chosen value (in this attempt, or in an
        # earlier one whose accepts a later round adopted)
        applied = register is not None and pending.change.applied
        outcome: Outcome[Register, BaseException] = Ok(register) if error is None else Err(error)  # type: ignore[arg-type]
        self._out.append(Finish(pending.token, pending.request, outcome, applied, term))
        slot.active = None
        slot.waiting = False
        self._cancel_timer(slot_key, slot)
        if slot.queue:
            slot.active = slot.queue.popleft()
            self._attempt(slot_key, slot, now)
        else:
            del self.slots[slot_key]


def _spread(slot_key: Slot) -> int:
    """Where a key's thrifty quorum starts among the voters: the same in every process
    (``hash`` of a string is not), so a simulated run replays under any PYTHONHASHSEED."""
    return zlib.crc32(repr(slot_key).encode())
