"""Pure lease arithmetic: the owner-side `LeaseClock` and the acceptor-side `SilenceTracker`.

No clock is read here: every method takes ``now``, a reading of the calling
node's monotonic clock (seconds). Nothing is persisted: both objects are
rebuilt empty when a node restarts, and that is safe (see below).

Owner side. A node sends a heartbeat round to every voter and remembers when
it sent it (``t_sent``). Its lease is valid until ``t_sent + lease`` of the
newest round that a quorum of voters acked. A lease that runs out, or an ack
that reveals a *fence* (below), yields `LeaseLost`: the driver must then kill
every local process that owns a key (reason ``"lease_expired"``) and grant no
new ownership until `LeaseGained`. Each continuous stretch of validity is a
``term``: a driver grants ownership from a round started in term T only if the
lease is still valid in term T when the round decides (`LeaseClock.term_at`);
otherwise a release chosen while the lease had lapsed could go unnoticed.

Acceptor side. `SilenceTracker` remembers when this acceptor last heard
anything from each node, and the newest incarnation it has seen of it. The
lease veto: a register carrying a `LeaseFence` for node N incarnation i (a
release of a tenure owned on N for "noconnection") is accepted only if a newer
incarnation of N has been seen (N_i is dead), or nothing was heard from N for
``silence_threshold(lease, max_drift, margin) = lease * (1 + max_drift)**2 +
margin``. Each such accept bumps the tracker's *fence generation* for N, which
every heartbeat ack to N carries; N treats an ack with a generation above the
one it last saw from that voter incarnation as "lease lost" and does not count
it.

Why no owner can be live while its release for "noconnection" is chosen.
Assume every clock runs at a rate within [1/(1+d), 1+d] of real time. Let P
be an owner on node N_i, live (granted, not killed) at real time t. N_i
granted P from a round started at t0 in lease term T and still in T when it
decided, and a lapse of T kills P, so N_i's lease held throughout [t0, t].
Suppose a value ending P's tenure for noconnection was chosen at r <= t (it
must be chosen after t0: the round from t0 saw the tenure in place). It
carries P's `LeaseFence`: the core drops a fence only once its release is
known chosen, or when N_i itself vouches (a real reason), so the first chosen
value without P's tenure has it. A quorum Q_r accepted that value, each A at
r_A <= r, each applying the veto. N_i's lease at r rests on a heartbeat round
sent at s_h whose acks from a quorum Q_h reached N_i before r; it lasts at
most L(1+d) of real time after s_h (N_i's clock may be slow). Take A in
Q_h and Q_r; A acked at a_h >= s_h.
  (1) a_h <= r_A: A heard N at a_h, then waited W = L(1+d)^2 + m on its own
      (possibly fast) clock, i.e. more than L(1+d) of real time, so the
      lease from that round ran out before r_A <= r. Contradiction.
  (2) a_h > r_A: A's fence generation for N grew at r_A (> t0, A accepted a
      value proposed after t0), so the first ack A sent after r_A that N_i
      processed, no later than this one (before r), ended term T inside
      [t0, t]. Contradiction.
  If A accepted because it had seen a newer incarnation of N, N_i had
  restarted and P was dead. A restarted acceptor treats every node as heard
  at its start, so losing the tracker only delays releases; its fence
  generations restart at 0 and owners key them by the voter's incarnation.
With d = max_drift the bound needs (1+d)^2, not (1+d): two clocks within
[1/(1+d), 1+d] of real time drift up to (1+d)^2 apart. Clocks outside the
bound void the argument (the simulator shows it). Case (2) is why acks carry
the fence: without it a heartbeat still in flight during A's silence would
extend a lease that A's vote has already voided.
"""

from __future__ import annotations

from dataclasses import dataclass

from paxtor.actors.wire import wire_type
from paxtor.paxos.ballot import NodeId
from paxtor.paxos.voter_config import VoterConfig

__all__ = [
    "Heartbeat",
    "HeartbeatAck",
    "LEASE_EXPIRED",
    "LeaseClock",
    "LeaseEvent",
    "LeaseGained",
    "LeaseLost",
    "SilenceTracker",
    "silence_threshold",
]


