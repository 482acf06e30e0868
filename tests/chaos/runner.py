"""One chaos run: start a cluster, run the workloads under a nemesis, heal, check, report.

A run's shape is a function of its seed: 3 or 5 voters (odd seeds: 5), one
client node, which voters run under libfaketime (rate within the drift
bound; `clock_beyond` puts one outside it, a negative control), and the
fault schedule. `amnesia` is the other negative control: a voter whose
directory was wiped votes at once (`node_main.let_wiped_voters_vote`), under
the `wipe_holder` nemesis unless other kinds are given.
"""

from __future__ import annotations

import gc
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
from paxtor.sim.linearizability import Operation
from tests.chaos import checkers, clocks, firewall, nemesis
from tests.chaos.harness import CLIENT_NAME, ChaosCluster, ClockSkew, Timing
from tests.chaos.report import RunResult
from tests.chaos.workloads import (
    OP_TIMEOUT,
    RECORDER,
    RESOURCE,
    FencedSetResource,
    Recorder,
    history_from,
    hold_until_killed,
    keep_running,
    lock_set_worker,
    lost_records,
    now,
    register_worker,
    singleton_worker,
)  # fmt: skip

LOCK_KEYS = ["set-a", "set-b"]
REGISTER_KEYS = ["reg-x", "reg-y", "reg-z"]
REGISTER_WORKERS = 3  # on the console; and on each client node:
CLIENT_REGISTER_WORKERS = 2
SINGLETON_KEYS = ["counter-1", "counter-2"]
SINGLETON_WORKERS = 2  # on the console; and on each client node:
CLIENT_SINGLETON_WORKERS = 1
#: Beyond the drift bound (the negative control): a clock at this rate, by default.
BEYOND_RATE = 0.4
WARMUP = 1.0
#: Acceptor nodes that start as non-voters, for the `reconfigure` nemesis (started only when used).
SPARES = 3
#: The faults of an `amnesia` run, unless others are given: the schedule that loses writes then.
AMNESIA_KINDS = ("wipe_holder",)
#: A dead holder's lock is freed once its node was silent for `Timing.silence` (the design's
#: lease * (1 + drift)**2 + margin), then a release round and a handoff: this much more is
#: allowed for detection, the rounds, and a slow shared machine.
LOCK_SLACK = 3.0


def replay_command(seed: int, window: float, quiet: float, kinds: tuple[str, ...] | None, voters: int | None = None,
                   clock_beyond: float | None = None, clocks_on: bool = True, register_mode: str = "mixed",
                   amnesia: bool = False) -> str:
    cmd = f".venv/bin/python -m tests.chaos --runs 1 --seed {seed} --window {window:g} --quiet {quiet:g}"
    cmd += f" --voters {voters}" if voters else ""
    cmd += f" --clock-beyond {clock_beyond:g}" if clock_beyond else ""
    cmd += " --amnesia" if amnesia else ""
    cmd += "" if clocks_on else " --no-clocks"
    cmd += f" --register-ops {register_mode}" if register_mode != "mixed" else ""
    return cmd + (f" --faults {','.join(kinds)}" if kinds else "")


#: The run in progress (its cluster and firewall): what an interrupted command must clean up.
ACTIVE: dict[str, Any] = {}


def abandon() -> None:
    """Remove what the run in progress made outside this process: its iptables chain, its
    node processes (by pid) and its directory; for a SIGINT/SIGTERM of the command."""
    fw, cluster = ACTIVE.pop("firewall", None), ACTIVE.pop("cluster", None)
    if fw is not None:
        fw.close()
    if cluster is not None:
        for proc in cluster.local.processes.values():
            with suppress(Exception):
                proc.kill()
        shutil.rmtree(cluster.workdir, ignore_errors=True)


def voters_for(seed: int) -> int:
    """3 voters for even seeds, 5 for odd ones."""
    return 5 if seed % 2 else 3


def clock_skews(seed: int, size: int, timing: Timing, beyond: float | None = None) -> dict[int, ClockSkew]:
    """Which voters run under libfaketime, and how, from `seed`: up to two, each at a rate
    within `timing.max_drift` of real time (4/5 of it at most), any offset, the monotonic
    clock faked or not. `beyond`: one more at that rate (outside the bound: a negative control)."""
    if clocks.libfaketime() is None:
        return {}
    rng = random.Random(f"clocks:{seed}")
    bound = 0.8 * timing.max_drift
    numbers = rng.sample(range(1, size + 1), rng.randint(0, 2))
    skews = {n: ClockSkew(round(rng.uniform(1 - bound, 1 + bound), 4), round(rng.uniform(-3600, 3600), 1),
                          rng.random() < 0.5) for n in numbers}  # fmt: skip
    if beyond:
        rest = [n for n in range(1, size + 1) if n not in skews] or [1]
        skews[rng.choice(rest)] = ClockSkew(beyond, 0.0, True)
    return skews


