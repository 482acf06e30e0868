"""Handshake floods: how long a legitimate peer takes to join a node that junk connections hammer.

``python -m benchmarks.bench_handshake_flood [--rate N] [--joins K] [--seconds S]``

One node (``python -m paxtor node 1``, default timings: a 5 s handshake
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
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import structlog

from paxtor.actors.distribution import start_distributed
from paxtor.actors.framing import frame
from paxtor.actors.handshake import NONCE_SIZE, PROTOCOL_VERSION, Hello, pack_message
from paxtor.testing import LocalCluster

REPO = Path(__file__).resolve().parent.parent
CONDITIONS = (("quiet", None, None), ("silent/other", "silent", "127.0.0.2"), ("silent/same", "silent", "127.0.0.1"),
              ("hello/same", "hello", "127.0.0.1"))
FLOOD_LOG_EVENTS = ("handshake_failed", "handshake_failures_suppressed", "handshake_refused")


# -- the flooder (a child process) ----------------------------------------------------------------


def flood(port: int, rate: float, seconds: float, source: str, mode: str, hold: float) -> None:
    """Open `rate` connections per second to 127.0.0.1:`port` from `source` for `seconds`;
    each says nothing (or a Hello) and is closed after `hold` seconds (past the node's deadline)."""
    held: list[tuple[float, Any]] = []
    started = time.monotonic()
    opened = 0
    rng = random.Random(1)
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while opened < due:
            opened += 1
            gevent.spawn(_junk, port, source, mode, rng.randrange(1 << 30), held)
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


def measure(one: LocalCluster, condition: tuple[str, str | None, str | None], args: argparse.Namespace,
            counter: list[int]) -> dict[str, Any]:
    _, mode, source = condition
    node = one.processes["node1"]
    logged_before = sum(len(node.events(e)) for e in FLOOD_LOG_EVENTS)
    flooder = None
    if mode is not None:
        flooder = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_handshake_flood", "--flood", str(one.base_port + 1),
             str(args.rate), str(args.seconds), source, mode],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        time.sleep(min(2.0, args.seconds / 4))  # let the flood fill the node's slots first
    started = time.monotonic()
    joins = []
    for _ in range(args.joins):
        counter[0] += 1
        joins.append(join_once(one.base_port, one.cookie, counter[0]))
    measured = time.monotonic() - started
    opened = 0
    if flooder is not None:
        out, _ = flooder.communicate(timeout=args.seconds + 30)
        opened = int(out.strip() or 0)
    flood_seconds = args.seconds if flooder is not None else measured
    logged = sum(len(node.events(e)) for e in FLOOD_LOG_EVENTS) - logged_before
    return {"joins": joins, "opened": opened, "log_lines_per_s": logged / flood_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_handshake_flood", description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0, help="junk connections per second")
    parser.add_argument("--joins", type=int, default=10, help="client joins timed per condition")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each flood lasts")
    parser.add_argument("--flood", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.flood:
        port, rate, seconds, source, mode = args.flood
        flood(int(port), float(rate), float(seconds), source, mode, hold=6.0)
        return 0
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
