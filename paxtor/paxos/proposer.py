"""One Paxos round as a pure state machine, and the per-node `ProposerState`.

Contract for the driver (the proposer process):

1. ``round = state.new_round(bucket, key, change, config, ...)`` (``config``: the
   node's `VoterConfig`, whose quorums the round counts);
   ``step = round.start()``; send each ``(voter, msg)`` of ``step.send``.
   A release round passes ``ended=EndedBinding(epoch, binding, reason)``
   (with ``change=release_if_bound(ended, policy)``). A voter passes
   ``known_promised=`` its own acceptor's promise for the key, so that a
   stale 1-RTT cache is not tried. For a claim, note the lease term
   (``LeaseClock.term_at``) when the round starts: grant the ownership only
   if the chosen register binds the pid and the term is unchanged at decision.
2. Feed replies: ``on_promise/on_accepted/on_nack(voter, msg)``, where
   ``voter`` is the sending node's name; and ``on_timeout()`` when the round's
   deadline passes. Each returns a `Step`: messages to send, and at most once
   a `Decision`. Replies may be duplicated, late, reordered or for another
   ballot: the round counts each voter once, and only replies for its own
   ballot.
3. Hand the decision back with ``state.on_decision(round, decision)`` (ballot
   fast-forward and the 1-RTT cache), then act on it:

   - ``CHOSEN``: ``decision.register`` is the key's new state (use
     ``.visible()`` for clients).
   - ``CONFLICT`` (a higher ballot was promised) or ``VETOED`` (acceptors
     refused a release while the owner's lease may hold): retry with a new
     round after ``decision.retry_after`` seconds. The backoff is
     ``Backoff.delay(attempt, draw)``; the driver supplies the random
     ``draw`` in [0, 1) and the ``attempt`` number, so nothing here is hidden.
     From the second attempt on it waits a round's time at least, once
     ``state.phase_took`` was told how long phase 1 takes (a loser lets the
     winner finish).
     On VETOED, and on a CONFLICT after phase 2 started (a ballot refusal
     among the vetoes makes it one), look at ``decision.proposed.lease_fences``:
     a fence whose binding is a pid of THIS node incarnation that is not a live, granted
     owner here (a waiter handed the key while this node was cut off, or a
     pid already dead) must be released by this node with a real reason
     (kill the waiter first, e.g. ``"lease_expired"``). Only the owner's
     node can vouch for that, and until it does, every round on the key
     carries the fence and is vetoed by acceptors that still hear the node.
   - ``NO_QUORUM``: no quorum answered before the timeout (``NoQuorum``), or too
     many voters refused as learners (they do not vote yet) for a quorum to remain.
   - ``NEW_CONFIG``: a voter refused the round's configuration as older than its
     own (``decision.config_version``): install that configuration, then retry.
   - ``REJECTED``: the change function raised or broke the register rules
     (``decision.error``); nothing was sent.

   ``decision.maybe_applied`` is True when a failed round had already sent
   accepts: its value may still be chosen later (a later round may adopt it),
   so retrying a non-idempotent change may apply it twice.

Quorum is counted against the CONFIGURED voters (`VoterConfig.is_quorum`: a
majority, or a majority of each set during a change), never the connected ones.
The round applies ``change`` to the register accepted with the highest ballot
among a quorum of promises; if a quorum reports that same ballot, the value
is known chosen and a read (change returns it unchanged) skips phase 2.
The core keeps ``Register.lease_fences`` itself: it adds a fence when ``ended``
is a noconnection release that ends the base's tenure, drops the base's fences
once the base is known chosen, and drops the fence of a tenure that ``ended``
says really ended (a reason other than noconnection). It also keeps
``Register.op_marks``: a round given ``op`` stamps it on a register its change
modified, so a retry can tell that an earlier attempt's value was adopted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from paxtor.paxos.acceptor import (
    NACK_BALLOT,
    NACK_LEASE_VETO,
    Accept,
    Accepted,
    Nack,
    Prepare,
    Promise,
)
from paxtor.paxos.ballot import Ballot, NodeId
from paxtor.paxos.register import (
    ChangeFunction,
    ChangeRejected,
    EndedBinding,
    LeaseFence,
    OpMark,
    Register,
    check_transition,
    marks_with,
    tenure_ended,
)
from paxtor.paxos.voter_config import VoterConfig, majority

__all__ = [
    "AppliedChange",
    "ExactlyOnce",
    "CHOSEN",
    "CONFLICT",
    "NEW_CONFIG",
    "NO_QUORUM",
    "REJECTED",
    "VETOED",
    "Backoff",
    "Decision",
    "Proposer",
    "ProposerState",
    "Step",
    "majority",
]

CHOSEN = "chosen"
CONFLICT = "conflict"
VETOED = "vetoed"
NO_QUORUM = "no_quorum"
REJECTED = "rejected"
NEW_CONFIG = "new_config"

Message = Prepare | Accept

#: `ProposerState.round_time` is the median of this many recent phase 1 timings ...
PHASE_SAMPLES = 9
#: ... once there are this many
PHASE_WARM = 3


@dataclass(frozen=True, slots=True)
class Backoff:
    """Randomized exponential backoff ("full jitter"): the draw is an input, not hidden.

    The cap is a tenth of a second, not a second: a round takes about a
    millisecond, and a loser that kept doubling up to 1 s lost the key to
    nodes whose new requests started again at attempt 0 (it timed out).

    A retry after the first waits ``floor`` more: `ProposerState` sets it to
    the time a round takes on this node (`ProposerState.phase_took`).
    A conflict means that the round which refused this one is under way, and
    the retry goes out at a ballot skipped above it: sent before that round
    could finish, it preempts it. A first loss may be a mere collision, and
    an immediate retry is cheapest then; a request that lost again is in a
    duel, and without the floor the contenders only took turns preempting
    each other whenever rounds were slower than the window: five nodes on a
    key whose quorum needed every voter (a joint configuration with a learner
    in both halves; rounds of 50-100 ms, cap 0.2 s) got no round through for
    eleven seconds in the simulator.
    """

    base: float = 0.01
    cap: float = 0.1
    veto: float = 0.5  # after a lease veto: the owner's lease will not lapse much sooner
    floor: float = 0.0  # a retry after the first waits at least this long: a round's time

    def delay(self, attempt: int, draw: float) -> float:
        if not 0.0 <= draw <= 1.0:
            raise ValueError(f"draw must be in [0, 1], got {draw!r}")
        window = draw * min(self.cap, self.base * (2.0 ** min(attempt, 62)))
        return window + self.floor if attempt else window

    def veto_delay(self, draw: float) -> float:
        """The wait after a VETOED round: half to all of ``veto``."""
        if not 0.0 <= draw <= 1.0:
            raise ValueError(f"draw must be in [0, 1], got {draw!r}")
        return self.veto * (0.5 + 0.5 * draw)


@dataclass(frozen=True, slots=True)
class Decision:
    """How a round ended."""

    outcome: str
    ballot: Ballot
    register: Register | None = None  # CHOSEN: the key's new state
    highest_seen: Ballot = Ballot.ZERO  # the highest ballot any acceptor reported
    maybe_applied: bool = False  # failed after sending accepts: may still be chosen
    retry_after: float | None = None  # CONFLICT / VETOED: wait this long, then retry
    error: str | None = None  # REJECTED: what the change function did wrong
    next_ballot: Ballot | None = None  # CHOSEN: a quorum promised it (1-RTT next time)
    proposed: Register | None = None  # what phase 2 sent, if it started (see VETOED)
    config_version: int = 0  # NEW_CONFIG: the newer configuration a voter has

    @property
    def ok(self) -> bool:
        return self.outcome == CHOSEN


@dataclass(frozen=True, slots=True)
class Step:
    """What a round wants done after an event."""

    send: tuple[tuple[str, Message], ...] = ()
    decision: Decision | None = None


_PREPARE, _ACCEPT, _DONE = "prepare", "accept", "done"


class Proposer:
    """One round on one key with one ballot (pure; see the module docstring)."""

    def __init__(
        self,
        bucket: str,
        key: Hashable,
        change: ChangeFunction,
        ballot: Ballot,
        config: VoterConfig,
        *,
        ended: EndedBinding | None = None,
        cached: Register | None = None,
        next_ballot: Ballot | None = None,
        attempt: int = 0,
        backoff_draw: float = 0.0,
        backoff: Backoff = Backoff(),
        op: OpMark | None = None,
        spread: bool = False,
    ) -> None:
        self.config = config
        self.voters: tuple[str, ...] = config.members
        if next_ballot is not None and next_ballot <= ballot:
            raise ValueError("next_ballot must be above ballot")
        self.bucket = bucket
        self.key = key
        self.change = change
        self.ballot = ballot
        self.ended = ended
        self.cached = cached
        self.next_ballot = next_ballot
        self.attempt = attempt
        self.backoff_draw = backoff_draw
        self.backoff = backoff
        self.op = op
        self.spread = spread  # never skip phase 2: a round that carries the value to every voter
        self.phase = _PREPARE
        self.proposed: Register | None = None
        self.decision: Decision | None = None
        self._promises: dict[str, Promise] = {}
        self._accepted: dict[str, bool] = {}  # voter -> promised_next
        self._nacks: dict[str, Nack] = {}
        self._highest = ballot

    # -- events ---------------------------------------------------------------

    def start(self) -> Step:
        """Phase 1 to every voter, or straight to phase 2 with a cached 1-RTT promise."""
        if self.cached is not None:
            # chosen once, but maybe not the latest: phase 2 must still win a quorum
            return self._propose(self.cached, base_chosen=True, may_skip=False)
        msg = Prepare(self.bucket, self.key, self.ballot, self._release_fence(), self.config.version)
        return Step(tuple((v, msg) for v in self.voters))

    def on_promise(self, voter: str, msg: Promise) -> Step:
        if self.phase != _PREPARE or not self._counts(voter, msg) or voter in self._promises:
            return Step()
        self._promises[voter] = msg
        self._nacks.pop(voter, None)
        if not self.config.is_quorum(self._promises):
            return Step()
        base, base_chosen = self._base()
        return self._propose(base, base_chosen)

    def on_accepted(self, voter: str, msg: Accepted) -> Step:
        if self.phase != _ACCEPT or not self._for_me(voter, msg) or voter in self._accepted:
            return Step()
        self._accepted[voter] = msg.promised_next
        self._nacks.pop(voter, None)
        if not self.config.is_quorum(self._accepted):
            return Step()
        promised_next = self.config.is_quorum([v for v, promised in self._accepted.items() if promised])
        return self._decide(
            CHOSEN,
            register=self.proposed,
            next_ballot=self.next_ballot if promised_next else None,
        )

    def on_nack(self, voter: str, msg: Nack, down: Iterable[str] = ()) -> Step:
        """A refusal. `down`: voters the driver knows cannot answer now; counted with the nacks,
        so a round that can no longer reach a quorum ends now, not at the attempt timeout."""
        if self.phase == _DONE or not self._for_me(voter, msg):
            return Step()
        yes = self._promises if self.phase == _PREPARE else self._accepted
        if voter in yes:
            return Step()  # a late duplicate after this voter already said yes
        if msg.config > self.config.version:  # this round's quorums are over: learn the new ones
            return self._decide(NEW_CONFIG, retry_after=0.0, config_version=msg.config)
        self._nacks[voter] = msg
        if msg.promised > self._highest:
            self._highest = msg.promised
        silent = {v for v in down if v in self.voters and v not in yes}
        if self.config.is_quorum([v for v in self.voters if v not in self._nacks and v not in silent]):
            return Step()
        reasons = {n.reason for n in self._nacks.values()}
        if NACK_BALLOT in reasons:
            retry = self.backoff.delay(self.attempt, self.backoff_draw)
            return self._decide(CONFLICT, retry_after=retry)
        if NACK_LEASE_VETO in reasons:
            return self._decide(VETOED, retry_after=self.backoff.veto_delay(self.backoff_draw))
        return self._decide(NO_QUORUM)  # learners (and voters down) leave no quorum to answer

    def on_timeout(self) -> Step:
        """The driver's deadline for this round passed."""
        if self.phase == _DONE:
            return Step()
        return self._decide(NO_QUORUM)

    # -- internals --------------------------------------------------------------

    def _for_me(self, voter: str, msg: Accepted | Nack | Promise) -> bool:
        return voter in self.voters and msg.ballot == self.ballot

    def _counts(self, voter: str, msg: Promise) -> bool:
        """Whether a promise counts toward this round's quorum (only for its own ballot)."""
        return self._for_me(voter, msg)

    def _base(self) -> tuple[Register, bool]:
        """The register accepted with the highest ballot, and whether a quorum reported it."""
        best: Promise | None = None
        for p in self._promises.values():
            if best is None or (p.accepted_ballot, p.accepted.epoch) > (
                best.accepted_ballot,
                best.accepted.epoch,
            ):
                best = p
        assert best is not None
        top = best.accepted_ballot
        same = [v for v, p in self._promises.items() if p.accepted_ballot == top]
        return best.accepted, top != Ballot.ZERO and self.config.is_quorum(same)

    def _propose(self, base: Register, base_chosen: bool, may_skip: bool = True) -> Step:
        try:
            new = self.change(base)
            check_transition(base, new, self.ended)
        except ChangeRejected as exc:
            return self._decide(REJECTED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a change function is user code: report, don't crash
            return self._decide(REJECTED, error=f"change function raised {exc!r}")
        new = self._with_marks(base, self._with_fences(base, new, base_chosen))
        if may_skip and base_chosen and new == base and not self.spread and not _may_linger(self.change):
            return self._decide(CHOSEN, register=base)  # a read of a value a quorum holds
        self.proposed = new
        self.phase = _ACCEPT
        self._nacks.clear()
        msg = Accept(self.bucket, self.key, self.ballot, new, self.next_ballot, self.config.version)
        return Step(tuple((v, msg) for v in self.voters))

    def _release_fence(self) -> LeaseFence | None:
        """The tenure a noconnection release would fence: acceptors that still hear its
        owner's node refuse the prepare, so no minority accepts a release doomed to a veto."""
        ended = self.ended
        if ended is None or not ended.is_noconnection or ended.binding.owner_node is None:
            return None
        return LeaseFence(ended.epoch, ended.binding)

    def _with_fences(self, base: Register, new: Register, base_chosen: bool) -> Register:
        fences = () if base_chosen else base.lease_fences
        ended = self.ended
        if ended is not None and ended.is_noconnection:
            owned = ended.binding.owner_node is not None
            if owned and tenure_ended(base, new) and base.binding is not None:
                fences = (*fences, LeaseFence(base.epoch, base.binding))
        elif ended is not None:
            fences = tuple(f for f in fences if not f.matches(ended))
        return new.with_bookkeeping(fences, new.op_marks)

    def _with_marks(self, base: Register, new: Register) -> Register:
        """Carry the base's op marks; a change that changed something adds this round's."""
        if self.op is not None and not new.same_visible(base):
            return new.with_bookkeeping(new.lease_fences, marks_with(base.op_marks, self.op))
        return new.with_bookkeeping(new.lease_fences, base.op_marks)

    def _decide(
        self,
        outcome: str,
        *,
        register: Register | None = None,
        retry_after: float | None = None,
        error: str | None = None,
        next_ballot: Ballot | None = None,
        config_version: int = 0,
    ) -> Step:
        self.phase = _DONE
        proposed = self.proposed
        decision = Decision(  # positional: a `**fields` call costs a dict per round
            outcome,
            self.ballot,
            register,
            self._highest,
            proposed is not None and outcome != CHOSEN,
            retry_after,
            error,
            next_ballot,
            proposed,
            config_version,
        )
        self.decision = decision
        return Step(decision=decision)


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """What one attempt's change did: its input and output, and the lease term it started in."""

    base: Register
    result: Register
    term: int | None


class ExactlyOnce:
    """A request's change, applied at most once across its attempts (see `Register.op_marks`).

    A driver retries a request with new rounds. An attempt whose accepts went
    out may lose and still have its value adopted by a later round, even one
    of another node that builds on it; applying the change again would count
    it twice. Call `begin` before each attempt and give the round ``op=``
    `mark` and ``change=`` this object. If the register a round starts from
    carries the mark of an earlier attempt, that attempt's change is in:
    the round writes the register back unchanged, and `adopted` says what
    that attempt saw and produced (report ``adopted.result``, grant in
    ``adopted.term``). A node must serve one request per key at a time, or
    a later request's mark hides an earlier one's.
    """

    __slots__ = ("change", "proposer", "op", "term", "base", "result", "error", "changes", "adopted")

    def __init__(self, change: ChangeFunction, proposer: NodeId) -> None:
        self.change = change
        self.proposer = proposer  # (node name, incarnation): whose marks are ours
        self.op = 0
        self.term: int | None = None
        self.base: Register | None = None  # what the change last saw ...
        self.result: Register | None = None  # ... and what it returned
        self.error: BaseException | None = None  # what the change raised
        self.changes: dict[int, AppliedChange] = {}  # op -> an attempt whose change changed something
        self.adopted: AppliedChange | None = None

    def begin(self, op: int, term: int | None) -> OpMark:
        """A new attempt, numbered ``op`` (unique for this node incarnation); its op mark."""
        self.op, self.term = op, term
        return (self.proposer[0], self.proposer[1], op)

    @property
    def applied(self) -> bool:
        """The chosen value holds this request's change (this attempt's or an adopted one)."""
        return self.adopted is not None or self.op in self.changes

    def __call__(self, register: Register) -> Register:
        mark = register.op_mark(self.proposer[0])
        if mark is not None and mark[1] == self.proposer[1] and mark[2] in self.changes:
            self.adopted = self.changes[mark[2]]
            self.base, self.result, self.error = register, register, None
            return register
        self.adopted = None
        try:
            new = self.change(register)
        except Exception as exc:
            self.error = exc
            raise
        self.base, self.result, self.error = register, new, None
        if isinstance(new, Register) and not new.same_visible(register):
            self.changes[self.op] = AppliedChange(register, new.visible(), self.term)
        return new


def _may_linger(change: ChangeFunction) -> bool:
    """An earlier attempt of this request changed the register: its accepts may linger on a
    minority at a higher ballot than the quorum's value, and a later round would adopt them.
    A read that leaves the register as it is must then still write it at its own ballot
    (which buries them), or the request could answer "unchanged" and take effect afterwards
    (see ``docs/protocol.md``, Exactly once)."""
    return change.__class__ is ExactlyOnce and any(op != change.op for op in change.changes)


class ProposerState:
    """Per-node proposer memory: the ballot counter and the 1-RTT cache per key.

    Volatile: a restarted node starts afresh with a new incarnation in its
    identity, so its ballots cannot collide with those of its earlier life.
    """

    def __init__(
        self,
        identity: NodeId,
        *,
        one_rtt: bool = True,
        max_cached: int = 4096,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.identity = identity
        self.one_rtt = one_rtt
        self.max_cached = max_cached
        self.backoff = backoff
        #: the rounds' backoff: ``backoff`` with a round's time as its floor (`phase_took`)
        self.retry_backoff = backoff
        self._phases: deque[float] = deque(maxlen=PHASE_SAMPLES)  # recent times to a quorum of promises
        self._counter = 0
        # per key: the ballot a quorum promised, the register chosen, and the version of the
        # voter configuration whose quorum made the promise
        self._cache: OrderedDict[tuple[str, Hashable], tuple[Ballot, Register, int]] = OrderedDict()

    @property
    def round_time(self) -> float:
        """How long a round (two phases) takes here: twice the median of the last
        `PHASE_SAMPLES` phase 1 timings (0.0 until `PHASE_WARM` were timed)."""
        phases = self._phases
        if len(phases) < PHASE_WARM:
            return 0.0
        return 2.0 * sorted(phases)[len(phases) // 2]

    def phase_took(self, took: float) -> None:
        """A round's phase 1 got a quorum of promises ``took`` seconds after it started.

        `round_time` becomes the floor of the retries' backoff: a request that lost
        again waits until the round that beat it can be done (see `Backoff`). A
        median, so that a phase stretched by a pause of this node does not set it."""
        if took < 0.0:
            return
        self._phases.append(took)
        floor = max(self.backoff.floor, self.round_time)
        if floor != self.retry_backoff.floor:
            b = self.backoff
            self.retry_backoff = Backoff(b.base, b.cap, b.veto, floor)

    def fresh_ballot(self) -> Ballot:
        """A ballot above every ballot issued or observed by this node."""
        self._counter += 1
        return Ballot(self._counter, self.identity)

    def observe(self, ballot: Ballot) -> None:
        """Fast-forward past a ballot heard of (so the next round can win)."""
        if ballot.counter > self._counter:
            self._counter = ballot.counter

    def refused(self, bucket: str, key: Hashable, promised: Ballot) -> None:
        """A voter promised ``promised`` on the key (a refusal after its round was chosen):
        the next round goes above it, and not by a cached 1-RTT ballot below it."""
        self.observe(promised)
        entry = self._cache.get((bucket, key))
        if entry is not None and entry[0] < promised:
            del self._cache[(bucket, key)]

    def cached(self, bucket: str, key: Hashable) -> Register | None:
        entry = self._cache.get((bucket, key))
        return entry[1] if entry is not None else None

    def new_round(
        self,
        bucket: str,
        key: Hashable,
        change: ChangeFunction,
        config: VoterConfig,
        *,
        ended: EndedBinding | None = None,
        attempt: int = 0,
        backoff_draw: float = 0.0,
        known_promised: Ballot | None = None,
        op: OpMark | None = None,
        proposer_class: type[Proposer] = Proposer,
        spread: bool = False,
    ) -> Proposer:
        """A round for ``key``: 1-RTT if this node wrote it last and nobody interfered since.

        ``known_promised``: the highest ballot this node knows to be promised
        for the key (a voter passes its own acceptor's promise); a cached
        1-RTT ballot below it is stale, so the round starts with phase 1
        instead of an accept that would be refused. A promise made by a quorum
        of another voter configuration than ``config`` is not used either: new
        voters never made it, and would take a stale accept the old ones refuse
        (see ``docs/protocol.md``, Voter changes).
        """
        entry = self._cache.pop((bucket, key), None)
        if entry is not None and known_promised is not None and entry[0] < known_promised:
            entry = None
        if entry is not None and entry[2] != config.version:
            entry = None
        if ended is not None and ended.is_noconnection:
            entry = None  # a noconnection release asks first (see `Prepare.lease_fence`)
        if entry is not None:
            ballot, cached, _ = entry
        else:
            ballot, cached = self.fresh_ballot(), None
        next_ballot = self.fresh_ballot() if self.one_rtt else None
        return proposer_class(
            bucket,
            key,
            change,
            ballot,
            config,
            ended=ended,
            cached=cached,
            next_ballot=next_ballot,
            attempt=attempt,
            backoff_draw=backoff_draw,
            backoff=self.retry_backoff,
            op=op,
            spread=spread,
        )

    def on_decision(self, round_: Proposer, decision: Decision) -> None:
        """Learn from a finished round: ballots seen, and the 1-RTT promise if granted."""
        self.observe(decision.highest_seen)
        slot = (round_.bucket, round_.key)
        if decision.ok and decision.next_ballot is not None and decision.register is not None:
            self._cache[slot] = (decision.next_ballot, decision.register, round_.config.version)
            self._cache.move_to_end(slot)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        else:
            self._cache.pop(slot, None)
