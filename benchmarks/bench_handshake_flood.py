"""Handshake floods: how long a legitimate peer takes to join, or a restarted voter to
reconnect to, a node that junk connections hammer.

``python -m benchmarks.bench_handshake_flood [--rate N] [--joins K] [--seconds S]
[--restarts R] [--flood-nodes node1,...] [--only joins|restart]``

Joins: one node (``python -m paxtor node 1``, default timings: a 5 s handshake
deadline) as an OS process; a flooder, another OS process, opens RATE
connections per second that never finish the handshake, from a peer
without the cookie; this process joins the node K times as a fresh client
node and times each join (start to the node being up), under each
condition, in the same run:

  quiet          no flood (the baseline)
  silent/other   connections that never say a word, from 127.0.0.2
  silent/same    the same from 127.0.0.1, the client's own address
  hello/same     connections that say Hello (no cookie needed) and stall, 127.0.0.1

Figures: the median and worst join per condition, their ratio to quiet,
and how many lines about refused handshakes the node logged per second of
flood (``handshake_failed``, ``handshake_failures_suppressed`` and
``handshake_refused``): a flood must not turn into one log line per connection.

Restarts: three voters (``python -m paxtor node N``, durable, default timings)
as OS processes, the flood spread over every voter's port (``--flood-nodes``):
with one node flooded, the connection mostly comes up through the other
direction's dial and the flood hides (before the slots: at worst 2.3 s with
node1 alone flooded, 28 s with all three). Under each condition, R times: node2 is killed -9,
node1 and node3 log it down, and node2 is started again with the same command
(same name, same data directory). Timed from that start, from the nodes' own
logs (one host, one clock): node2's ``node_started`` (Python's start); the
``node_up`` of node2 that node1 and node3 log, the later of the two being
"both see it"; and node2's ``quorum_reached``. The flooder keeps going until
the restarts are done. Against the listener as it was before the handshake
slots (commit a872265's parent), two runs gave medians of 1.1-13 s under a
flood and worst cases of 28 s and 91 s until both saw node2 again (the
issue's 10.9 s); figures of today in the README, "Configuration".
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.socket
import structlog

from paxtor.actors.distribution import start_distributed
from paxtor.actors.framing import frame
from paxtor.actors.handshake import NONCE_SIZE, PROTOCOL_VERSION, Hello, pack_message
from paxtor.testing import LocalCluster, wait_until

REPO = Path(__file__).resolve().parent.parent
CONDITIONS = (("quiet", None, None), ("silent/other", "silent", "127.0.0.2"), ("silent/same", "silent", "127.0.0.1"),
              ("hello/same", "hello", "127.0.0.1"))
FLOOD_LOG_EVENTS = ("handshake_failed", "handshake_failures_suppressed", "handshake_refused")


# -- the flooder (a child process) ----------------------------------------------------------------


def flood(ports: list[int], rate: float, seconds: float, source: str, mode: str, hold: float) -> None:
    """Open `rate` connections per second, to the 127.0.0.1 `ports` in turn, from `source`
    for `seconds` (or until SIGTERM); each says nothing (or a Hello) and is closed after
    `hold` seconds (past the node's deadline). Prints how many it opened."""
    held: list[tuple[float, Any]] = []
    started = time.monotonic()
    opened = 0
    rng = random.Random(1)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    while time.monotonic() - started < seconds and not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while opened < due:
            opened += 1
            gevent.spawn(_junk, ports[opened % len(ports)], source, mode, rng.randrange(1 << 30), held)
        now = time.monotonic()
        while held and now - held[0][0] > hold:
            held.pop(0)[1].close()
        gevent.sleep(0.002)
    for _, sock in held:
        sock.close()
    print(opened, flush=True)


def _junk(port: int, source: str, mode: str, n: int, held: list[tuple[float, Any]]) -> None:
    sock = gevent.socket.socket()
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        if mode == "hello":
            hello = Hello(PROTOCOL_VERSION, f"junk{n}", 1, os.urandom(NONCE_SIZE))
            sock.sendall(frame(pack_message(hello)))
    except OSError:
        sock.close()
        return
    held.append((time.monotonic(), sock))


# -- the measuring side --------------------------------------------------------------------------


def join_once(base_port: int, cookie: str, number: int) -> float:
    started = time.monotonic()
    dist = start_distributed(f"client{number}", port=0, base_port=base_port, cluster_size=1, cookie=cookie)
    try:
        if not dist.wait_for_nodes(["node1"], 60):
            return float("inf")
        return time.monotonic() - started
    finally:
        dist.stop()


class Flood:
    """A running flooder process (see `flood`); `opened` once it is done."""

    def __init__(self, ports: list[int], rate: float, seconds: float, source: str, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_handshake_flood", "--flood", ",".join(map(str, ports)),
             str(rate), str(seconds), source, mode],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        self.started = time.monotonic()
        self.seconds = seconds
        self.opened = 0
        self.lasted = 0.0

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self, early: bool) -> None:
        """Wait for its end (SIGTERM it first if `early`); how many it opened, how long it ran."""
        if early and self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 30)
        finally:
            if self.running():
                self.proc.kill()
                self.proc.wait()
        self.lasted = time.monotonic() - self.started
        self.opened = int(out.strip() or 0)


