"""What seeing the cluster costs: `status` as held locks grow, and the web view's load.

``python -m benchmarks.bench_observe [--sizes 100,10000,100000] [--seconds S] [--rounds R]``

Three voters node1..node3 run as ``python -m paxtor node`` OS processes on
127.0.0.1; this process joins as the client node4.

  status          node4's processes hold N locks (32 holders, memory durability:
                  the setup is N rounds, and what is measured does not touch
                  the disk), for each N of ``--sizes`` in turn. Measured: the
                  gathering through node1 as ``paxtor status`` does it
                  (``cluster_info(via="node1")`` from node4, median of 3), and
                  the whole command (``python -m paxtor status --json``, one
                  run, Python's start and the join included). Ratios against
                  the same with no lock held, and microseconds per lock.
  web view        durable voters; 8 processes on node4 take turns on one lock
                  (lock, unlock: every grant is a handoff) for ``--seconds``
                  per phase, in alternating phases: "off" (no web view) and
                  "on" (node4 serves the web view and a separate OS process
                  polls /api/cluster and /metrics every second, twice as often
                  as the page does), ``--rounds`` of each. Figures: the median
                  handoffs/s on, as a ratio to off (aim: >= 0.95), and the CPU
                  time of every process of the cluster (voters, this one) per
                  handoff, on against off: the ratio that other load on the
                  machine disturbs least. The web view runs in the same node
                  as the lock clients: the sampler, the gatherings and the
                  HTTP serving share their hub.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from typing import Any

import gevent
import gevent.subprocess
import structlog

import paxtor
from benchmarks.process_cpu import cpu_seconds
from paxtor.actors import receive, send, spawn
from paxtor.observe.web import start_web
from paxtor.testing import LocalCluster, free_base_port

HOLDERS = 32
CONTENDERS = 8

POLLER = """
import sys, time, urllib.request
base, stop_at = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < stop_at:
    started = time.monotonic()
    for path in ("api/cluster", "metrics"):
        urllib.request.urlopen(base + path, timeout=30).read()
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
"""


def _quiet() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def _start(cluster: LocalCluster) -> paxtor.Node:
    cluster.start_all()
    for proc in cluster.processes.values():
        proc.wait_for_log("quorum_reached", timeout=60)
    node = cluster.join(4, durability="memory")
    paxtor.testing.wait_for_nodes(node, cluster.voters, 30)
    paxtor.testing.wait_for_quorum([node], 30)
    return node


# -- status ---------------------------------------------------------------------------------


def _holder(keys: range, prefix: str, parent: Any) -> None:
    for i in keys:
        paxtor.lock((prefix, i))
    send(parent, ("held", len(keys)))
    receive()


def _hold_more(node: paxtor.Node, count: int, prefix: str) -> None:
    """`count` more locks held by `HOLDERS` processes of `node` (they live until the node stops)."""

    def run() -> None:
        me = paxtor.actors.self_pid()
        per = -(-count // HOLDERS)
        starts = range(0, count, per)
        for start in starts:
            spawn(_holder, range(start, min(count, start + per)), prefix, me)
        for _ in starts:
            receive(lambda m: isinstance(m, tuple) and m[0] == "held")

    node.run(run, timeout=None)


def _gather_seconds(node: paxtor.Node, runs: int = 3) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        info = node.run(lambda: paxtor.cluster_info(via="node1", timeout=300), timeout=None)
        times.append(time.perf_counter() - started)
        count = len(info.locks)
    return statistics.median(times), count


def _command_seconds(cluster: LocalCluster) -> float:
    argv = [sys.executable, "-m", "paxtor", "status", "--json", "--timeout", "300",
            "--base-port", str(cluster.base_port)]  # fmt: skip
    started = time.perf_counter()
    done = gevent.subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"paxtor status failed: {done.stderr[-500:]}")
    return took


def bench_status(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    with LocalCluster(3, flags=["--durability", "memory"], prefix="bench-observe-") as cluster:
        node = _start(cluster)
        _gather_seconds(node, 1)  # warm up
        base_gather, _ = _gather_seconds(node)
        base_command = _command_seconds(cluster)
        print(f"  no lock held: gathering {base_gather * 1e3:.1f} ms, command {base_command:.2f} s", flush=True)
        held = 0
        for size in sizes:
            started = time.monotonic()
            _hold_more(node, size - held, f"k{size}")
            held = size
            setup = time.monotonic() - started
            gather_s, seen = _gather_seconds(node)
            command_s = _command_seconds(cluster)
            row = {
                "locks": size, "seen": seen, "gather_s": round(gather_s, 4), "command_s": round(command_s, 3),
                "gather_ratio": round(gather_s / base_gather, 1), "command_ratio": round(command_s / base_command, 2),
                "us_per_lock": round((gather_s - base_gather) / size * 1e6, 1), "setup_s": round(setup, 1),
            }  # fmt: skip
            rows.append(row)
            print(
                f"  {size:>7,} locks held: gathering {gather_s * 1e3:8.1f} ms ({row['gather_ratio']}x empty,"
                f" {row['us_per_lock']} us/lock), command {command_s:6.2f} s ({row['command_ratio']}x empty);"
                f" {seen:,} seen",
                flush=True,
            )
    return rows


# -- the web view's load ----------------------------------------------------------------------


def _contender(stop_at: float, parent: Any) -> None:
    count = 0
    while time.monotonic() < stop_at:
        paxtor.lock("hot")
        paxtor.unlock("hot")
        count += 1
    send(parent, ("count", count))


def _handoffs_per_second(node: paxtor.Node, seconds: float, cluster: LocalCluster) -> tuple[float, float]:
    """Handoffs/s of `CONTENDERS` processes on one lock, and the CPU seconds per handoff of
    every process of the cluster (the voters and this one, which hosts the web view)."""

    def run() -> int:
        me = paxtor.actors.self_pid()
        stop_at = time.monotonic() + seconds
        for _ in range(CONTENDERS):
            spawn(_contender, stop_at, me)
        return sum(receive(lambda m: isinstance(m, tuple) and m[0] == "count")[1] for _ in range(CONTENDERS))

    pids = [proc.pid for proc in cluster.processes.values()]
    started, cpu = time.monotonic(), time.process_time() + cpu_seconds(pids)
    total = node.run(run, timeout=None)
    used = time.process_time() + cpu_seconds(pids) - cpu
    return total / (time.monotonic() - started), used / max(1, total)


def bench_web_view(seconds: float, rounds: int) -> dict[str, Any]:
    with LocalCluster(3, prefix="bench-observe-") as cluster:
        node = _start(cluster)
        _handoffs_per_second(node, 1.0, cluster)  # warm up
        off, on, off_cpu, on_cpu = [], [], [], []
        for _ in range(rounds):
            rate, cpu = _handoffs_per_second(node, seconds, cluster)
            off.append(rate)
            off_cpu.append(cpu)
            port = free_base_port(range(1, 2)) + 1
            view = start_web(node.dist.local, f"127.0.0.1:{port}")
            poller = gevent.subprocess.Popen([sys.executable, "-c", POLLER, view.url, str(seconds + 2)])
            try:
                gevent.sleep(1.0)  # the first page load and gathering
                rate, cpu = _handoffs_per_second(node, seconds, cluster)
                on.append(rate)
                on_cpu.append(cpu)
            finally:
                poller.kill()
                poller.wait()
                view.stop()
            print(f"  off {off[-1]:7.1f} handoffs/s ({off_cpu[-1] * 1e3:.3f} ms CPU each),"
                  f" on {on[-1]:7.1f} handoffs/s ({on_cpu[-1] * 1e3:.3f} ms CPU each)", flush=True)  # fmt: skip
        med = statistics.median
        result = {
            "off": round(med(off), 1),
            "on": round(med(on), 1),
            "ratio": round(med(on) / med(off), 3),
            "cpu_ms_per_handoff_off": round(med(off_cpu) * 1e3, 4),
            "cpu_ms_per_handoff_on": round(med(on_cpu) * 1e3, 4),
            "cpu_ratio": round(med(on_cpu) / med(off_cpu), 3),
        }
        print(
            f"  median: off {result['off']}, on {result['on']} handoffs/s: ratio {result['ratio']};"
            f" CPU per handoff (all processes) on/off: {result['cpu_ratio']}",
            flush=True,
        )
        return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_observe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,10000,100000", help="held locks to measure status at")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each web view phase")
    parser.add_argument("--rounds", type=int, default=3, help="phases of each kind")
    parser.add_argument("--skip-status", action="store_true")
    parser.add_argument("--skip-web", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    _quiet()
    figures: dict[str, Any] = {}
    if not args.skip_status:
        print("status, as held locks grow:", flush=True)
        figures["status"] = bench_status([int(s) for s in args.sizes.split(",")])
    if not args.skip_web:
        print("lock handoffs/s with the web view off and on (polled):", flush=True)
        figures["web_view"] = bench_web_view(args.seconds, args.rounds)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
