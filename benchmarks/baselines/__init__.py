"""Same-run baselines (etcd 3.4, ZooKeeper 3.8) for Paxtor's benchmarks.

Paxtor reports its speed as ratios against these systems, measured in the same
run on the same machine. Their clients (grpc, kazoo) run OS threads, so by
default the measurements happen in a child process (``python -m
benchmarks.baselines``) and this process -- possibly a gevent one -- never
imports them.

Typical use from a Paxtor benchmark::

    from benchmarks.baselines import baseline_results, speedup
    base = baseline_results()            # measured once per process, cached
    etcd = base["etcd"].get("headline")  # None if skipped; see base["etcd"]["skipped"]
    print(speedup("lock_unlock_median_ms", paxtor_ms, etcd["lock_unlock_median_ms"]))
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cluster import SETPRIV
from .harness import BenchSettings

BASELINE_NAMES: tuple[str, ...] = ("etcd", "zookeeper")

# metric -> (label, unit, higher_is_better); the keys of every result's "headline"
HEADLINE_METRICS: dict[str, tuple[str, str, bool]] = {
    "put_median_ms": ("put latency median (1 client)", "ms", False),
    "put_p99_ms": ("put latency p99 (1 client)", "ms", False),
    "puts_per_s": ("puts/s, distinct keys", "ops/s", True),
    "lock_unlock_median_ms": ("lock+unlock median, uncontended", "ms", False),
    "lock_unlock_p99_ms": ("lock+unlock p99, uncontended", "ms", False),
    "contended_handoffs_per_s": ("one key contended: handoffs/s", "1/s", True),
    "contended_jain_fairness": ("one key contended: Jain fairness", "", True),
    "distinct_lock_unlock_per_s": ("distinct keys: lock+unlock/s", "ops/s", True),
}

REPO_ROOT = Path(__file__).resolve().parents[2]
_CACHE: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}


def _module(name: str) -> Any:
    if name == "etcd":
        from . import etcd

        return etcd
    if name == "zookeeper":
        from . import zookeeper

        return zookeeper
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINE_NAMES)}")


def _cluster(name: str) -> Any:
    module = _module(name)
    return module.etcd_cluster() if name == "etcd" else module.zookeeper_cluster()


def run_one(name: str, settings: BenchSettings | None = None, install: bool | None = None) -> dict[str, Any]:
    """Start ``name``'s 3-member cluster, measure, stop it; never raises for a skip.

    Returns the measurement dict, ``{"skipped": reason}`` or ``{"error": ...}``.
    """
    settings = settings or BenchSettings()
    module = _module(name)
    ok, reason = module.available(install)
    if not ok:
        return {"system": name, "skipped": reason}
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        with _cluster(name) as cluster:
            startup = time.monotonic() - started
            result = module.measure(cluster, settings)
    except Exception as exc:  # noqa: BLE001 - one baseline failing must not hide the other
        return {"system": name, "error": f"{type(exc).__name__}: {exc}"[:4000]}
    result["available"] = reason
    result["startup_seconds"] = startup
    result["total_seconds"] = time.monotonic() - started
    result["settings"] = settings.as_dict()
    # other work on this 2-core machine skews everything; the 1-minute load says how much
    result["load_average_1min"] = [load_before, os.getloadavg()[0]]
    result["problems"] = problems(result)
    return result


def problems(result: dict[str, Any]) -> list[str]:
    """Reasons a measured result should not be trusted (client errors, safety, hangs)."""
    found = []
    for part in ("put", "contended", "distinct_locks"):
        data = result[part]["throughput"] if part == "put" else result[part]
        found += [f"{part}: {error}" for error in data["errors"]]
        if data["stuck_threads"]:
            found.append(f"{part}: {data['stuck_threads']} client threads did not finish")
    if result["contended"]["mutual_exclusion_violations"]:
        found.append(
            f"contended: {result['contended']['mutual_exclusion_violations']} mutual-exclusion violations"
        )
    return found


def run_baselines(
    names: Sequence[str] = BASELINE_NAMES, settings: BenchSettings | None = None, install: bool | None = None
) -> dict[str, dict[str, Any]]:
    """Measure each baseline in THIS process, one cluster at a time."""
    return {name: run_one(name, settings, install) for name in names}


def run_baselines_in_subprocess(
    names: Sequence[str] = BASELINE_NAMES,
    settings: BenchSettings | None = None,
    install: bool | None = None,
    timeout: float = 900.0,
) -> dict[str, dict[str, Any]]:
    """Measure in a child Python process (its threads stay out of this one).

    On timeout or Ctrl-C the child gets SIGTERM (it then stops its servers by
    pid and removes their dirs), then SIGKILL after a grace period; the child
    and the servers also carry a parent-death signal. A timeout or a failed
    worker yields ``{"error": ...}`` entries, never an exception.
    """
    settings = settings or BenchSettings()
    argv = [
        *_die_with_parent(),
        sys.executable,
        "-m",
        "benchmarks.baselines",
        "--settings",
        json.dumps(settings.as_dict()),
        "--only",
        ",".join(names),
    ]
    if install is not None:
        argv.append("--install" if install else "--no-install")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # results come back as JSON on the worker's stdout; its progress goes to our stderr
    child = subprocess.Popen(
        argv, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_child(child)
        return {
            name: {"system": name, "error": f"baseline worker timed out after {timeout:.0f}s"}
            for name in names
        }
    except BaseException:
        _stop_child(child)
        raise
    try:
        results = json.loads(out)
    except ValueError:
        results = None
    if child.returncode != 0 or not isinstance(results, dict):
        message = f"baseline worker exited with {child.returncode}"
        return {name: {"system": name, "error": message} for name in names}
    return results


def _die_with_parent() -> list[str]:
    """setpriv prefix: the worker gets SIGTERM (and cleans up) if we die first.

    Linux ties this to the spawning thread; call from a thread that outlives
    the run (gevent's greenlets all run on the main thread).
    """
    return [SETPRIV, "--pdeathsig", "TERM", "--"] if os.path.exists(SETPRIV) else []


def _stop_child(child: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    """SIGTERM the worker by pid, give it time to stop its servers, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if child.poll() is not None:
            return
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def baseline_results(
    names: Sequence[str] = BASELINE_NAMES, settings: BenchSettings | None = None, install: bool | None = None
) -> dict[str, dict[str, Any]]:
    """Subprocess-measured baselines, cached per process and arguments.

    Several benchmark modules in one ``python -m benchmarks`` run share a
    single measurement.
    """
    settings = settings or BenchSettings()
    key = (tuple(names), settings, install)
    if key not in _CACHE:
        _CACHE[key] = run_baselines_in_subprocess(names, settings, install)
    return _CACHE[key]


def speedup(metric: str, paxtor_value: float, baseline_value: float) -> float:
    """How many times better Paxtor is on ``metric`` (>1: Paxtor faster)."""
    _, _, higher_is_better = HEADLINE_METRICS[metric]
    if higher_is_better:
        return paxtor_value / baseline_value
    return baseline_value / paxtor_value


def format_table(
    results: dict[str, dict[str, Any]], reference: dict[str, dict[str, float]] | None = None
) -> str:
    """A plain-text table of the headline numbers, then one line per skip/error."""
    names = list(results)
    ref_names = [n for n in names if reference and n in reference]
    header = ["metric", *names, *(f"{n} (earlier)" for n in ref_names)]
    rows = [header]
    for metric, (label, unit, _) in HEADLINE_METRICS.items():
        row = [f"{label}" + (f" [{unit}]" if unit else "")]
        for name in names:
            value = (results[name].get("headline") or {}).get(metric)
            row.append(_fmt(value))
        for name in ref_names:
            row.append(_fmt((reference or {}).get(name, {}).get(metric)))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name in names:
        lines.extend(_describe(name, results[name]))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.0f}"
    return str(value)


