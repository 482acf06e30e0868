"""`python -m tests.chaos --runs N --seed S`: N chaos runs, seeds S, S+1, ...; exit 1 on any failure.

Run from the repository root (`make chaos RUNS=N`). A run's fault schedule is a
function of its seed; the interleavings are real, so a replay repeats the
faults, not necessarily the failure.
"""

from __future__ import annotations

import argparse
import sys

from paxtor.cli import configure_logging
from tests.chaos.nemesis import KINDS
from tests.chaos.report import format_run, format_summary
from tests.chaos.runner import run_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--window", type=float, default=12.0, help="seconds of faults per run")
    parser.add_argument("--quiet", type=float, default=8.0, help="seconds of workload after the final heal")
    parser.add_argument("--faults", default=None, help=f"comma-separated kinds to use ({','.join(KINDS)}); default: swarm")
    args = parser.parse_args(argv)
    kinds = tuple(args.faults.split(",")) if args.faults else None
    if kinds and set(kinds) - set(KINDS):
        parser.error(f"unknown fault kinds: {sorted(set(kinds) - set(KINDS))}")
    if args.seed is None:
        import random

        args.seed = random.randrange(1_000_000)
    configure_logging(level="error")
    results = []
    for seed in range(args.seed, args.seed + args.runs):
        result = run_once(seed, window=args.window, quiet=args.quiet, kinds=kinds)
        print(format_run(result), flush=True)
        results.append(result)
    print(format_summary(results), flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
