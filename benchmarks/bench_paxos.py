"""PaxosKV: put latency and throughput on three voter nodes, against etcd, in interleaved rounds.

``python -m benchmarks.bench_paxos [--rounds R] [--seconds S] [--ops N] [--durability fsync|memory]
[--no-etcd] [--profile fresh|again] [--json]``

Three ``python -m paxtor node N --no-shell`` OS processes on 127.0.0.1 (the
voters; "fsync": acceptor log on disk in a temp dir). This process joins as a
plain distributed node ("node9") and runs the measurements INSIDE node1 (a
remote spawn of this module's functions), so what is timed is the API as an
application on a voter uses it. A 3-member etcd (`benchmarks.baselines`)
stays up beside them when installed.

Each round measures the floor (`benchmarks.floor`), then each phase on
Paxtor and etcd in turn (the order alternates):

  put             Paxtor: `paxos.put` of a fresh key (phase 1 + phase 2), one
                  client on node1; with, for context, a GenServer call from
                  node1 to node2 (call rtt) and a put on a key node1 wrote last
                  (the 1-RTT path). etcd: Put of a fresh key on the leader.
  puts            8 clients (round-robin over the nodes), distinct fresh keys

Then once, Paxtor only: 8 clients incrementing ONE key (rounds/s, Jain's
index of how evenly they got through). A put's floor is one round,
RTT + fsync (`benchmarks.floor`). Aims: a durable put at most half etcd's
latency (a speedup of 2) and twice its throughput.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
import structlog

from benchmarks.floor import describe, measure_floor
from benchmarks.interleave import Rounds, Row, figure_text, markdown, rotated
from benchmarks.process_cpu import cpu_seconds
from paxtor import paxos
from paxtor.actors import GenServer, call, receive, self_pid, send, spawn
from paxtor.actors.distribution import start_distributed, stop_all_distributed

COOKIE = "bench-paxos-cookie"
REPO = Path(__file__).resolve().parent.parent
NODES = ("node1", "node2", "node3")
CLIENTS = 8


# -- what runs inside the nodes ------------------------------------------------------------------


class Echo(GenServer):
    """Answers every call with its request (the unit of the ratios)."""

    def handle_call(self, request: Any, caller: Any) -> Any:
        return request


def start_echo(reply_to: Any) -> None:
    """On node2: start an Echo server (kept alive by this process) and report its pid."""
    pid = Echo.start_link()
    send(reply_to, ("echo", pid))
    receive()


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3}


def _timed(op: Any, ops: int, seconds: float) -> dict[str, float]:
    for i in range(min(50, ops)):  # warm-up
        op(-1 - i)
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    for i in range(ops):
        start = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - start)
        if time.monotonic() >= deadline:
            break
    return _stats(samples)


def put_latencies(reply_to: Any, run: str, round_index: int, echo: Any, ops: int, seconds: float,
                  profile: str | None) -> None:  # fmt: skip
    """On node1: the call rtt, fresh puts and 1-RTT puts of one round; report them (and a profile)."""
    paxos.wait_for_quorum(30)
    profiler: Any = cProfile.Profile() if profile else None
    paxos.put((run, "again"), 0)
    figures = {"call": _timed(lambda i: call(echo, i), ops, seconds / 3)}
    for name, op in (("fresh", lambda i: paxos.put((run, "fresh", round_index, i), i)),
                     ("again", lambda i: paxos.put((run, "again"), i))):  # fmt: skip
        if profile == name:
            profiler.enable()
        figures[name] = _timed(op, ops, seconds / 3)
        if profile == name:
            profiler.disable()
    text = None
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        text = out.getvalue()
    send(reply_to, ("latencies", figures, text))


def put_client(reply_to: Any, run: str, client: int, start_at: float, seconds: float) -> None:
    """One of the concurrent clients: puts on its own fresh keys during the window."""
    paxos.wait_for_quorum(30)
    gevent.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds
    done = errors = 0
    i = 0
    while time.monotonic() < end:
        try:
            paxos.put((run, "tp", client, i), i)
            if time.monotonic() <= end:
                done += 1
        except paxos.NoQuorum:
            errors += 1
        i += 1
    send(reply_to, ("client_done", client, done, errors))


def _increment(register: Any) -> Any:
    if register.filled:
        return register.with_value(register.value + 1)
    return register.claim(1)


def contend_client(reply_to: Any, run: str, client: int, start_at: float, seconds: float) -> None:
    """One of the clients on ONE key: increments it during the window; reports its count."""
    paxos.wait_for_quorum(30)
    gevent.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds
    done = errors = 0
    while time.monotonic() < end:
        try:
            paxos.propose((run, "contended"), _increment, timeout=2.0)
            if time.monotonic() <= end:
                done += 1
        except paxos.NoQuorum:
            errors += 1
    send(reply_to, ("contend_done", client, done, errors))


def jain(counts: list[int]) -> float:
    """Jain's fairness index: 1.0 when all equal, 1/n when one got everything."""
    total = sum(counts)
    return total * total / (len(counts) * sum(c * c for c in counts)) if total else 0.0