@contextmanager
def flooding(ports: list[int], mode: str | None, source: str | None, args: argparse.Namespace, seconds: float,
             early: bool = False) -> Iterator[Flood | None]:
    """A flood of the node `ports` under the condition (none for quiet), their slots filled first."""
    if mode is None or source is None:
        yield None
        return
    flooder = Flood(ports, args.rate, seconds, source, mode)
    try:
        time.sleep(min(2.0, seconds / 4))  # let the flood fill the node's slots first
        yield flooder
    finally:
        flooder.finish(early)


def measure(one: LocalCluster, condition: tuple[str, str | None, str | None], args: argparse.Namespace,
            counter: list[int]) -> dict[str, Any]:
    _, mode, source = condition
    node = one.processes["node1"]
    logged_before = sum(len(node.events(e)) for e in FLOOD_LOG_EVENTS)
    started = time.monotonic()
    joins = []
    with flooding([one.base_port + 1], mode, source, args, args.seconds) as flooder:
        for _ in range(args.joins):
            counter[0] += 1
            joins.append(join_once(one.base_port, one.cookie, counter[0]))
        measured = time.monotonic() - started
    flood_seconds = args.seconds if flooder is not None else measured
    logged = sum(len(node.events(e)) for e in FLOOD_LOG_EVENTS) - logged_before
    return {"joins": joins, "opened": flooder.opened if flooder else 0, "log_lines_per_s": logged / flood_seconds}


# -- a restarted voter -----------------------------------------------------------------------------


