"""Baseline benchmarks alone: etcd 3.4 and ZooKeeper 3-member clusters on loopback.

``python -m benchmarks.bench_baselines`` prints the table Paxtor's own
benchmarks divide by. Set ``PAXTOR_BENCH_INSTALL=1`` (or pass ``--install``)
to let it ``apt-get install`` missing servers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.baselines import BASELINE_NAMES, BenchSettings, baseline_results, format_table

# Figures from an earlier run on this kind of machine (2 cores, loopback,
# fsync on), printed beside today's only as a sanity check; never a ratio base.
EARLIER_REFERENCE: dict[str, dict[str, float]] = {
    "etcd": {
        "put_median_ms": 0.82,
        "puts_per_s": 2100.0,
        "lock_unlock_median_ms": 1.86,
        "contended_handoffs_per_s": 80.0,
        "distinct_lock_unlock_per_s": 884.0,
    },
    "zookeeper": {
        "lock_unlock_median_ms": 1.76,
        "contended_handoffs_per_s": 417.0,
        "distinct_lock_unlock_per_s": 785.0,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_baselines", description=__doc__)
    parser.add_argument("--only", default=",".join(BASELINE_NAMES), help="comma-separated subset")
    parser.add_argument("--seconds", type=float, default=BenchSettings.seconds, help="per concurrent run")
    parser.add_argument("--clients", type=int, default=BenchSettings.clients)
    parser.add_argument(
        "--install", dest="install", action="store_true", default=None, help="apt-get if missing"
    )
    parser.add_argument("--json", action="store_true", help="print the full result dicts as JSON")
    # ignore flags meant for other benchmarks when run by `python -m benchmarks`
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    settings = BenchSettings(clients=args.clients, seconds=args.seconds)
    names = tuple(n for n in args.only.split(",") if n)
    started = time.monotonic()
    results = baseline_results(names, settings, args.install)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    print("Baselines: 3-member clusters on 127.0.0.1, fsync on, same machine and run")
    print(format_table(results, EARLIER_REFERENCE))
    print(f"whole baseline run: {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
