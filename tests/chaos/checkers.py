"""Checkers over what a chaos run recorded. Each returns violations (gating) and notes (reported)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from paxtor.sim.linearizability import Operation, check_history

MAX_STATES = 200_000


@dataclass
class Verdict:
    name: str
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unknown: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unknown


def check_lock_set(
    resource_log: list[tuple[Any, ...]], final_sets: dict[Any, list[str]], events: list[tuple[Any, ...]]
) -> Verdict:
    """No acked add lost; one holder per token; the resource never accepted a token older
    than one it had accepted, nor a token below one whose tenure had ended before its
    holder's began (a holder paused before it noticed its grant, then fenced, is a note)."""
    v = Verdict("lock-set")
    acked = [(key, elem) for (_, op, key, _, _, elem, outcome) in resource_log if op == "write" and outcome == "ok"]
    for key, elem in acked:
        if elem not in final_sets.get(key, ()):
            v.violations.append(f"lost add: {elem!r} was acknowledged for {key!r} but is not in the final set")
    highest: dict[Any, int] = {}
    for _t, _op, key, token, _holder, _, outcome in resource_log:
        if outcome == "ok":
            if token < highest.get(key, -1):
                v.violations.append(f"resource accepted stale token {token} for {key!r} after {highest[key]}")
            highest[key] = max(token, highest.get(key, -1))
    holders: dict[tuple[Any, int], set[Any]] = defaultdict(set)
    for (_, _, key, token, holder, _, outcome) in resource_log:
        if outcome == "ok":
            holders[(key, token)].add(holder)
    for e in events:
        if e[0] == "acquired":
            holders[(e[3], e[4])].add(e[2])
    for (key, token), pids in sorted(holders.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if len(pids) > 1:
            v.violations.append(f"token {token} of {key!r} granted to {len(pids)} holders: {sorted(map(repr, pids))}")
    tenures = [e for e in events if e[0] == "released"]  # (_, worker, pid, key, token, acquired, until, outcome)
    by_key: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for e in tenures:
        by_key[e[3]].append(e)
    overlaps = inversions = 0
    late: list[str] = []
    for key, ts in by_key.items():
        ts.sort(key=lambda e: e[5])
        for i, a in enumerate(ts):
            for b in ts[i + 1:]:
                if b[5] >= a[6]:
                    if b[4] <= a[4] and b[2] != a[2]:
                        # b's holder learned of its grant (token b[4]) only after a's later tenure
                        # ended: it was granted before and paused (SIGSTOP) before it could say
                        # so. Harmless if the resource refused it (fencing); a violation if the
                        # resource let it through (which the stale-token check also reports).
                        inversions += 1
                        what = f"{key!r}: token {b[4]} believed from {b[5]:.3f}, after tenure {a[4]} ended"
                        if b[7] == "ok":
                            v.violations.append(f"{what}, and the resource accepted it")
                        else:
                            late.append(f"{what} (a late belief; the resource answered {b[7]!r})")
                    continue
                if b[2] != a[2]:
                    overlaps += 1
                    v.notes.append(f"{key!r}: belief overlap {a[2]!r}(token {a[4]}) and {b[2]!r}(token {b[4]}) "
                                   f"for {min(a[6], b[6]) - b[5]:.3f} s")  # fmt: skip
    stale = sum(1 for e in resource_log if e[6] == "stale")
    v.notes.insert(0, f"{len(acked)} acked adds, {len(tenures)} tenures reported, {stale} stale accesses refused, "
                      f"{overlaps} belief overlaps, {inversions} late beliefs")  # fmt: skip
    v.notes[1:1] = late[:3]
    del v.notes[12:]  # keep the report short
    return v


class CounterModel:
    """A register holding None or an int: get, put-if-empty, increment (empty -> 1),
    compare-and-set; every operation returns the value after it."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Any, input: tuple[Any, ...]) -> tuple[Hashable, Any]:
        kind = input[0]
        if kind == "get":
            return state, state
        if kind == "put":
            new = input[1] if state is None else state
            return new, new
        if kind == "incr":
            new = 1 if state is None else state + 1
            return new, new
        if kind == "cas":  # ("cas", expected, new): new if state == expected, else unchanged
            new = input[2] if state == input[1] else state
            return new, new
        raise ValueError(f"unknown input {input!r}")

    def is_read_only(self, input: tuple[Any, ...], output: Any) -> bool:
        return input[0] == "get"


def check_register(history: list[Operation]) -> Verdict:
    """Per-key linearizability (WGL); an undecided key is reported as unknown, never as a pass."""
    v = Verdict("register")
    began = time.monotonic()
    result = check_history(history, CounterModel(), max_states=MAX_STATES)
    maybe = sum(1 for op in history if op.complete is None)
    v.notes.append(f"{len(history)} operations ({maybe} timed out: maybe), {len({op.key for op in history})} keys, "
                   f"checked in {time.monotonic() - began:.2f} s")  # fmt: skip
    if result.unknown:
        v.unknown = True
        v.notes.append("UNKNOWN: " + result.message.splitlines()[0])
    elif not result.ok:
        v.violations.append(result.message)
    return v


def check_liveness(last_heal: float, progress: dict[str, list[float]],
                   final_locks: dict[str, float | None], lock_bound: float, progress_bound: float = 10.0,
                   workload_end: float | None = None, tail: float = 4.0) -> tuple[Verdict, float | None]:
    """After the final heal every workload progresses within `progress_bound` s and keeps
    progressing (a success in the last `tail` s before `workload_end`), and every lock is
    acquirable within `lock_bound` s; returns the verdict and the recovery time."""
    v = Verdict("liveness")
    recovery: list[float] = []
    for name, times in progress.items():
        after = [t - last_heal for t in times if t >= last_heal]
        if not after:
            v.violations.append(f"{name}: no progress after the final heal")
            continue
        first = min(after)
        recovery.append(first)
        v.notes.append(f"{name}: first success {first:.2f} s after the final heal")
        if first > progress_bound:
            v.violations.append(f"{name}: first success only {first:.2f} s after the final heal (> {progress_bound} s)")
        if workload_end is not None and not any(t >= workload_end - tail for t in times):
            stalled = max(times) - last_heal
            v.violations.append(f"{name}: stalled: no success in the last {tail:g} s of the quiet period "
                                f"(last one {stalled:.2f} s after the final heal)")  # fmt: skip
    for key, took in final_locks.items():
        if took is None:
            v.violations.append(f"lock {key!r} of a killed holder not acquirable within {lock_bound:.2f} s")
        else:
            v.notes.append(
                f"lock {key!r} of a killed holder acquired {took:.2f} s after the kill (bound {lock_bound:.2f} s)"
            )
    return v, (max(recovery) if recovery else None)


def check_singletons(served: list[tuple[Any, ...]]) -> Verdict:
    """One incarnation per epoch; incarnations of a key serve in disjoint time intervals,
    in epoch order. `served`: (key, pid, epoch, serve time, n, invoke, complete) per call."""
    v = Verdict("singletons")
    spans: dict[Any, dict[Any, list[float]]] = defaultdict(dict)  # key -> pid -> [first, last, epoch]
    by_epoch: dict[tuple[Any, int], set[Any]] = defaultdict(set)
    for key, pid, epoch, at, *_ in served:
        by_epoch[(key, epoch)].add(pid)
        span = spans[key].setdefault(pid, [at, at, epoch])
        span[0], span[1] = min(span[0], at), max(span[1], at)
    for (key, epoch), pids in sorted(by_epoch.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if len(pids) > 1:
            v.violations.append(f"{key!r}: {len(pids)} incarnations in epoch {epoch}: {sorted(map(repr, pids))}")
    for key, per_pid in spans.items():
        ordered = sorted(per_pid.items(), key=lambda kv: kv[1][0])
        for (pa, a), (pb, b) in pairwise(ordered):
            if b[0] <= a[1]:
                v.violations.append(f"{key!r}: {pb!r} (epoch {b[2]}) served at {b[0]:.3f} before {pa!r} "
                                    f"(epoch {a[2]}) stopped serving at {a[1]:.3f}")  # fmt: skip
            if b[2] <= a[2]:
                v.violations.append(f"{key!r}: incarnation {pb!r} has epoch {b[2]} <= {a[2]} of the earlier {pa!r}")
    v.notes.append(f"{len(served)} calls served by {sum(len(p) for p in spans.values())} incarnations "
                   f"of {len(spans)} names")  # fmt: skip
    return v


def check_cold_probe(events: list[tuple[Any, ...]]) -> Verdict:
    """The cold probe of the voter nemeses: every acked probe write reads back as written, and
    the probe lock is never granted to another process while its holder (alive to the end) held it."""
    v = Verdict("cold-probe")
    puts = {e[1]: (e[2], e[3]) for e in events if e[0] == "probe_put"}
    gets = [e for e in events if e[0] == "probe_get"]
    held = [e for e in events if e[0] == "probe_lock_held"]  # (_, key, pid, token, since, until)
    tries = [e for e in events if e[0] == "probe_lock_try"]  # (_, key, pid, token, at)
    if not (puts or gets or held or tries):
        return v
    for _, key, pid, token, at in tries:
        if token is None:
            continue
        for _, held_key, holder, held_token, since, until in held:
            if held_key == key and holder != pid and since <= at <= until:
                v.violations.append(f"two holders: {key!r} granted to {pid!r} (token {token}) while {holder!r} "
                                    f"held it (token {held_token}) and lived on")  # fmt: skip
    lost = [f"{key!r} = {puts[key][0]!r} was acked, read back as {value!r}"
            for _, key, value, at in gets if key in puts and at > puts[key][1] and value != puts[key][0]]  # fmt: skip
    v.violations += [f"lost write: {what}" for what in lost[:5]]
    if len(lost) > 5:
        v.violations.append(f"lost writes: {len(lost) - 5} more")
    granted = sum(1 for e in tries if e[3] is not None)
    v.notes.append(f"{len(puts)} probe writes acked, {len(gets)} read back ({len(lost)} lost); "
                   f"{len(held)} probe locks held, {len(tries)} tried by another node ({granted} granted)")  # fmt: skip
    return v