def _when(event: dict[str, Any]) -> float:
    """A log line's wall-clock time (the nodes log ISO timestamps in UTC)."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _peer_events(cluster: LocalCluster, node: str, event: str, peer: str) -> list[dict[str, Any]]:
    return [e for e in cluster.processes[node].events(event) if e.get("peer") == peer]


def restart_once(cluster: LocalCluster, victim: str = "node2", wait: float = 120.0) -> dict[str, float]:
    """Kill -9 `victim`, start it again once the others logged it down; seconds from that start."""
    others = [n for n in cluster.voters if n != victim]
    downs = {n: len(_peer_events(cluster, n, "node_down", victim)) for n in others}
    ups = {n: len(_peer_events(cluster, n, "node_up", victim)) for n in others}
    cluster.kill(victim)
    for n in others:
        wait_until(lambda n=n: len(_peer_events(cluster, n, "node_down", victim)) > downs[n], wait)
    started = time.time()
    proc = cluster.restart(victim)  # the same command line: same name, same data directory
    seen = {n: wait_until(lambda n=n: _peer_events(cluster, n, "node_up", victim)[ups[n]:], wait)[0] for n in others}
    quorum = proc.wait_for_log("quorum_reached", wait)
    result = {"started": _when(proc.wait_for_log("node_started", wait)) - started,
              "quorum": _when(quorum) - started}
    for n, event in seen.items():
        result[n] = _when(event) - started
    result["both"] = max(result[n] for n in others)
    return result


def measure_restarts(cluster: LocalCluster, condition: tuple[str, str | None, str | None],
                     args: argparse.Namespace) -> dict[str, Any]:
    _, mode, source = condition
    node1 = cluster.processes["node1"]
    logged_before = sum(len(node1.events(e)) for e in FLOOD_LOG_EVENTS)
    started = time.monotonic()
    runs: list[dict[str, float]] = []
    cap = args.restarts * 60.0  # the flooder stops earlier: when the restarts are done
    ports = [cluster.base_port + int(n[4:]) for n in args.flood_nodes]
    with flooding(ports, mode, source, args, cap, early=True) as flooder:
        for _ in range(args.restarts):
            runs.append(restart_once(cluster))
        if flooder is not None and not flooder.running():
            raise RuntimeError("the flood ended before the restarts did")
    lasted = flooder.lasted if flooder is not None else time.monotonic() - started
    logged = sum(len(node1.events(e)) for e in FLOOD_LOG_EVENTS) - logged_before
    return {"runs": runs, "opened": flooder.opened if flooder else 0, "log_lines_per_s": logged / lasted}


def run_joins(args: argparse.Namespace) -> None:
    counter = [0]
    with LocalCluster(1, flags=["--cluster-size", "1", "--durability", "memory"]) as one:
        one.start(1).wait_started()
        results = {name: measure(one, (name, mode, source), args, counter) for name, mode, source in CONDITIONS}
    quiet = statistics.median(results["quiet"]["joins"])
    print(f"{args.joins} joins per condition; floods of {args.rate:g} connections/s for {args.seconds:g} s")
    print(f"{'condition':14} {'median join':>12} {'worst join':>11} {'x quiet':>8} {'opened':>7} {'log lines/s':>12}")
    for name, result in results.items():
        joins = result["joins"]
        median = statistics.median(joins)
        print(f"{name:14} {median * 1e3:10.0f}ms {max(joins) * 1e3:9.0f}ms {median / quiet:8.1f} "
              f"{result['opened']:7d} {result['log_lines_per_s']:12.1f}")


def run_restarts(args: argparse.Namespace) -> None:
    with LocalCluster(3) as cluster:  # durable voters, default timings
        for proc in cluster.start_all():
            proc.wait_for_log("quorum_reached", 60)
        results = {name: measure_restarts(cluster, (name, mode, source), args) for name, mode, source in CONDITIONS}
    quiet = statistics.median(r["both"] for r in results["quiet"]["runs"])
    print(f"restarted voter: node2 of 3 durable voters killed -9 and started again (same name and data "
          f"directory) {args.restarts} times per condition; floods of {args.rate:g} connections/s in all hit "
          f"{', '.join(args.flood_nodes)}")
    print("seconds from node2's start: median (worst)")
    print(f"{'condition':14} {'node started':>13} {'node1 sees it':>14} {'node3 sees it':>14} {'both see it':>14} "
          f"{'quorum':>14} {'x quiet':>8} {'opened':>7} {'log lines/s':>12}")

    def cell(runs: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):.3f} ({max(values):.3f})"

    for name, result in results.items():
        runs = result["runs"]
        both = statistics.median(r["both"] for r in runs)
        print(f"{name:14} {cell(runs, 'started'):>13} {cell(runs, 'node1'):>14} {cell(runs, 'node3'):>14} "
              f"{cell(runs, 'both'):>14} {cell(runs, 'quorum'):>14} {both / quiet:8.1f} {result['opened']:7d} "
              f"{result['log_lines_per_s']:12.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_handshake_flood", description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0, help="junk connections per second")
    parser.add_argument("--joins", type=int, default=10, help="client joins timed per condition")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each flood of the joins lasts")
    parser.add_argument("--restarts", type=int, default=5, help="voter restarts timed per condition")
    parser.add_argument("--only", choices=("joins", "restart"), help="run one of the two parts")
    parser.add_argument("--flood-nodes", default="node1,node2,node3",
                        help="the voters the restart part floods (the rate is split between them)")
    parser.add_argument("--flood", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.flood_nodes = [n.strip() for n in args.flood_nodes.split(",") if n.strip()]
    if args.flood:
        ports, rate, seconds, source, mode = args.flood
        flood([int(p) for p in ports.split(",")], float(rate), float(seconds), source, mode, hold=6.0)
        return 0
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    if args.only in (None, "joins"):
        run_joins(args)
    if args.only in (None, "restart"):
        run_restarts(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
