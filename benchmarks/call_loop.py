"""A remote GenServer call in a loop, both nodes in this one OS process: CPU per call.

``python -m benchmarks.call_loop [--calls N] [--repeats R] [--profile]``

Node bench1 calls an Echo server of node bench2 over loopback TCP, as
`bench_distribution` does, but both nodes run in this process, so
``time.process_time`` over the loop is the CPU of both sides of every call
(no child to read from /proc) and steadier than a two-process run on a
shared machine: the figure for an A/B of a change to the call path (run the
two trees alternately). ``--profile``: the Python function calls per round
trip under cProfile, both sides, and the most frequent ones.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from typing import Any

from benchmarks.bench_distribution import COOKIE, REQUEST, Echo, _quiet_logs
from paxtor.actors import call
from paxtor.actors.distribution import start_distributed, stop_all_distributed


def _loop(server: Any, calls: int) -> None:
    for _ in range(calls):
        call(server, REQUEST)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.call_loop", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timed loop")
    parser.add_argument("--repeats", type=int, default=5, help="timed loops (the median is reported)")
    parser.add_argument("--profile", action="store_true", help="count function calls per round trip instead")
    args = parser.parse_args(argv)
    _quiet_logs()
    try:
        server_node = start_distributed("bench2", port=0, cookie=COOKIE, heartbeat_interval=1.0,
                                        heartbeat_timeout=30.0)
        server_node.run(Echo.start, name="echo")
        dist = start_distributed("bench1", port=0, seeds=[f"127.0.0.1:{server_node.port}"], cookie=COOKIE,
                                 heartbeat_interval=1.0, heartbeat_timeout=30.0)
        assert dist.wait_for_nodes(["bench2"], 10), "the server node did not connect"
        echo = dist.run(call, ("echo", "bench2"), "pid")
        dist.run(_loop, echo, 2_000)  # warm up
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            dist.run(_loop, echo, args.calls)
            profiler.disable()
            stats = pstats.Stats(profiler)
            print(f"{stats.total_calls / args.calls:.1f} function calls per round trip")  # type: ignore[attr-defined]
            stats.sort_stats("ncalls").print_stats(40)
            return 0
        figures = []
        for _ in range(args.repeats):
            started = time.process_time()
            dist.run(_loop, echo, args.calls)
            figures.append((time.process_time() - started) / args.calls * 1e6)
        print(f"CPU per remote call, both nodes: {statistics.median(figures):.2f} us "
              f"(median of {args.repeats} loops of {args.calls}; {min(figures):.2f}-{max(figures):.2f})")
    finally:
        stop_all_distributed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