def run_once(seed: int, *, window: float = 12.0, quiet: float = 8.0, kinds: tuple[str, ...] | None = None,
             size: int | None = None, clients: int = 1, clock_beyond: float | None = None, use_clocks: bool = True,
             plot_dir: str | Path | None = None, register_mode: str = "mixed", amnesia: bool = False) -> RunResult:
    """One run from `seed` (`size` voters, default by seed); everything it started is killed
    by pid, and every iptables rule removed, before it returns. `plot_dir`: write the PNG there."""
    started = time.monotonic()
    voters = size or voters_for(seed)
    timing = Timing()
    skews = clock_skews(seed, voters, timing, clock_beyond) if use_clocks else {}
    cluster = ChaosCluster(size=voters, seed=seed, timing=timing, clients=clients, clock_skews=skews,
                           spares=SPARES, amnesia=amnesia)  # fmt: skip
    played = kinds or (AMNESIA_KINDS if amnesia else None)
    enabled, faults = nemesis.schedule(seed, cluster.voters, window, timing.lease, played, clients=cluster.client_nodes)
    replay = replay_command(seed, window, quiet, kinds, size, clock_beyond, use_clocks, register_mode, amnesia)
    result = RunResult(seed, enabled, [], {}, [], None, 0.0, replay)
    result.extra["shape"] = (f"{voters} voters, client nodes {cluster.client_nodes}, addresses "
                             f"{cluster.addresses.prefix}.*")  # fmt: skip
    result.extra["clocks"] = [f"node{n}: {skew}" for n, skew in sorted(skews.items())]
    if skews and any(not (1 - timing.max_drift <= s.rate <= 1 + timing.max_drift) for s in skews.values()):
        result.extra["negative_control"] = "a clock runs outside the drift bound"
    if amnesia:
        result.extra["negative_control"] = "a voter whose directory was wiped votes at once (--amnesia)"
    fw: firewall.Firewall | None = None
    no_fw = None
    if any(f.kind in nemesis.IPT_KINDS for f in faults):
        try:
            fw = firewall.Firewall()
        except firewall.FirewallUnavailable as exc:
            no_fw = str(exc)
    ACTIVE.update(cluster=cluster, firewall=fw)
    gc.collect()
    gc.disable()  # a full collection in a large harness stalls the console past the heartbeat timeout
    try:
        node = cluster.start()
        node.run(_scenario, cluster, faults, window, quiet, seed, result, fw, no_fw, register_mode)
    except Exception as exc:  # noqa: BLE001 - a run that could not run is a failing run, with logs
        result.error = f"{type(exc).__name__}: {exc}\n{cluster.logs_tail()}"
    finally:
        try:
            ACTIVE.clear()
            if fw is not None:
                fw.close()
        finally:
            if not result.ok:
                result.extra["logs"] = keep_logs(cluster, seed, result)
            cluster.close()
            gc.enable()
            result.duration = time.monotonic() - started
    if plot_dir is not None and "series" in result.extra:
        result.extra["plot"] = _plot(result, Path(plot_dir))
    for bulky in ("events", "series", "register_errors"):  # many runs in one process: keep the summary only
        result.extra.pop(bulky, None)
    return result


def _plot(result: RunResult, where: Path) -> str:
    """The PNG's path, or why there is none (matplotlib missing, or it failed)."""
    try:
        from tests.chaos import plot
    except ImportError as exc:
        return f"(no plot: {exc})"
    try:
        return str(plot.write_png(result, where / f"chaos-seed{result.seed}.png"))
    except ImportError as exc:
        return f"(no plot: {exc}; pip install -e '.[chaos]')"
    except Exception as exc:  # noqa: BLE001 - the plot is a convenience, never a failed run
        return f"(plot failed: {type(exc).__name__}: {exc})"


def keep_logs(cluster: ChaosCluster, seed: int, result: RunResult | None = None) -> str:
    """Copy the nodes' logs of a failing run out of the directory `close` removes, with
    the recorded events (one repr per line: ``events.txt``) for whoever digs in."""
    kept = Path(tempfile.gettempdir()) / f"paxtor-chaos-seed{seed}-{os.getpid()}"
    kept.mkdir(parents=True, exist_ok=True)
    for log in cluster.workdir.glob("*.log"):
        shutil.copy(log, kept / log.name)
    if result is not None and result.extra.get("events"):
        (kept / "events.txt").write_text("\n".join(map(repr, result.extra["events"])) + "\n")
    return str(kept)


