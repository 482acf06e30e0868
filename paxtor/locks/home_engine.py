"""The lock home's batching policy as a pure engine: requests and round results in, effects out.

Per key, at most one round runs; the requests that arrive meanwhile wait and
go together in the next round (a batch: queue changes, and at most one
release, in arrival order). Requests to queue up behind a lock that is held
are not urgent (their callers will wait anyway), so a batch of only those
waits up to ``enqueue_delay`` for the owner's release and rides in its
round. After a batch whose release handed the lock on, the new owner is
woken unless its own request was in the batch (its reply says so).

`LockHomeEngine` decides; `paxtor.locks.home.LockHome` feeds it requests,
the proposer's answers and its timer, and carries out the effects
(`ProposeBatch`, `StartDelay`, `CancelDelay`, `Answer`, `Wake`). Results are
``("ok", register)``, ``("no_quorum", why)`` or ``("error", exception)``,
as the home's callers get them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paxtor.actors.ids import Pid
from paxtor.locks.messages import LockWake
from paxtor.locks.register import Op, batch_change, grant_of, ops_of_pid, owner_of
from paxtor.paxos.errors import NoQuorum
from paxtor.paxos.register import ChangeFunction, EndedBinding, Register

__all__ = ["Answer", "CancelDelay", "LockHomeEngine", "ProposeBatch", "StartDelay", "Wake", "wake_for_batch"]


@dataclass(frozen=True, slots=True)
class ProposeBatch:
    """Propose ``change`` on lock ``key`` (justified by ``ended``); answer `round_done(key, tag, ...)`.

    ``ops``: the operations the change applies, in order (``batch_change(ops)``)."""

    key: bytes
    tag: int
    change: ChangeFunction
    ended: EndedBinding | None
    timeout: float | None
    ops: tuple[Op, ...] = ()


@dataclass(frozen=True, slots=True)
class StartDelay:
    """Call `deferred(key)` after ``delay`` seconds."""

    key: bytes
    delay: float


@dataclass(frozen=True, slots=True)
class CancelDelay:
    key: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """Reply ``result`` to the request submitted with ``token``."""

    token: Any
    result: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Wake:
    """Tell the new owner's node agent that its request won the lock."""

    wake: LockWake


def wake_for_batch(key: bytes, ops: list[Op], chosen: Register) -> LockWake | None:
    """After a batch with a release: the wake-up of the new owner, unless its own request was
    in the batch (or the release changed nothing)."""
    released = [op for op in ops if op[0] == "release"]
    if not released or chosen.epoch != released[0][1] + 1:
        return None
    owner = owner_of(chosen)
    if owner is None or owner == released[0][2]:
        return None
    grant = grant_of(chosen)
    if ops_of_pid(ops, owner, grant) or grant is None:
        return None
    return LockWake(owner, key, chosen.epoch, grant)


@dataclass
class _KeyState:
    waiting: list[tuple[Any, Op, float | None]] = field(default_factory=list)
    running: list[Any] | None = None  # the tokens of the running batch's requests
    ops: list[Op] | None = None  # the running batch's operations
    tag: int | None = None  # the running batch's round
    owner: Pid | None = None  # as the last batch left it
    delayed: bool = False  # a StartDelay is pending


class LockHomeEngine:
    """See the module docstring."""

    def __init__(self, enqueue_delay: float) -> None:
        self.enqueue_delay = enqueue_delay
        self.keys: dict[bytes, _KeyState] = {}
        self._tags = 0
        self._out: list[Any] = []

    # -- events -------------------------------------------------------------------------

    def request(self, key: bytes, token: Any, op: Op, timeout: float | None) -> list[Any]:
        """Apply ``op`` to lock ``key`` in a batch; its result goes to ``token``."""
        state = self.keys.get(key)
        if state is None:
            state = self.keys[key] = _KeyState()
        state.waiting.append((token, op, timeout))
        self._next(key, state)
        return self._flush()

    def deferred(self, key: bytes) -> list[Any]:
        """The delay of a batch that waited for a release is over."""
        state = self.keys.get(key)
        if state is not None:
            state.delayed = False
            if state.running is None and state.waiting:
                self._start(key, state)
        return self._flush()

    def round_done(self, key: bytes, tag: int, register: Register | None, error: BaseException | None) -> list[Any]:
        """The proposer answered the batch ``tag`` of ``key``."""
        state = self.keys.get(key)
        if state is None or state.tag != tag or state.ops is None:
            return self._flush()
        if error is None:
            assert register is not None
            chosen = register.visible()
            wake = wake_for_batch(key, state.ops, chosen)
            if wake is not None:
                self._out.append(Wake(wake))
            self._done(key, tag, ("ok", chosen))
        elif isinstance(error, NoQuorum):
            self._done(key, tag, ("no_quorum", str(error)))
        else:
            self._done(key, tag, ("error", error))
        return self._flush()

    def proposer_lost(self, error: BaseException) -> list[Any]:
        """The proposer exited: the running batches fail as a crashed call would."""
        for key, state in list(self.keys.items()):
            if state.tag is not None:
                self._done(key, state.tag, ("error", error))
        return self._flush()

    def _flush(self) -> list[Any]:
        out, self._out = self._out, []
        return out

    # -- batches ------------------------------------------------------------------------

    def _next(self, key: bytes, state: _KeyState) -> None:
        """Start the next batch of `key` now, or soon if it can wait for a release."""
        if state.running is not None or not state.waiting:
            return
        owner = state.owner
        if owner is not None and all(op[0] == "acquire" and op[1] != owner for _, op, _ in state.waiting):
            if not state.delayed:
                state.delayed = True
                self._out.append(StartDelay(key, self.enqueue_delay))
            return
        self._start(key, state)

    def _start(self, key: bytes, state: _KeyState) -> None:
        """Start the next batch: everything waiting, up to (and with) the first release."""
        if state.delayed:
            state.delayed = False
            self._out.append(CancelDelay(key))
        batch: list[tuple[Any, Op, float | None]] = []
        rest: list[tuple[Any, Op, float | None]] = []
        released = False
        for item in state.waiting:
            if item[1][0] == "release":
                if released:
                    rest.append(item)
                    continue
                released = True
            (rest if rest else batch).append(item)
        state.waiting = rest
        timeouts = [t for _, _, t in batch if t is not None]
        ops = [op for _, op, _ in batch]
        state.running = [token for token, _, _ in batch]
        state.ops = ops
        self._tags += 1
        state.tag = tag = self._tags
        try:
            change, ended = batch_change(ops)
        except Exception as exc:  # noqa: BLE001 - a bad op: its callers get the error
            self._done(key, tag, ("error", exc))
            return
        self._out.append(ProposeBatch(key, tag, change, ended, min(timeouts) if timeouts else None, tuple(ops)))

    def _done(self, key: bytes, tag: int, result: tuple[Any, ...]) -> None:
        state = self.keys.get(key)
        if state is None or state.tag != tag or state.running is None:
            return
        for token in state.running:
            self._out.append(Answer(token, result))
        state.running = state.ops = state.tag = None
        state.owner = owner_of(result[1]) if result[0] == "ok" else None
        if state.waiting:
            self._next(key, state)
        elif state.owner is None:
            del self.keys[key]  # a free lock: nothing to remember
