"""One chaos run: start a cluster, run the workloads under a nemesis, heal, check, report."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

import gevent

import paxtor
from paxtor.actors import (
    Down,
    ReceiveTimeout,
    call,
    receive,
    self_pid,
    send,
    spawn,
    spawn_monitor,
)
from paxtor.paxos.sim.linearizability import Operation
from tests.chaos import checkers, nemesis
from tests.chaos.harness import CLIENT_NAME, ChaosCluster
from tests.chaos.report import RunResult
from tests.chaos.workloads import (
    OP_TIMEOUT,
    RECORDER,
    RESOURCE,
    FencedSetResource,
    Recorder,
    hold_until_killed,
    keep_running,
    now,
    register_worker,
    singleton_worker,
)  # fmt: skip

LOCK_KEYS = ["set-a", "set-b"]
REGISTER_KEYS = ["reg-x", "reg-y", "reg-z"]
REGISTER_WORKERS = 3
SINGLETON_KEYS = ["counter-1", "counter-2"]
SINGLETON_WORKERS = 2
WARMUP = 1.0
#: A dead holder's lock is freed once its node was silent for `Timing.silence` (the design's
#: lease * (1 + drift)**2 + margin), then a release round and a handoff: this much more is
#: allowed for detection, the rounds, and a slow shared machine.
LOCK_SLACK = 3.0


def replay_command(seed: int, window: float, quiet: float, kinds: tuple[str, ...] | None) -> str:
    cmd = f".venv/bin/python -m tests.chaos --runs 1 --seed {seed} --window {window:g} --quiet {quiet:g}"
    return cmd + (f" --faults {','.join(kinds)}" if kinds else "")


def run_once(seed: int, *, window: float = 12.0, quiet: float = 8.0, kinds: tuple[str, ...] | None = None,
             size: int = 3) -> RunResult:
    """One run from `seed`; everything it started is killed by pid before it returns."""
    started = time.monotonic()
    cluster = ChaosCluster(size=size, seed=seed)
    enabled, faults = nemesis.schedule(seed, cluster.voters, window, cluster.timing.lease, kinds)
    replay = replay_command(seed, window, quiet, kinds)
    result = RunResult(seed, enabled, [], {}, [], None, 0.0, replay)
    try:
        node = cluster.start()
        node.run(_scenario, cluster, faults, window, quiet, seed, result)
    except Exception as exc:  # noqa: BLE001 - a run that could not run is a failing run, with logs
        result.error = f"{type(exc).__name__}: {exc}\n{cluster.logs_tail()}"
    finally:
        if not result.ok:
            result.extra["logs"] = keep_logs(cluster, seed)
        cluster.close()
        result.duration = time.monotonic() - started
    return result


def keep_logs(cluster: ChaosCluster, seed: int) -> str:
    """Copy the nodes' logs of a failing run out of the directory `close` removes."""
    kept = Path(tempfile.gettempdir()) / f"paxtor-chaos-seed{seed}-{os.getpid()}"
    kept.mkdir(parents=True, exist_ok=True)
    for log in cluster.workdir.glob("*.log"):
        shutil.copy(log, kept / log.name)
    return str(kept)