def _scenario(cluster: ChaosCluster, faults: list[nemesis.Fault], window: float, quiet: float, seed: int,
              result: RunResult, fw: firewall.Firewall | None, no_fw: str | None, register_mode: str) -> None:
    FencedSetResource.start_link(name=RESOURCE)
    Recorder.start_link(name=RECORDER)
    t0 = now()
    planned = sum(f.planned for f in faults)
    deadline = t0 + WARMUP + planned + 2.0 + quiet
    workers = []
    me = CLIENT_NAME
    for i in range(REGISTER_WORKERS):
        workers.append(spawn_monitor(register_worker, f"r{i}", REGISTER_KEYS, me, deadline, seed, register_mode))
    for i in range(SINGLETON_WORKERS):
        workers.append(spawn_monitor(singleton_worker, f"s{i}", SINGLETON_KEYS, me, deadline, seed))
    for name in [*cluster.voters, *cluster.client_nodes, CLIENT_NAME]:
        args = (lock_set_worker, f"L-{name}", LOCK_KEYS, me, deadline, seed)
        workers.append(spawn_monitor(keep_running, name, deadline, *args))
    for client in cluster.client_nodes:
        for i in range(CLIENT_REGISTER_WORKERS):
            args = (register_worker, f"r{i}@{client}", REGISTER_KEYS, me, deadline, seed, register_mode)
            workers.append(spawn_monitor(keep_running, client, deadline, *args))
        for i in range(CLIENT_SINGLETON_WORKERS):
            args = (singleton_worker, f"s{i}@{client}", SINGLETON_KEYS, me, deadline, seed)
            workers.append(spawn_monitor(keep_running, client, deadline, *args))
    gevent.sleep(WARMUP)
    nem = nemesis.Nemesis(cluster, t0, fw, no_fw)
    for line in result.extra.get("clocks", []):
        nem.note(f"clock: {line}")
    try:
        nem.play(faults)
    finally:
        result.faults_log = nem.log
        result.extra["windows"] = nem.windows
    if nem.last_heal is None:
        raise RuntimeError("the nemesis did not reach its final heal")
    nem.note(f"quiet period: workloads run {deadline - nem.last_heal:.1f} s more")
    result.extra["final_heal"] = nem.last_heal - t0
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
    history, errors = history_from(events)
    served = [tuple(e[1:]) for e in events if e[0] == "served"]
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
        "register_ops_on_clients": sum(1 for op in history if "@" in str(op.process)),
        "singleton_calls": len(served),
    }
    liveness, recovery = checkers.check_liveness(nem.last_heal, progress, final_locks, lock_bound,
                                                 workload_end=deadline)
    leases_lost = cluster.log_events("lease_lost")
    result.operations["lease_losses"] = len(leases_lost)
    result.operations["owners_killed_by_lease"] = sum(int(e.get("owners_killed", 0)) for e in leases_lost)
    register = checkers.check_register(history)
    lost = lost_records(events)
    if lost:  # a check of an incomplete history cannot decide; say so rather than guess
        register.notes.append(f"records lost on the way to the console (its links dropped): {lost}")
        if register.violations:
            register.notes += ["UNKNOWN: with records missing, these are not proof:", *register.violations]
            register.violations, register.unknown = [], True
    result.verdicts = [
        checkers.check_lock_set(resource_log, final_sets, events),
        register,
        checkers.check_singletons(served),
        checkers.check_cold_probe(events),
        liveness,
    ]
    result.recovery = recovery
    result.extra.update(events=events, t0=t0, register_errors=errors)
    kinds = Counter((key, text.split(":")[0]) for _, key, text, _ in errors)
    result.extra["error_summary"] = [f"{key} {kind} x{n}" for (key, kind), n in sorted(kinds.items())]
    after = [e for e in errors if e[0] >= nem.last_heal]
    if after:
        result.extra["error_summary"].append(
            f"{len(after)} after the final heal, last: {after[-1][1]} {after[-1][2]}"
        )  # for whoever digs into one run
    result.extra["series"] = plot_series(t0, resource_log, events, history, errors, served)
    series = {f"{name} ok": times for name, times in progress.items()}
    for worker in sorted({e[1] for e in events if e[0] == "released"}):
        series[f"  {worker} locks"] = [e[5] for e in events if e[0] == "released" and e[1] == worker]
    result.extra["timeline"] = timeline(t0, series)


def plot_series(t0: float, resource_log: list[tuple[Any, ...]], events: list[tuple[Any, ...]],
                history: list[Operation], errors: list[tuple[float, str, str, float]],
                served: list[tuple[Any, ...]]) -> dict[str, dict[str, list[float]]]:
    """Per workload, the seconds since `t0` of its ok / fail / timeout outcomes (for the plot)."""
    lock = {"ok": [e[0] - t0 for e in resource_log if e[1] == "write" and e[6] == "ok"],
            "fail": [e[4] - t0 for e in events if e[0] == "lock_failed"]
            + [e[6] - t0 for e in events if e[0] == "released" and e[7] != "ok"],
            "timeout": []}  # fmt: skip
    register = {"ok": [op.complete - t0 for op in history if op.complete is not None],
                "fail": [e[0] - t0 for e in errors if "imeout" not in e[2]],
                "timeout": [e[0] - t0 for e in errors if "imeout" in e[2]]}  # fmt: skip
    singleton = {"ok": [e[6] - t0 for e in served], "fail": [], "timeout": []}
    return {"lock-set": lock, "register": register, "singletons": singleton}


def dead_holder_probe(cluster: ChaosCluster, nem: nemesis.Nemesis, seed: int, bound: float) -> dict[str, float | None]:
    """A process on a voter takes each lock, its node is killed -9 (not restarted until
    afterwards): each lock must be acquirable here within `bound` s of the kill."""
    victim = random.Random(seed).choice(cluster.voters)
    me = self_pid()
    took: dict[str, float | None] = dict.fromkeys(LOCK_KEYS)
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
