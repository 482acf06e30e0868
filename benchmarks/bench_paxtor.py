"""Paxtor's locks and singletons on three durable voters, against etcd and ZooKeeper.

``python -m benchmarks.bench_paxtor [--seconds S] [--ops N] [--no-baselines]
[--clients N] [--durability fsync|memory]``

Three voters node1..node3 run as OS processes on 127.0.0.1, durability
"fsync" (each acceptor fsyncs before it answers) in a temporary directory.
This process joins as a plain distributed node ("bench"), starts the
workloads on the voters by remote spawn (the application runs on the nodes,
as Paxtor is meant to be used) and collects their figures by message:

  uncontended     one client on node1 locks and unlocks one key in a loop:
                  lock+unlock latency median and p99
  contended       8 clients (``--clients``) spread over the three nodes lock one key, hold
                  it for nothing, unlock: handoffs/s, and each client's count
                  (fairness: all within 10% of the mean; Jain's index), and
                  the voters' CPU time (user + system) per handoff
  distinct keys   8 clients spread over the nodes, each on its own key:
                  lock+unlock/s in total, and the voters' CPU per lock+unlock
  rounds          (``--count``) what one uncontended lock+unlock costs on
                  node1: Paxos rounds, acceptor records and fsyncs there,
                  local calls (call counts under cProfile, per lock+unlock)
  name call       a client on node1 calls a singleton (hosted on node2)
                  through its name and through its pid, interleaved rounds:
                  the ratio (a name costs no consensus round once cached)

The same run measures etcd and ZooKeeper (`benchmarks.baselines`, in a
subprocess) and prints Paxtor's figures as ratios against them. Targets:
lock+unlock median < 0.6 ms and at most half of etcd's and ZooKeeper's;
>= 1,000 handoffs/s with per-client counts within 10%; >= 3,000
lock+unlock/s on distinct keys; name call <= 1.2x pid call.

``--durability memory`` runs the same workloads on voters that never touch
the disk (for tests only, and not what the targets are about): what is
left is the share of the protocol, Python and the network. ``--clients``
shows how the throughput grows with concurrency (more records per fsync).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import structlog

from benchmarks.process_cpu import cpu_seconds
from paxtor.actors import GenServer

REPO = Path(__file__).resolve().parent.parent
COOKIE = "bench-paxtor-cookie"
CLIENTS = 8
NODES = ("node1", "node2", "node3")


def _quiet_logs() -> None:
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )


# ----------------------------------------------------------------- the voters


def node_main(number: int, base_port: int, data_dir: str, durability: str = "fsync") -> None:
    """One voter: `paxtor.start_node` (distribution, durable PaxosKV and the Paxtor services)."""
    _quiet_logs()
    import paxtor

    paxtor.start_node(
        number, cluster_size=3, base_port=base_port, cookie=COOKIE, data_dir=data_dir, durability=durability,
        heartbeat_interval=1.0, heartbeat_timeout=10.0,
    )  # fmt: skip
    print("ready", flush=True)
    gevent.wait()


class Voters:
    """The three voter OS processes."""

    def __init__(self, base_port: int, data_dir: str, durability: str = "fsync") -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_paxtor",
                    "--node",
                    str(n),
                    str(base_port),
                    data_dir,
                    durability,
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for n in (1, 2, 3)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != b"ready":
                raise RuntimeError(f"a voter failed to start: {line!r}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the three voters so far."""
        return cpu_seconds(proc.pid for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)


# ----------------------------------------------------------------- workloads (run on the voters)


def await_quorum(reply_to: Any) -> None:
    import paxtor
    from paxtor.actors import send

    paxtor.wait_for_quorum(30)
    send(reply_to, ("quorum", paxtor.actors.distribution.node()))


def uncontended(reply_to: Any, ops: int, warmup: int) -> None:
    """lock+unlock of one key in a loop: per-operation seconds."""
    import paxtor
    from paxtor.actors import send

    for _ in range(warmup):
        paxtor.lock("bench-uncontended")
        paxtor.unlock("bench-uncontended")
    samples = []
    for _ in range(ops):
        started = time.perf_counter()
        paxtor.lock("bench-uncontended")
        paxtor.unlock("bench-uncontended")
        samples.append(time.perf_counter() - started)
    send(reply_to, ("uncontended", samples))