def _scenario(cluster: ChaosCluster, faults: list[nemesis.Fault], window: float, quiet: float, seed: int,
              result: RunResult) -> None:
    FencedSetResource.start_link(name=RESOURCE)
    Recorder.start_link(name=RECORDER)
    t0 = now()
    planned = sum(f.gap + f.hold + (1.0 if f.kind == "pause_holder" else 0.0) for f in faults)
    deadline = t0 + WARMUP + planned + 2.0 + quiet
    history: list[Operation] = []
    workers = []
    errors: list[tuple[float, str, str, float]] = []
    for i in range(REGISTER_WORKERS):
        workers.append(spawn_monitor(register_worker, f"r{i}", REGISTER_KEYS, history, deadline, seed, errors))
    served: list[tuple[Any, ...]] = []
    for i in range(SINGLETON_WORKERS):
        workers.append(spawn_monitor(singleton_worker, f"s{i}", SINGLETON_KEYS, served, deadline, seed))
    for name in [*cluster.voters, CLIENT_NAME]:
        workers.append(spawn_monitor(keep_running, f"L-{name}", LOCK_KEYS, CLIENT_NAME, name, deadline, seed))
    gevent.sleep(WARMUP)
    nem = nemesis.Nemesis(cluster, t0)
    try:
        nem.play(faults)
    finally:
        result.faults_log = nem.log
    if nem.last_heal is None:
        raise RuntimeError("the nemesis did not reach its final heal")
    nem.note(f"quiet period: workloads run {deadline - nem.last_heal:.1f} s more")
    refs = {ref for _, ref in workers}
    wait_until = deadline + OP_TIMEOUT + 10.0
    while refs and now() < wait_until:
        try:
            msg = receive(lambda m: isinstance(m, Down) and m.ref in refs, timeout=max(0.1, wait_until - now()))
        except ReceiveTimeout:
            break
        refs.discard(msg.ref)
    if refs:
        nem.note(f"{len(refs)} workers still running {wait_until - deadline:.0f} s after the deadline")
    lock_bound = cluster.timing.silence + LOCK_SLACK
    final_locks = dead_holder_probe(cluster, nem, seed, lock_bound)
    resource_log, final_sets = call(RESOURCE, ("dump",))
    events = call(RECORDER, ("dump",))
    lock_progress = [e[0] for e in resource_log if e[1] == "write" and e[6] == "ok"]
    progress = {
        "lock-set": lock_progress,
        "register": [op.complete for op in history if op.complete is not None],
        "singletons": [entry[6] for entry in served],
    }
    result.operations = {
        "lock_tenures": sum(1 for e in events if e[0] == "acquired"),
        "acked_adds": len(lock_progress),
        "lock_failures": sum(1 for e in events if e[0] == "lock_failed"),
        "register_ops": len(history),
        "singleton_calls": len(served),
    }
    liveness, recovery = checkers.check_liveness(nem.last_heal, progress, final_locks, lock_bound,
                                                 workload_end=deadline)
    lost = cluster.log_events("lease_lost")
    result.operations["lease_losses"] = len(lost)
    result.operations["owners_killed_by_lease"] = sum(int(e.get("owners_killed", 0)) for e in lost)
    result.verdicts = [
        checkers.check_lock_set(resource_log, final_sets, events),
        checkers.check_register(history),
        checkers.check_singletons(served),
        liveness,
    ]
    result.recovery = recovery
    result.extra.update(events=events, t0=t0, register_errors=errors)
    kinds = Counter((key, text.split(":")[0]) for _, key, text, _ in errors)
    result.extra["error_summary"] = [f"{key} {kind} x{n}" for (key, kind), n in sorted(kinds.items())]
    after = [e for e in errors if e[0] >= nem.last_heal]
    if after:
        result.extra["error_summary"].append(f"{len(after)} after the final heal, last: {after[-1][1]} {after[-1][2]}")  # for whoever digs into one run
    series = {f"{name} ok": times for name, times in progress.items()}
    for worker in sorted({e[1] for e in events if e[0] == "released"}):
        series[f"  {worker} locks"] = [e[5] for e in events if e[0] == "released" and e[1] == worker]
    result.extra["timeline"] = timeline(t0, series)


def dead_holder_probe(cluster: ChaosCluster, nem: nemesis.Nemesis, seed: int, bound: float) -> dict[str, float | None]:
    """A process on a voter takes each lock, its node is killed -9 (not restarted until
    afterwards): each lock must be acquirable here within `bound` s of the kill."""
    victim = random.Random(seed).choice(cluster.voters)
    me = self_pid()
    took: dict[str, float | None] = {key: None for key in LOCK_KEYS}
    for key in LOCK_KEYS:
        spawn(hold_until_killed, key, me, node=victim)
        try:
            receive(lambda m, key=key: isinstance(m, tuple) and m[:2] == ("holding", key), timeout=10.0)
        except ReceiveTimeout:
            nem.note(f"liveness probe: no holder of {key!r} on {victim} within 10 s")
            return took
    pid = cluster.kill9(victim)
    killed = now()
    nem.note(f"liveness probe: kill -9 {victim} (pid {pid}) while it holds {LOCK_KEYS}")
    takers = [spawn_monitor(acquire_timed, key, killed, bound, me)[1] for key in LOCK_KEYS]
    for _ in takers:  # both locks are taken concurrently: each is timed from the kill
        try:
            msg = receive(lambda m: isinstance(m, tuple) and m[0] == "acquired_after_kill", timeout=bound + 5.0)
        except ReceiveTimeout:
            break
        took[msg[1]] = msg[2]
    cluster.restart(victim)
    return took


def acquire_timed(key: str, since: float, bound: float, reply_to: Any) -> None:
    """Lock `key` within `bound` s of `since`; report the seconds it took (None if it did not)."""
    took = None
    with suppress(Exception):  # not acquired in time: None, which the liveness checker reports
        paxtor.lock(key, timeout=max(0.1, since + bound - now()))
        took = now() - since
        paxtor.unlock(key)
    send(reply_to, ("acquired_after_kill", key, took))


def timeline(t0: float, series: dict[str, list[float]], step: float = 1.0) -> list[str]:
    """Successes per `step` seconds since `t0`, one line per series: a text plot of progress."""
    end = max((t for times in series.values() for t in times), default=t0)
    buckets = int((end - t0) / step) + 1
    lines = []
    for name, times in series.items():
        counts = [0] * buckets
        for t in times:
            counts[min(buckets - 1, max(0, int((t - t0) / step)))] += 1
        lines.append(f"{name:<18} |" + " ".join(f"{c:>3}" for c in counts))
    lines.append(f"{'second':<18} |" + " ".join(f"{i:>3}" for i in range(buckets)))
    return lines