#: the exit reason of an owner killed because its node's lease ran out (or never covered its grant)
LEASE_EXPIRED = "lease_expired"


def silence_threshold(lease: float, max_drift: float, margin: float) -> float:
    """How long an acceptor must hear nothing from a node before releasing its bindings."""
    if lease <= 0 or max_drift < 0 or margin < 0:
        raise ValueError("lease must be > 0, max_drift and margin >= 0")
    return lease * (1.0 + max_drift) ** 2 + margin


# -- wire messages -----------------------------------------------------------


@wire_type(name="paxos.Heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Sent by a node to every voter each heartbeat period."""

    seq: int
    config: int = 0  # the sender's voter configuration version


@wire_type(name="paxos.HeartbeatAck")
@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """A voter's answer: ``fence`` counts the noconnection releases it voted against the sender."""

    seq: int
    voter: NodeId
    fence: int
    config: int = 0  # the voter's installed configuration version


# -- owner side ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseGained:
    """The lease became valid (a new term starts)."""

    term: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """The lease ended: kill every local owner with reason "lease_expired"."""

    term: int
    reason: str  # "expired" | "fenced"


LeaseEvent = LeaseGained | LeaseLost


class LeaseClock:
    """One node's lease with the configured voters (pure; ``now`` is its monotonic clock).

    Acks count by the quorums of ``config``. An ack from a voter on a NEWER
    configuration does not count (its quorums are not this clock's):
    `config_behind` then names that version, and the driver installs the
    configuration (`set_config`) before the next heartbeat. The term and the
    expiry survive a change: see ``docs/protocol.md`` (Voter changes) for why a
    lease counted by the old quorums cannot outlive the change.
    """

    def __init__(self, config: VoterConfig | None, lease: float) -> None:
        if lease <= 0:
            raise ValueError("lease must be > 0")
        self.config = config
        self.config_behind: int | None = None  # a newer configuration version an ack revealed
        self.lease = lease
        self._seq = 0
        self._rounds: dict[int, tuple[float, list[str]]] = {}  # seq -> (t_sent, voters that acked)
        self._expires_at: float | None = None  # None: not valid
        self._term = 0
        # voter name -> (voter incarnation, highest fence generation seen from it)
        self._fences: dict[str, tuple[int, int]] = {}

    def term_at(self, now: float) -> int | None:
        """The current term if the lease is valid at ``now``, else None.

        A driver records it when a claim round starts and grants the claim
        only if `term_at` still returns the same term when the round decides.
        """
        return self._term if self.valid(now) else None

    @property
    def expires_at(self) -> float | None:
        """When the lease runs out on this node's clock, or None if it is not valid."""
        return self._expires_at

    def valid(self, now: float) -> bool:
        """Whether the lease holds at ``now`` (does not emit events; call `poll` for those)."""
        return self._expires_at is not None and now < self._expires_at

    @property
    def voters(self) -> tuple[str, ...]:
        """Who gets heartbeats: every member of the configuration (none before one is known)."""
        return self.config.members if self.config is not None else ()

    def set_config(self, config: VoterConfig) -> None:
        """Count acks by ``config``'s quorums from now on (a newer configuration)."""
        if self.config is not None and config.version <= self.config.version:
            return
        self.config = config
        if self.config_behind is not None and self.config_behind <= config.version:
            self.config_behind = None
        self._rounds.clear()  # acks gathered for the old quorums are not counted again

    def send_heartbeat(self, now: float) -> Heartbeat:
        """Start a heartbeat round at ``now``: send the returned message to every voter."""
        self._seq += 1
        self._rounds[self._seq] = (now, [])
        self._prune(now)
        return Heartbeat(self._seq, self.config.version if self.config is not None else 0)

    def poll(self, now: float) -> list[LeaseEvent]:
        """Report a lease that ran out by ``now``; the driver calls this at `expires_at`."""
        if self._expires_at is not None and now >= self._expires_at:
            return [self._lose("expired")]
        return []

    def on_ack(self, voter: str, ack: HeartbeatAck, now: float) -> list[LeaseEvent]:
        """Count one voter's ack; returns LeaseLost/LeaseGained events, in order."""
        events = self.poll(now)
        config = self.config
        if config is None or not config.is_member(voter) or ack.voter[0] != voter:
            return events
        if ack.config > config.version:
            if self.config_behind is None or ack.config > self.config_behind:
                self.config_behind = ack.config
            return events
        verdict = self._fence_check(voter, ack)
        if verdict == "stale":
            return events
        if verdict == "fenced":
            self._rounds.clear()  # acks of earlier rounds may predate the fence: start afresh
            if self._expires_at is not None:
                events.append(self._lose("fenced"))
            return events
        entry = self._rounds.get(ack.seq)
        if entry is None:
            return events
        t_sent, acked = entry
        if voter in acked:
            return events
        acked.append(voter)
        if not config.is_quorum(acked):
            return events
        until = t_sent + self.lease
        if until <= now:
            return events
        if self._expires_at is None:
            self._term += 1
            self._expires_at = until
            events.append(LeaseGained(self._term, until))
        elif until > self._expires_at:
            self._expires_at = until
        for seq in [s for s in self._rounds if s <= ack.seq]:
            del self._rounds[seq]  # older rounds can only give an earlier expiry
        return events

    def _fence_check(self, voter: str, ack: HeartbeatAck) -> str:
        """"ok", "stale" (from a voter incarnation that has since restarted) or "fenced"."""
        incarnation = ack.voter[1]
        known = self._fences.get(voter)
        if known is not None and incarnation < known[0]:
            return "stale"
        seen = known[1] if known is not None and known[0] == incarnation else 0
        if ack.fence > seen:
            self._fences[voter] = (incarnation, ack.fence)
            return "fenced"
        if known is None or known[0] != incarnation:
            self._fences[voter] = (incarnation, seen)
        return "ok"

    def _lose(self, reason: str) -> LeaseLost:
        self._expires_at = None
        return LeaseLost(self._term, reason)

    def _prune(self, now: float) -> None:
        stale = [s for s, (t_sent, _) in self._rounds.items() if t_sent + self.lease <= now]
        for seq in stale:
            del self._rounds[seq]


# -- acceptor side ---------------------------------------------------------------


class SilenceTracker:
    """When this acceptor last heard each node; decides the lease veto.

    A new tracker treats every node as heard at ``started_at``: an acceptor
    that restarted does not know what it heard before, so it must wait the
    full threshold before it may release anyone for noconnection.
    """

    def __init__(self, threshold: float, started_at: float) -> None:
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        self.threshold = threshold
        self.started_at = started_at
        self._last_heard: dict[str, float] = {}
        self._incarnation: dict[str, int] = {}
        self._fence: dict[str, int] = {}

    def heard(self, node: str, incarnation: int, now: float) -> None:
        """Anything arrived from ``node`` (any message, heartbeat or not)."""
        if now > self._last_heard.get(node, self.started_at):
            self._last_heard[node] = now
        if incarnation > self._incarnation.get(node, -1):
            self._incarnation[node] = incarnation

    def last_heard(self, node: str) -> float:
        """When ``node`` was last heard (the tracker's start if never)."""
        return self._last_heard.get(node, self.started_at)

    def newest_incarnation(self, node: str) -> int | None:
        return self._incarnation.get(node)

    def superseded(self, node: str, incarnation: int | None) -> bool:
        """True if a newer incarnation of ``node`` was seen: ``incarnation`` is dead."""
        newest = self._incarnation.get(node)
        return incarnation is not None and newest is not None and newest > incarnation

    def may_release_noconnection(self, node: str, incarnation: int | None, now: float) -> bool:
        """The veto: may a binding owned on ``node`` (``incarnation``) go for noconnection now?"""
        if self.superseded(node, incarnation):
            return True
        return now - self.last_heard(node) >= self.threshold

    def record_release(self, node: str) -> None:
        """This acceptor voted a noconnection release against ``node``: fence its lease."""
        self._fence[node] = self._fence.get(node, 0) + 1

    def fence_generation(self, node: str) -> int:
        """How many noconnection releases against ``node`` this acceptor has voted."""
        return self._fence.get(node, 0)
