"""A Wing-Gong-Lowe linearizability checker for histories of single-key operations.

A history is linearizable when every completed operation can be given a single
point in time between its invocation and its response such that applying the
operations in that order to a sequential `Model` yields exactly the observed
outputs. The check is exponential in the worst case; Lowe's refinement of the
Wing & Gong search (a doubly linked list of call/return entries that is
"lifted" as operations are linearized, plus a cache of (linearized set, model
state) configurations already explored) makes typical histories near-linear.

Conventions (the simulator and the chaos suite rely on them):

- Histories are partitioned by `Operation.key` and each key is checked alone
  (linearizability is compositional, so this is exact when the model is a
  per-key object, as a Paxos register is).
- An operation with `complete=None` timed out: it may have taken effect at any
  point after its invocation, or never. Its output is ignored. It is treated
  as responding at +infinity and it is optional: the search succeeds once
  every completed operation is linearized.
- Equal timestamps count as overlapping: an operation invoked at exactly the
  time another one responded may be ordered before it. A checker must never
  report a violation that only the clock's resolution created.
- The search is bounded by `max_states` explored configurations per key. When
  the bound is hit the result is *unknown*: `ok=False, unknown=True`, so a
  caller that only looks at `ok` never takes an unproven history for a good
  one, and a caller that cares can tell "violation" from "gave up".

Cost: the search explores roughly (operations) x (subsets of the concurrent
window) x (distinct states). Histories where many clients overlap and many
operations could go anywhere (reads, failed CAS) are the expensive ones; a
model that declares such operations with `is_read_only` (see `Model`) lets
the checker place them greedily, which removes most of that blow-up.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "DEFAULT_MAX_STATES",
    "CheckResult",
    "Model",
    "Operation",
    "check_history",
]

# Each explored configuration costs a cache entry of O(concurrency) bytes plus
# the model state (about 300 bytes with small states): 500k is ~150 MB and
# some 10-20 s of search in CPython before the answer is "unknown".
DEFAULT_MAX_STATES = 500_000

# How many operations of the longest prefix a failure message shows.
_PREFIX_SHOWN = 12


@dataclass(frozen=True)
class Operation:
    """One client operation on one key, as observed from outside the system."""

    process: Hashable  # client id
    key: Hashable  # histories are partitioned by key (P-compositionality)
    input: Any  # passed to model.step
    output: Any  # the observed result (ignored when complete is None)
    invoke: float  # time of invocation
    complete: float | None  # time of response; None = timed out: "maybe applied"


class Model(Protocol):
    """A sequential specification of one key: states must be hashable.

    A model may also define `is_read_only(input, output) -> bool`: True
    promises that in EVERY state where `step(state, input)` returns `output`,
    it returns that same state (a read; a CAS that answered "no"). The checker
    then linearizes such an operation as soon as it fits, without trying
    alternatives: moving it to the front of any valid linearization keeps that
    valid. A wrong True makes the checker unsound; leaving it out only costs
    time.
    """

    def init(self) -> Hashable: ...

    def step(self, state: Any, input: Any) -> tuple[Hashable, Any]:
        """Apply `input` to `state`: return (new state, expected output)."""
        ...


@dataclass(frozen=True)
class CheckResult:
    """Outcome of a check: `ok` only when every key was proven linearizable."""

    ok: bool
    key: Hashable | None  # the first key found non-linearizable (or undecided)
    message: str  # the operations involved, the longest linearizable prefix found
    unknown: bool = False  # True when the search bound was hit before a verdict


def check_history(
    history: Sequence[Operation],
    model: Model,
    *,
    max_states: int = DEFAULT_MAX_STATES,
) -> CheckResult:
    """Check that `history` is linearizable with respect to `model`, key by key.

    Keys are checked in order of first appearance. A proven violation on any
    key is reported in preference to an undecided key, so one hard key does
    not hide a real bug elsewhere.
    """
    if max_states < 1:
        raise ValueError(f"max_states must be >= 1, got {max_states!r}")
    by_key = _partition(history)
    first_unknown: CheckResult | None = None
    for key, ops in by_key.items():
        ops.sort(key=lambda op: op.invoke)
        verdict = _check_key(ops, model, max_states)
        if verdict.ok:
            continue
        if not verdict.unknown:
            message = _violation_message(key, ops, verdict, model)
            return CheckResult(ok=False, key=key, message=message)
        if first_unknown is None:
            message = _unknown_message(key, ops, verdict, max_states)
            first_unknown = CheckResult(ok=False, key=key, message=message, unknown=True)
    if first_unknown is not None:
        return first_unknown
    return CheckResult(
        ok=True,
        key=None,
        message=f"linearizable: {len(history)} operations on {len(by_key)} keys",
    )


def _partition(history: Sequence[Operation]) -> dict[Hashable, list[Operation]]:
    """Group operations by key, keys in order of first appearance, after validating times."""
    by_key: dict[Hashable, list[Operation]] = {}
    for op in history:
        _validate(op)
        by_key.setdefault(op.key, []).append(op)
    return by_key


def _validate(op: Operation) -> None:
    if not isinstance(op, Operation):
        raise TypeError(f"history items must be Operation, got {type(op).__name__}")
    if math.isnan(op.invoke) or math.isinf(op.invoke):
        raise ValueError(f"invoke time must be finite: {op!r}")
    if op.complete is not None:
        if math.isnan(op.complete):
            raise ValueError(f"complete time is NaN: {op!r}")
        if op.complete < op.invoke:
            raise ValueError(f"operation completes before it is invoked: {op!r}")


# --- the search ------------------------------------------------------------


class _Entry:
    """A call or return event of one operation, linked in time order."""

    __slots__ = ("index", "time", "is_call", "pending", "read_only", "match", "prev", "next")

    def __init__(self, index: int, time: float, is_call: bool, pending: bool) -> None:
        self.index = index
        self.time = time
        self.is_call = is_call
        self.pending = pending
        self.read_only = False
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


class _Frame:
    """A linearization choice on the search stack; `parent` chains the prefix.

    `forced` marks a read-only op taken without alternatives: when it fails,
    the configuration it was taken from has failed as a whole.
    """

    __slots__ = ("choices", "position", "state", "w", "rel", "used", "forced", "parent", "depth")

    def __init__(self, choices, position, state, w, rel, used, forced, parent):
        self.choices = choices
        self.position = position
        self.state = state
        self.w = w
        self.rel = rel
        self.used = used
        self.forced = forced
        self.parent = parent
        self.depth = 1 if parent is None else parent.depth + 1

    def prefix(self) -> tuple[int, ...]:
        indices = []
        frame: _Frame | None = self
        while frame is not None:
            indices.append(frame.choices.entries[frame.position].index)
            frame = frame.parent
        return tuple(reversed(indices))


@dataclass(frozen=True)
class _KeyVerdict:
    """Per-key search result: `prefix` is the longest linearization found."""

    ok: bool
    unknown: bool
    prefix: tuple[int, ...]
    prefix_state: Any
    explored: int


def _build_entries(ops: Sequence[Operation], model: Model) -> tuple[_Entry, _Entry]:
    """Link the entries in time order behind two sentinel heads.

    The first list holds the calls and returns of completed operations; at
    equal times calls sort before returns (touching intervals overlap). The
    second holds the calls of pending operations alone: they never respond,
    so they stay out of the first list, where the ones that never took
    effect would otherwise be walked past at every step.
    """
    is_read_only = getattr(model, "is_read_only", None)
    completed: list[tuple[float, int, int, _Entry]] = []
    pending: list[tuple[float, int, int, _Entry]] = []
    for index, op in enumerate(ops):
        call = _Entry(index, op.invoke, True, op.complete is None)
        if op.complete is None:
            pending.append((op.invoke, 0, index, call))
            continue
        call.read_only = bool(is_read_only(op.input, op.output)) if is_read_only else False
        ret = _Entry(index, op.complete, False, False)
        call.match = ret
        ret.match = call
        completed.append((op.invoke, 0, index, call))
        completed.append((op.complete, 1, index, ret))
    return _link(completed), _link(pending)


def _link(events: list[tuple[float, int, int, _Entry]]) -> _Entry:
    events.sort(key=lambda event: event[:3])
    head = _Entry(-1, -math.inf, False, False)
    prev = head
    for *_, entry in events:
        prev.next = entry
        entry.prev = prev
        prev = entry
    return head


def _unlink(entry: _Entry) -> None:
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev


def _relink(entry: _Entry) -> None:
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


def _lift(entry: _Entry) -> None:
    """Unlink a call entry and its return, if any (dancing links)."""
    _unlink(entry)
    if entry.match is not None:
        _unlink(entry.match)


def _unlift(entry: _Entry) -> None:
    """Relink what `_lift(entry)` removed; only valid in reverse lift order."""
    if entry.match is not None:
        _relink(entry.match)
    _relink(entry)


class _Choices:
    """The calls that may be linearized next from one configuration, in trial order.

    Completed calls before the first return (read-only ones first, since one
    that fits settles the configuration), in invocation order. The pending
    calls invoked by that return are added only once those are exhausted
    (`extend_with_pending`): timed-out ops are optional and usually useless,
    so most configurations never look at them. (Trying ops by response time
    instead of invocation explored about twice as many configurations on
    random histories.)
    """

    __slots__ = ("entries", "deadline", "exhausted")

    def __init__(self, head: _Entry) -> None:
        read_only: list[_Entry] = []
        others: list[_Entry] = []
        entry = head.next
        while entry.is_call:
            (read_only if entry.read_only else others).append(entry)
            entry = entry.next
        self.entries = read_only + others
        self.deadline = entry.time
        self.exhausted = False  # True once the pending calls were added (or ruled out)

    def extend_with_pending(self, pending_head: _Entry) -> None:
        self.exhausted = True
        entry = pending_head.next
        while entry is not None and entry.time <= self.deadline:
            self.entries.append(entry)
            entry = entry.next


def _ordinals(ops: Sequence[Operation], *, pending: bool) -> dict[int, int]:
    """Number the pending (or the completed) ops 0, 1, ... in list order."""
    chosen = (index for index, op in enumerate(ops) if (op.complete is None) == pending)
    return {index: ordinal for ordinal, index in enumerate(chosen)}


def _check_key(ops: Sequence[Operation], model: Model, max_states: int) -> _KeyVerdict:
    """Lowe's WGL search on one key's operations, sorted by invocation time.

    Depth-first: take the first candidate (see `_Choices`) whose model
    output matches and whose configuration is new, lift it, repeat; when no
    candidate works, undo the last choice and try the one after it. Success
    when every completed op is linearized. Refinements over the textbook
    search, each keeping typical histories cheap:

    - The linearized set of completed ops is kept as (w, rel): every op below
      ordinal w is linearized, `rel` holds the few above it. Ops are numbered
      by invocation, so `rel` stays about as wide as the concurrency and a
      cache entry costs O(concurrency), not O(history).
    - The cache maps (w, rel, state) to the sets of pending ops used to get
      there. Having used MORE pending ops never helps (they are optional and
      constrain nothing), so a superset of a cached set is pruned: otherwise
      every timed-out write would double the search.
    - A read-only op (see `Model`) that fits is taken without alternatives.
    """
    head, pending_head = _build_entries(ops, model)
    pending_bit = _ordinals(ops, pending=True)
    completed_ordinal = _ordinals(ops, pending=False)
    remaining = len(completed_ordinal)
    state = model.init()
    w, rel, used = 0, 0, 0
    cache: dict[tuple[int, int, Any], list[int]] = {(0, 0, state): [0]}
    explored = 1
    top: _Frame | None = None
    best: _Frame | None = None
    best_state = state
    choices = _Choices(head) if remaining else None
    position = 0
    while remaining:
        if position == len(choices.entries):
            if not choices.exhausted:
                choices.extend_with_pending(pending_head)
                continue
            # Every candidate failed: backtrack.
            if top is None:
                return _verdict(False, False, best, best_state, explored)
            if best is None or top.depth > best.depth:
                best, best_state = top, state
            choices, position, state = top.choices, top.position, top.state
            w, rel, used = top.w, top.rel, top.used
            entry = choices.entries[position]
            _unlift(entry)
            if not entry.pending:
                remaining += 1
            position += 1
            if top.forced:  # a read-only op that fit failed: so has this configuration
                choices.exhausted = True
                position = len(choices.entries)
            top = top.parent
            continue
        entry = choices.entries[position]
        op = ops[entry.index]
        new_state, expected = model.step(state, op.input)
        if entry.pending:
            new_w, new_rel, new_used = w, rel, used | (1 << pending_bit[entry.index])
        elif expected == op.output:
            new_rel = rel | (1 << (completed_ordinal[entry.index] - w))
            low_ones = (~new_rel & (new_rel + 1)).bit_length() - 1
            new_w, new_rel, new_used = w + low_ones, new_rel >> low_ones, used
        else:
            position += 1
            continue
        if not _remember(cache, (new_w, new_rel, new_state), new_used):
            position += 1
            if entry.read_only:  # it fit and failed before: so does this configuration
                choices.exhausted = True
                position = len(choices.entries)
            continue
        explored += 1
        if explored > max_states:
            if top is not None and (best is None or top.depth > best.depth):
                best, best_state = top, state
            return _verdict(False, True, best, best_state, explored)
        top = _Frame(choices, position, state, w, rel, used, entry.read_only, top)
        state, w, rel, used = new_state, new_w, new_rel, new_used
        _lift(entry)
        if not entry.pending:
            remaining -= 1
            if not remaining:
                break
        choices = _Choices(head)
        position = 0
    return _verdict(True, False, top, state, explored)


def _remember(cache: dict[tuple[int, int, Any], list[int]], config: tuple[int, int, Any], used: int) -> bool:
    """Record a configuration; False if one with a subset of its pending ops was seen."""
    seen = cache.get(config)
    if seen is None:
        cache[config] = [used]
        return True
    for earlier in seen:
        if earlier & ~used == 0:
            return False
    seen.append(used)
    return True


def _verdict(ok: bool, unknown: bool, frame: _Frame | None, state: Any, explored: int) -> _KeyVerdict:
    prefix = () if frame is None else frame.prefix()
    return _KeyVerdict(ok, unknown, prefix, state, explored)


# --- messages --------------------------------------------------------------


def _describe(op: Operation) -> str:
    if op.complete is None:
        return f"{op.process!r}: {op.input!r} -> ? (timed out) [{op.invoke}, ...)"
    return f"{op.process!r}: {op.input!r} -> {op.output!r} [{op.invoke}, {op.complete}]"


def _prefix_lines(ops: Sequence[Operation], prefix: tuple[int, ...]) -> list[str]:
    shown = prefix[-_PREFIX_SHOWN:]
    lines = []
    if len(prefix) > len(shown):
        lines.append(f"  ... ({len(prefix) - len(shown)} earlier operations)")
    start = len(prefix) - len(shown)
    for position, index in enumerate(shown, start=start + 1):
        lines.append(f"  {position}. {_describe(ops[index])}")
    return lines


def _next_ops(ops: Sequence[Operation], prefix: tuple[int, ...]) -> list[int]:
    """Ops that could be linearized right after `prefix`: invoked by the earliest pending response."""
    done = set(prefix)
    rest = [i for i in range(len(ops)) if i not in done]
    deadline = min(
        (ops[i].complete for i in rest if ops[i].complete is not None), default=math.inf
    )
    return [i for i in rest if ops[i].invoke <= deadline]


def _violation_message(
    key: Hashable, ops: Sequence[Operation], verdict: _KeyVerdict, model: Model
) -> str:
    pending = sum(1 for op in ops if op.complete is None)
    lines = [
        f"key {key!r} is not linearizable ({len(ops)} operations, {pending} timed out; "
        f"{verdict.explored} configurations explored).",
        f"Longest linearizable prefix found: {len(verdict.prefix)} operations, "
        f"ending in state {verdict.prefix_state!r}:",
    ]
    lines.extend(_prefix_lines(ops, verdict.prefix) or ["  (none)"])
    lines.append("No operation can be linearized next; the candidates were:")
    for index in _next_ops(ops, verdict.prefix):
        op = ops[index]
        _, expected = model.step(verdict.prefix_state, op.input)
        if op.complete is not None and expected != op.output:
            why = f"the model expects {expected!r} here"
        else:
            why = "consistent here, but every continuation fails later"
        lines.append(f"  {_describe(op)}: {why}")
    return "\n".join(lines)


def _unknown_message(
    key: Hashable, ops: Sequence[Operation], verdict: _KeyVerdict, max_states: int
) -> str:
    lines = [
        f"key {key!r}: unknown, search bound of {max_states} configurations exceeded "
        f"({len(ops)} operations); neither a linearization nor a violation was proven.",
        f"Longest linearizable prefix found so far: {len(verdict.prefix)} operations:",
    ]
    lines.extend(_prefix_lines(ops, verdict.prefix) or ["  (none)"])
    return "\n".join(lines)