#: (module suffix, function) whose calls per lock+unlock `--count` reports.
COUNTED = (
    ("paxtor/paxos/api.py", "propose"),
    ("paxtor/paxos/proposer_server.py", "_attempt"),
    ("paxtor/paxos/local_acceptor.py", "handle"),
    ("paxtor/paxos/storage/log.py", "append"),
    ("paxtor/paxos/storage/log.py", "_commit"),
    ("paxtor/actors/gen_server.py", "call"),
    ("paxtor/actors/gen_server.py", "cast"),
)


def count_calls(reply_to: Any, ops: int) -> None:
    """Under cProfile (every greenlet of node1): calls per lock+unlock of the COUNTED functions."""
    import cProfile
    import pstats

    import paxtor
    from paxtor.actors import send

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(ops):
        paxtor.lock("bench-counted")
        paxtor.unlock("bench-counted")
    gevent.sleep(0.2)  # let the last round's durable callbacks run
    profiler.disable()
    counts = {}
    for (path, _line, name), (calls, *_rest) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        for suffix, wanted in COUNTED:
            if name == wanted and path.endswith(suffix):
                label = f"{suffix.rsplit('/', 1)[1][:-3]}.{name}"
                counts[label] = counts.get(label, 0.0) + calls / ops
    send(reply_to, ("counted", counts))


def log_counters(reply_to: Any, tag: Any) -> None:
    """This voter's acceptor: (records appended, fsyncs) so far; group commit is their ratio."""
    import gc

    from paxtor.actors import send
    from paxtor.paxos.local_acceptor import LocalAcceptor

    voting = [o for o in gc.get_objects() if isinstance(o, LocalAcceptor)]  # benchmark only: no API for it
    records = sum(v._appends for v in voting)
    fsyncs = sum(v.durable_log.fsync_count for v in voting if v.durable_log is not None)
    send(reply_to, (tag, records, fsyncs))


def _log_counters(me: Any) -> list[tuple[int, int]]:
    from paxtor.actors import spawn

    for node in NODES:
        spawn(log_counters, me, ("log_counters", node), node=node)
    return [tuple(_receive_tagged("log_counters")[1:]) for _ in NODES]  # type: ignore[misc]


def lock_loop(reply_to: Any, key: Any, seconds: float, start_at: float, tag: Any) -> None:
    """lock+unlock `key` from `start_at` (wall clock) for `seconds`: the count."""
    import paxtor
    from paxtor.actors import send

    gevent.sleep(max(0.0, start_at - time.time()))
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        paxtor.lock(key)
        paxtor.unlock(key)
        count += 1
    send(reply_to, (tag, count))


class Counter(GenServer):
    """The singleton of the name-call figure: counts calls."""

    def init(self) -> None:
        self.n = 0

    def handle_call(self, request: Any, caller: Any) -> Any:
        self.n += 1
        return self.n


def name_vs_pid(reply_to: Any, key: Any, calls: int, rounds: int) -> None:
    """Calls to a singleton through its name and through its pid, interleaved rounds."""
    import paxtor
    from paxtor.actors import call, send

    via = paxtor.name(key, "benchmarks.bench_paxtor:Counter")
    pid = paxtor.whereis(via)
    for _ in range(200):  # warm both paths
        call(via, "inc")
        call(pid, "inc")
    by_name, by_pid = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call(via, "inc")
        by_name.append((time.perf_counter() - started) / calls)
        started = time.perf_counter()
        for _ in range(calls):
            call(pid, "inc")
        by_pid.append((time.perf_counter() - started) / calls)
    send(reply_to, ("name_vs_pid", by_name, by_pid, pid.node))


def home_of(reply_to: Any, keys: list[Any]) -> None:
    from paxtor.actors import send
    from paxtor.placement import rendezvous_order
    from paxtor.rounds import paxos_key

    send(reply_to, ("homes", [rendezvous_order(paxos_key(k), NODES)[0] for k in keys]))


# ----------------------------------------------------------------- the driver


def _receive(tag: str, timeout: float = 120.0) -> Any:
    from paxtor.actors import receive

    return receive(lambda m: isinstance(m, tuple) and m[0] == tag, timeout=timeout)


