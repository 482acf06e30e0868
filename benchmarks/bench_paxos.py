"""PaxosKV: put latency and throughput on three voter nodes, vs the remote call round trip and etcd.

``python -m benchmarks.bench_paxos [--seconds S] [--ops N] [--durability memory,fsync] [--no-etcd] [--profile]``

Three ``python -m paxtor node N --no-shell`` OS processes on 127.0.0.1 (the
voters), for each durability mode ("fsync": acceptor log on disk in a temp
dir; "memory"). This process joins as a plain distributed node ("node9") and
runs the measurements INSIDE node1 (a remote spawn of this module's
functions), so what is timed is the API as an application on a voter uses it:

  call rtt        a GenServer call from node1 to a server on node2 (the unit)
  put fresh       `paxos.put` of a fresh key: phase 1 + phase 2 (2 RTT + fsync)
  put again       `paxos.put` on a key node1 wrote last: the 1-RTT path
  puts/s          8 client processes (round-robin over the 3 nodes), distinct keys
  one key         8 clients (round-robin over the 3 nodes) incrementing ONE key:
                  rounds/s and how evenly the clients got through (Jain's index,
                  1.0 = perfectly even; proposer fairness across nodes)

Targets (ratios to the call rtt of the same run): fresh put <= 3x, the
1-RTT path <= 1.5x (memory durability). etcd: `benchmarks.baselines` runs a
3-member etcd in the same run, when installed; its headline has
``put_median_ms`` and ``puts_per_s``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
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


def latencies(reply_to: Any, run: str, ops: int, seconds: float, profile: str | None) -> None:
    """On node1: the call rtt, fresh puts and 1-RTT puts, interleaved in rounds; report them."""
    paxos.wait_for_quorum(30)
    from benchmarks import bench_paxos as this

    spawn(this.start_echo, self_pid(), node="node2")
    echo = receive(lambda m: isinstance(m, tuple) and m[0] == "echo", timeout=30)[1]
    profiler: Any = cProfile.Profile() if profile else None
    results: dict[str, list[dict[str, float]]] = {"call": [], "fresh": [], "again": []}
    paxos.put((run, "again"), 0)
    for r in range(3):  # interleaved rounds: the machine is noisy
        results["call"].append(_timed(lambda i: call(echo, i), ops, seconds / 3))
        if profile == "fresh":
            profiler.enable()
        results["fresh"].append(_timed(lambda i, r=r: paxos.put((run, "fresh", r, i), i), ops, seconds / 3))
        if profile == "fresh":
            profiler.disable()
        if profile == "again":
            profiler.enable()
        results["again"].append(_timed(lambda i: paxos.put((run, "again"), i), ops, seconds / 3))
        if profile == "again":
            profiler.disable()
    best = {name: min(rounds, key=lambda s: s["median_ms"]) for name, rounds in results.items()}
    text = None
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        text = out.getvalue()
    send(reply_to, ("latencies", best, text))


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


def measure(durability: str, ops: int, seconds: float, profile: str | None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-paxos-{durability}-"))
    base = _free_base()
    nodes = NodeProcesses(durability, base, workdir)
    dist = start_distributed("node9", base_port=base, cluster_size=3, cookie=COOKIE)
    try:
        if not dist.wait_for_nodes(NODES, 30):
            raise RuntimeError(f"the nodes did not come up; logs in {workdir}")
        run = f"r{time.time_ns()}"

        # functions spawned on the nodes travel by name: this module's, never __main__'s
        from benchmarks import bench_paxos as this

        def body() -> dict[str, Any]:
            spawn(this.latencies, self_pid(), run, ops, seconds, profile, node="node1")
            _, best, text = receive(lambda m: isinstance(m, tuple) and m[0] == "latencies", timeout=300)
            start_at = time.time() + 1.0
            for client in range(CLIENTS):
                spawn(this.put_client, self_pid(), run, client, start_at, seconds, node=NODES[client % 3])
            gevent.sleep(max(0.0, start_at - time.time()))
            cpu_before = nodes.cpu_seconds()
            counts = [
                receive(lambda m: isinstance(m, tuple) and m[0] == "client_done", timeout=300) for _ in range(CLIENTS)
            ]
            cores = (nodes.cpu_seconds() - cpu_before) / seconds
            done = sum(c[2] for c in counts)
            start_at = time.time() + 1.0
            for client in range(CLIENTS):
                spawn(this.contend_client, self_pid(), run, client, start_at, seconds, node=NODES[client % 3])
            contended = [
                receive(lambda m: isinstance(m, tuple) and m[0] == "contend_done", timeout=300) for _ in range(CLIENTS)
            ]
            contended.sort(key=lambda c: c[1])
            return {
                "contended_per_s": sum(c[2] for c in contended) / seconds,
                "contended_counts": [c[2] for c in contended],
                "contended_errors": sum(c[3] for c in contended),
                "latency": best,
                "puts_per_s": done / seconds,
                "errors": sum(c[3] for c in counts),
                "server_cores": cores,
                "profile": text,
            }

        return dist.run(body)
    finally:
        dist.stop()
        nodes.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _etcd() -> dict[str, Any] | None:
    try:
        from benchmarks.baselines import baseline_results
    except ImportError:
        return None
    result = baseline_results(("etcd",)).get("etcd", {})
    return result.get("headline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_paxos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--durability", default="memory,fsync")
    parser.add_argument("--no-etcd", action="store_true")
    parser.add_argument("--profile", choices=("fresh", "again"), help="cProfile node1 during those puts")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures: dict[str, dict[str, Any]] = {}
    for durability in args.durability.split(","):
        figures[durability] = result = measure(durability, args.ops, args.seconds, args.profile)
        lat = result["latency"]
        rtt = lat["call"]["median_ms"]
        print(f"-- durability={durability}")
        print(f"   call rtt      median {rtt:7.3f} ms  p99 {lat['call']['p99_ms']:7.3f} ms")
        for name, label in (("fresh", "put fresh"), ("again", "put 1-RTT")):
            s = lat[name]
            print(
                f"   {label:<12}  median {s['median_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms"
                f"   = {s['median_ms'] / rtt:5.2f}x call rtt"
            )
        print(
            f"   puts/s ({CLIENTS} clients, distinct keys): {result['puts_per_s']:8.0f}"
            f"   node CPU {result['server_cores']:.2f} cores   errors: {result['errors']}"
        )
        counts = result["contended_counts"]
        print(
            f"   one key ({CLIENTS} clients on 3 nodes): {result['contended_per_s']:6.0f} rounds/s"
            f"   Jain {jain(counts):.3f}   counts {counts}   errors: {result['contended_errors']}"
        )
        if result["profile"]:
            print(result["profile"])
    stop_all_distributed()
    if not args.no_etcd:
        etcd = _etcd()
        if etcd is None:
            print("-- etcd: not available (see benchmarks.baselines)")
        else:
            fsync = figures.get("fsync") or next(iter(figures.values()))
            print(
                f"-- etcd (same run): put median {etcd['put_median_ms']:.3f} ms, {etcd['puts_per_s']:.0f} puts/s;"
                f" paxos fsync put fresh ="
                f" {fsync['latency']['fresh']['median_ms'] / etcd['put_median_ms']:.2f}x etcd latency,"
                f" {fsync['puts_per_s'] / etcd['puts_per_s']:.2f}x etcd throughput"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