def _describe(name: str, result: dict[str, Any]) -> list[str]:
    """Provenance and sanity lines for one baseline."""
    if "skipped" in result:
        return [f"{name}: SKIPPED - {result['skipped']}"]
    if "error" in result:
        return [f"{name}: ERROR - {result['error']}"]
    contended = result["contended"]
    lines = [
        f"{name} {result['server_version']}: client {result['client']}",
        f"  lock recipe: {result['lock_recipe']}; put = {result.get('put_operation', 'put')}",
        f"  {'; '.join(result['cluster']['notes'])}; {result['placement']}",
        f"  contended per-client acquisitions {contended['per_client_acquisitions']}, "
        f"mutual-exclusion violations {contended['mutual_exclusion_violations']}",
        "  cores used (client process / servers): "
        + ", ".join(
            f"{label} {_fmt(part['client_process_cores'])}/{_fmt(part['server_processes_cores'])}"
            for label, part in (
                ("puts", result["put"]["throughput"]),
                ("contended", contended),
                ("distinct", result["distinct_locks"]),
            )
        ),
        f"  cluster start {result['startup_seconds']:.1f}s, total {result['total_seconds']:.1f}s",
    ]
    lines[-1] += (
        f", 1-min load average {result['load_average_1min'][0]:.1f} -> {result['load_average_1min'][1]:.1f}"
    )
    if result["problems"]:
        lines.append(f"  PROBLEMS (do not trust these numbers): {result['problems'][:3]}")
    return lines


__all__ = [
    "BASELINE_NAMES",
    "HEADLINE_METRICS",
    "BenchSettings",
    "baseline_results",
    "format_table",
    "run_baselines",
    "run_baselines_in_subprocess",
    "run_one",
    "speedup",
]