def _free_base_port() -> int:
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 30_000)
        sockets = []
        try:
            for offset in range(1, 5):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports")


def measure(
    seconds: float, ops: int, count: bool = False, durability: str = "fsync", clients: int = CLIENTS
) -> dict[str, Any]:
    """Start the voters, run every workload, stop them; the figures."""
    from paxtor.actors.distribution import start_distributed, stop_all_distributed

    base = _free_base_port()
    with tempfile.TemporaryDirectory(prefix="bench-paxtor-") as data_dir:
        voters = Voters(base, data_dir, durability)
        try:
            bench = start_distributed("bench", port=0, base_port=base, cluster_size=3, cookie=COOKIE,
                                      heartbeat_interval=1.0, heartbeat_timeout=10.0)
            assert bench.wait_for_nodes(NODES, 30), "the voters did not connect"
            return bench.run(_workloads, base, seconds, ops, count, voters.cpu_seconds, clients, timeout=None)
        finally:
            stop_all_distributed()
            voters.stop()


def _workloads(
    base: int, seconds: float, ops: int, count: bool = False, cpu: Callable[[], float] = lambda: 0.0,
    clients: int = CLIENTS,
) -> dict[str, Any]:
    from paxtor.actors import self_pid, spawn

    me = self_pid()
    for node in NODES:
        spawn(await_quorum, me, node=node)
    for _ in NODES:
        _receive("quorum")
    results: dict[str, Any] = {}

    spawn(uncontended, me, ops, max(100, ops // 10), node="node1")
    samples = sorted(_receive("uncontended")[1])
    p99 = samples[min(len(samples) - 1, max(0, round(0.99 * len(samples)) - 1))]
    results["lock_unlock_median_ms"] = statistics.median(samples) * 1e3
    results["lock_unlock_p99_ms"] = p99 * 1e3
    if count:
        spawn(count_calls, me, 200, node="node1")
        results["per_lock_unlock"] = _receive("counted")[1]

    start_at = time.time() + 1.0
    for i in range(clients):
        spawn(lock_loop, me, "bench-contended", seconds, start_at, ("contended", i), node=NODES[i % 3])
    gevent.sleep(max(0.0, start_at - time.time()))
    cpu_before = cpu()
    counts = [0] * clients
    for _ in range(clients):
        (tag, i), count = _receive_tagged("contended")
        counts[i] = count
    results["contended_cpu_ms_per_handoff"] = (cpu() - cpu_before) * 1e3 / max(1, sum(counts))
    mean = sum(counts) / clients
    results["contended_handoffs_per_s"] = sum(counts) / seconds
    results["contended_counts"] = counts
    results["contended_max_deviation"] = max(abs(c - mean) / mean for c in counts) if mean else None
    results["contended_jain_fairness"] = sum(counts) ** 2 / (clients * sum(c * c for c in counts)) if mean else None

    before = _log_counters(me)
    start_at = time.time() + 1.0
    for i in range(clients):
        spawn(lock_loop, me, ("bench-distinct", i), seconds, start_at, ("distinct", i), node=NODES[i % 3])
    gevent.sleep(max(0.0, start_at - time.time()))
    cpu_before = cpu()
    total = 0
    for _ in range(clients):
        total += _receive_tagged("distinct")[1]
    results["distinct_cpu_ms_per_lock_unlock"] = (cpu() - cpu_before) * 1e3 / max(1, total)
    results["distinct_lock_unlock_per_s"] = total / seconds
    after = _log_counters(me)
    records = sum(a[0] - b[0] for a, b in zip(after, before, strict=False))
    fsyncs = sum(a[1] - b[1] for a, b in zip(after, before, strict=False))
    results["distinct_records_per_fsync"] = records / fsyncs if fsyncs else None

    spawn(home_of, me, [("bench-name", i) for i in range(50)], node="node1")
    homes = _receive("homes")[1]
    key = ("bench-name", homes.index("node2"))  # hosted on another node than the caller
    spawn(name_vs_pid, me, key, 2000, 7, node="node1")
    _, by_name, by_pid, host = _receive("name_vs_pid")
    results["name_call_us"] = min(by_name) * 1e6
    results["pid_call_us"] = min(by_pid) * 1e6
    results["name_over_pid"] = min(by_name) / min(by_pid)
    results["name_host"] = host
    return results


def _receive_tagged(kind: str) -> Any:
    from paxtor.actors import receive

    return receive(lambda m: isinstance(m, tuple) and isinstance(m[0], tuple) and m[0][0] == kind, timeout=120)


def _compare(ours: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> list[str]:
    from benchmarks.baselines import speedup

    lines = []
    for system, result in baselines.items():
        headline = result.get("headline")
        if not headline:
            lines.append(f"  {system}: {result.get('skipped') or result.get('error') or 'no figures'}")
            continue
        for metric in (
            "lock_unlock_median_ms",
            "lock_unlock_p99_ms",
            "contended_handoffs_per_s",
            "distinct_lock_unlock_per_s",
        ):
            theirs = headline.get(metric)
            if theirs:
                lines.append(
                    f"  {metric:30s} paxtor {ours[metric]:10.3f}  {system} {theirs:10.3f}  "
                    f"speedup {speedup(metric, ours[metric], theirs):6.2f}x"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_paxtor", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput measurement")
    parser.add_argument("--ops", type=int, default=2000, help="lock+unlock pairs timed for the latency")
    parser.add_argument("--no-baselines", action="store_true", help="skip etcd/ZooKeeper")
    parser.add_argument("--count", action="store_true", help="count rounds, records, fsyncs, calls per lock+unlock")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--clients", type=int, default=CLIENTS,
                        help="clients of the contended and distinct-keys workloads (the targets are for 8)")
    parser.add_argument("--durability", choices=("fsync", "memory"), default="fsync",
                        help="the voters' durability; memory shows what the disk costs (not a target)")
    parser.add_argument("--node", nargs=4, metavar=("N", "BASE_PORT", "DATA_DIR", "DURABILITY"), help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.node:
        node_main(int(args.node[0]), int(args.node[1]), args.node[2], args.node[3])
        return 0
    _quiet_logs()
    ours = measure(args.seconds, args.ops, args.count, args.durability, args.clients)
    print(f"Paxtor, 3 voters (durability {args.durability}), 127.0.0.1:")
    print(
        f"  lock+unlock uncontended      median {ours['lock_unlock_median_ms']:.3f} ms"
        f"   p99 {ours['lock_unlock_p99_ms']:.3f} ms"
        f"   (target: median < 0.6 ms)"
    )
    if "per_lock_unlock" in ours:
        counted = "  ".join(f"{name} {n:.2f}" for name, n in sorted(ours["per_lock_unlock"].items()))
        print(f"  per lock+unlock on node1     {counted}")
    print(
        f"  one key, {args.clients} clients          {ours['contended_handoffs_per_s']:.0f} handoffs/s"
        f"   counts {ours['contended_counts']}"
        f"   max deviation {100 * ours['contended_max_deviation']:.1f}%   Jain {ours['contended_jain_fairness']:.4f}"
        f"   (target: >= 1000/s, within 10%)   voter CPU {ours['contended_cpu_ms_per_handoff']:.3f} ms per handoff"
    )
    print(
        f"  distinct keys, {args.clients} clients    {ours['distinct_lock_unlock_per_s']:.0f} lock+unlock/s"
        f"   (target: >= 3000/s)"
        f"   acceptor records per fsync {ours['distinct_records_per_fsync'] or 0:.2f}"
        f"   voter CPU {ours['distinct_cpu_ms_per_lock_unlock']:.3f} ms per lock+unlock"
    )
    print(f"  call through a name          {ours['name_call_us']:.1f} us vs pid {ours['pid_call_us']:.1f} us"
          f"   ratio {ours['name_over_pid']:.3f}   (singleton on {ours['name_host']}; target <= 1.2)")
    if not args.no_baselines:
        from benchmarks.baselines import baseline_results

        lines = _compare(ours, baseline_results())
        print("Against the same-run baselines:")
        print("\n".join(lines))
    if args.json:
        print(json.dumps(ours))
    return 0


if __name__ == "__main__":
    # the workloads travel to the voters as "benchmarks.bench_paxtor:NAME", not "__main__:NAME"
    from benchmarks import bench_paxtor

    sys.exit(bench_paxtor.main())