# -- the harness (this process) -------------------------------------------------------------------


class NodeProcesses:
    """The three voters as OS processes, killed by pid at the end."""

    def __init__(self, durability: str, base: int, workdir: Path) -> None:
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
        env = dict(os.environ, PYTHONPATH=path, PAXTOR_COOKIE=COOKIE)
        self.procs = []
        for number in (1, 2, 3):
            log = open(workdir / f"node{number}.log", "wb")
            argv = [
                sys.executable, "-m", "paxtor", "node", str(number), "--no-shell",
                "--cluster-size", "3", "--base-port", str(base), "--durability", durability,
                "--data-dir", str(workdir / "data"), "--log-level", "warning",
            ]
            self.procs.append(subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=log))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the three node processes so far."""
        return cpu_seconds(proc.pid for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _free_base() -> int:
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20_000, 30_000)
        try:
            for offset in range(1, 10):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block")


SYSTEMS = ("paxtor", "etcd")
PHASES = ("put", "puts")


def measure(args: argparse.Namespace, service: Any = None) -> dict[str, Any]:
    """Start the voters, run the rounds and the one-key extra, stop them: the figures."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-paxos-{args.durability}-"))
    base = _free_base()
    nodes = NodeProcesses(args.durability, base, workdir)
    dist = start_distributed("node9", base_port=base, cluster_size=3, cookie=COOKIE)
    try:
        if not dist.wait_for_nodes(NODES, 30):
            raise RuntimeError(f"the nodes did not come up; logs in {workdir}")
        return dist.run(_rounds, args, service, nodes, str(workdir / "data"), timeout=None)
    finally:
        dist.stop()
        nodes.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _rounds(args: argparse.Namespace, service: Any, nodes: NodeProcesses, data_dir: str) -> dict[str, Any]:
    # functions spawned on the nodes travel by name: this module's, never __main__'s
    from benchmarks import bench_paxos as this

    run = f"r{time.time_ns()}"
    spawn(this.start_echo, self_pid(), node="node2")
    echo = receive(lambda m: isinstance(m, tuple) and m[0] == "echo", timeout=60)[1]
    paxtor = {"put": lambda r: _paxtor_put(args, run, r, echo), "puts": lambda r: _paxtor_puts(args, run, r, nodes)}
    systems = ["paxtor", *(s for s in (service.systems if service else []) if s == "etcd")]
    rounds = Rounds()
    profiles = []
    for r in range(args.rounds):
        rounds.add(r, "floor", "machine", measure_floor(data_dir))
        for phase in PHASES:
            for system in rotated(systems, r):
                figures = paxtor[phase](r) if system == "paxtor" else service.measure(system, phase)
                if figures is not None:
                    profiles.append(figures.pop("profile", None))
                    rounds.add(r, phase, system, figures)
    return {"rounds": rounds.as_json(), "extras": _one_key(args, run), "profile": next(filter(None, profiles), None)}


def _paxtor_put(args: argparse.Namespace, run: str, round_index: int, echo: Any) -> dict[str, Any]:
    from benchmarks import bench_paxos as this

    spawn(this.put_latencies, self_pid(), run, round_index, echo, args.ops, args.seconds,
          args.profile if round_index == 0 else None, node="node1")  # fmt: skip
    _, figures, text = receive(lambda m: isinstance(m, tuple) and m[0] == "latencies", timeout=300)
    return {
        "put_median_ms": figures["fresh"]["median_ms"], "put_p99_ms": figures["fresh"]["p99_ms"],
        "again_median_ms": figures["again"]["median_ms"], "call_median_ms": figures["call"]["median_ms"],
        "latency": figures, "profile": text,
    }  # fmt: skip


def _paxtor_puts(args: argparse.Namespace, run: str, round_index: int, nodes: NodeProcesses) -> dict[str, Any]:
    from benchmarks import bench_paxos as this

    start_at = time.time() + 0.3
    for client in range(CLIENTS):
        spawn(this.put_client, self_pid(), f"{run}-{round_index}", client, start_at, args.seconds,
              node=NODES[client % 3])  # fmt: skip
    gevent.sleep(max(0.0, start_at - time.time()))
    cpu_before = nodes.cpu_seconds()
    counts = [receive(lambda m: isinstance(m, tuple) and m[0] == "client_done", timeout=300) for _ in range(CLIENTS)]
    return {
        "puts_per_s": sum(c[2] for c in counts) / args.seconds,
        "errors": sum(c[3] for c in counts),
        "server_cores": (nodes.cpu_seconds() - cpu_before) / args.seconds,
    }


