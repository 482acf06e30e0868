"""Tombstone collection: what fresh lock keys leave behind, and what collecting them costs.

``python -m benchmarks.bench_collection [--keys N] [--ttl S]``. Three durable
voters in this OS process; clients on every node lock and unlock N distinct
keys (each used once: the worst case for tombstones), twice in one run:

  kept        ``tombstone_ttl=None``: every key stays on the voters (the baseline)
  collected   ``tombstone_ttl=S``: the voters drop them; the run waits until
              no voter holds any and reports how long that took, in ttls

Figures: keys each voter holds after the churn and after the wait, and the
lock+unlock rate while the collector runs, as a ratio to the kept run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from typing import Any

import gevent
import structlog

import paxtor
from paxtor.actors import call
from paxtor.testing import in_process_cluster

NODES = ("node1", "node2", "node3")


def churn(count: int, prefix: str) -> None:
    for i in range(count):
        paxtor.lock((prefix, i))
        paxtor.unlock((prefix, i))


def acceptor_keys() -> int:
    """How many keys this node's acceptor holds (values and tombstones)."""
    return call("paxos_acceptor", ("key_count",))


def run(keys: int, ttl: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-collection-") as data_dir:
        with in_process_cluster(3, durability="fsync", data_dir=data_dir, tombstone_ttl=ttl) as cluster:
            started = time.monotonic()
            jobs = [
                gevent.spawn(cluster[name].run, churn, keys // 3, name, timeout=None) for name in NODES
            ]
            gevent.joinall(jobs, raise_error=True)
            rate = 3 * (keys // 3) / (time.monotonic() - started)
            held = [cluster[name].run(acceptor_keys) for name in NODES]
            result: dict[str, Any] = {"rate": rate, "held": held}
            if ttl is not None:
                waited = time.monotonic()
                while any(cluster[name].run(acceptor_keys) for name in NODES):
                    gevent.sleep(0.1)  # nothing announces the last drop: poll the counts
                    if time.monotonic() - waited > 60 * ttl:
                        break
                result["after"] = [cluster[name].run(acceptor_keys) for name in NODES]
                result["drain_s"] = time.monotonic() - waited
            return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_collection", description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=3000)
    parser.add_argument("--ttl", type=float, default=2.0)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    kept = run(args.keys, None)
    collected = run(args.keys, args.ttl)
    print(f"{args.keys} lock+unlock on distinct keys, 3 durable voters in one process:")
    print(f"  kept       {kept['rate']:.0f}/s   keys held per voter {kept['held']}")
    print(
        f"  collected  {collected['rate']:.0f}/s = {collected['rate'] / kept['rate']:.2f}x kept   "
        f"held {collected['held']} -> {collected['after']} after {collected['drain_s']:.1f} s "
        f"({collected['drain_s'] / args.ttl:.1f} ttl, ttl {args.ttl} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