def _one_key(args: argparse.Namespace, run: str) -> dict[str, Any]:
    from benchmarks import bench_paxos as this

    start_at = time.time() + 0.3
    for client in range(CLIENTS):
        spawn(this.contend_client, self_pid(), run, client, start_at, args.seconds, node=NODES[client % 3])
    contended = [
        receive(lambda m: isinstance(m, tuple) and m[0] == "contend_done", timeout=300) for _ in range(CLIENTS)
    ]
    contended.sort(key=lambda c: c[1])
    return {
        "contended_per_s": sum(c[2] for c in contended) / args.seconds,
        "contended_counts": [c[2] for c in contended],
        "contended_errors": sum(c[3] for c in contended),
    }


def rows(result: dict[str, Any], service: Any = None) -> list[Row]:
    """The aims of the put figures: against the floor and etcd."""
    rounds = Rounds(result["rounds"])
    version = service.status.get("etcd", {}).get("server_version") if service else None
    etcd = f"etcd {version}" if version else "etcd"
    missing = service.reason("etcd") if service else "not measured (--no-etcd)"
    latency = figure_text(rounds.figure("put", "paxtor", "put_median_ms"), "ms", 3)
    again = figure_text(rounds.figure("put", "paxtor", "again_median_ms"), "ms", 3)
    rate = figure_text(rounds.figure("puts", "paxtor", "puts_per_s"), "/s")
    vs_latency = rounds.compare("put", "put_median_ms", "paxtor", "etcd", False)
    vs_rate = rounds.compare("puts", "puts_per_s", "paxtor", "etcd", True)
    return [
        Row("durable put of a fresh key (median)", latency, "floor RTT + fsync",
            rounds.over_floor("put", "paxtor", "put_median_ms", "ms", "round_ms")),
        Row("durable put of a fresh key (median)", latency,
            f"{etcd}: {figure_text(rounds.figure('put', 'etcd', 'put_median_ms'), 'ms', 3)}",
            vs_latency, ">= 2", "" if vs_latency else missing),
        Row("durable put, 1-RTT path (median)", again, "floor RTT + fsync",
            rounds.over_floor("put", "paxtor", "again_median_ms", "ms", "round_ms")),
        Row(f"durable puts/s, {CLIENTS} clients", rate, "floor RTT + fsync per client",
            rounds.over_floor("puts", "paxtor", "puts_per_s", "per_s", "round_ms", CLIENTS)),
        Row(f"durable puts/s, {CLIENTS} clients", rate,
            f"{etcd}: {figure_text(rounds.figure('puts', 'etcd', 'puts_per_s'), '/s')}",
            vs_rate, ">= 2", "" if vs_rate else missing),
    ]  # fmt: skip


def report(args: argparse.Namespace, result: dict[str, Any], table: list[Row]) -> None:
    rounds = Rounds(result["rounds"])
    print(f"PaxosKV, 3 voters (durability {args.durability}), 127.0.0.1; {rounds.count} interleaved rounds")
    for row in result["rounds"]:
        if row["phase"] == "floor":
            print(f"  round {row['round']}: {describe(row)}")
    print(markdown(table))
    call = figure_text(rounds.figure("put", "paxtor", "call_median_ms"), "ms", 3)
    cores = figure_text(rounds.figure("puts", "paxtor", "server_cores"), "cores")
    print(f"call rtt node1 -> node2 {call}; node CPU during puts/s {cores}")
    extras = result["extras"]
    counts = extras["contended_counts"]
    print(f"one key ({CLIENTS} clients on 3 nodes): {extras['contended_per_s']:.0f} rounds/s   Jain {jain(counts):.3f}"
          f"   counts {counts}   errors: {extras['contended_errors']}")  # fmt: skip
    if result["profile"]:
        print(result["profile"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput phase (and per latency phase)")
    parser.add_argument("--ops", type=int, default=500, help="at most this many timed puts per latency figure")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_paxos", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--durability", choices=("fsync", "memory"), default="fsync")
    parser.add_argument("--no-etcd", action="store_true")
    parser.add_argument("--json", action="store_true", help="print every round's figures and the table as JSON too")
    parser.add_argument("--profile", choices=("fresh", "again"), help="cProfile node1 during those puts (round 0)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    service = None
    if not args.no_etcd:
        from benchmarks.baselines.service import BaselineService

        service = BaselineService(("etcd",), baseline_settings(args))
    try:
        result = measure(args, service)
    finally:
        stop_all_distributed()
        if service is not None:
            service.close()
    table = rows(result, service)
    report(args, result, table)
    if args.json:
        print(json.dumps({**result, "table": [row.as_dict() for row in table]}))
    return 0


def baseline_settings(args: argparse.Namespace) -> Any:
    """etcd's phase sizes, matched to ours."""
    from benchmarks.baselines import BenchSettings

    return BenchSettings(clients=CLIENTS, seconds=args.seconds, latency_ops=args.ops,
                         latency_seconds=args.seconds / 3, warmup_ops=20, warmup_seconds=1.0)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
