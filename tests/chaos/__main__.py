"""`python -m tests.chaos --runs N --seed S`: N chaos runs, seeds S, S+1, ...; exit 1 on any failure.

Run from the repository root (`make chaos RUNS=N`). A run's shape (3 or 5
voters, clocks under faketime) and fault schedule are a function of its seed;
the interleavings are real, so a replay repeats the faults, not necessarily
the failure. A PNG per run goes to --plot-dir (needs matplotlib: the `chaos`
extra). --clock-beyond is a negative control: one voter's clock outside the
drift bound, where a violation is expected and does not fail the command.
--amnesia is the other: a voter whose data directory was wiped votes at once,
under the wipe_holder schedule (unless --faults says otherwise); every run
must then report lost writes or two holders, and the command fails if one
does not (the checkers would be blind to it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gevent

from paxtor.cli import configure_logging
from tests.chaos.nemesis import KINDS
from tests.chaos.report import format_run, format_summary
from tests.chaos.runner import BEYOND_RATE, abandon, run_once


def _interrupted(sig: int, results: list) -> None:
    """Ctrl-C / SIGTERM: remove the run's iptables chain, nodes and files; summarise the runs done."""
    abandon()
    print(f"\ninterrupted by signal {sig}; the run in progress was abandoned", flush=True)
    if results:
        print(format_summary(results), flush=True)
    os._exit(130)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--window", type=float, default=12.0, help="seconds of faults per run")
    parser.add_argument("--quiet", type=float, default=8.0, help="seconds of workload after the final heal")
    parser.add_argument(
        "--faults", default=None, help=f"comma-separated kinds to use ({','.join(KINDS)}); default: swarm"
    )
    parser.add_argument("--voters", type=int, choices=(3, 5), default=None, help="default: 3 for even seeds, 5 for odd")
    parser.add_argument("--clients", type=int, default=1, help="client node processes (default 1)")
    parser.add_argument("--no-clocks", action="store_true", help="no node under faketime")
    parser.add_argument(
        "--clock-beyond",
        type=float,
        nargs="?",
        const=BEYOND_RATE,
        default=None,
        metavar="RATE",
        help=f"negative control: one voter's clock at xRATE (default {BEYOND_RATE}), outside the drift bound",
    )
    parser.add_argument("--amnesia", action="store_true",
                        help="negative control: a voter whose data directory was wiped votes at once")
    parser.add_argument("--register-ops", choices=("mixed", "incr", "cas"), default="mixed",
                        help="register writes: blind increments and compare-and-set (default), or one of them")
    parser.add_argument(
        "--plot-dir", default="chaos-results", help="where the per-run PNGs go (default ./chaos-results)"
    )
    args = parser.parse_args(argv)
    kinds = tuple(args.faults.split(",")) if args.faults else None
    if kinds and set(kinds) - set(KINDS):
        parser.error(f"unknown fault kinds: {sorted(set(kinds) - set(KINDS))}")
    if args.seed is None:
        import random

        args.seed = random.randrange(1_000_000)
    configure_logging(level="error")
    results: list = []
    handlers = [gevent.signal_handler(sig, _interrupted, sig, results) for sig in (signal.SIGINT, signal.SIGTERM)]
    for seed in range(args.seed, args.seed + args.runs):
        result = run_once(seed, window=args.window, quiet=args.quiet, kinds=kinds, size=args.voters,
                          clients=args.clients, clock_beyond=args.clock_beyond, use_clocks=not args.no_clocks,
                          plot_dir=args.plot_dir, register_mode=args.register_ops, amnesia=args.amnesia)  # fmt: skip
        print(format_run(result), flush=True)
        results.append(result)
    for handler in handlers:
        handler.cancel()
    print(format_summary(results), flush=True)
    if args.clock_beyond:
        broke = [r.seed for r in results if not r.ok]
        print(f"negative control: {len(broke)} of {len(results)} runs found a violation"
              + (f" (seeds {broke})" if broke else " (the bound was exceeded without a visible break)"))
        return 0
    if args.amnesia:
        missed = [r.seed for r in results if not r.safety_violations]
        print(
            f"negative control (--amnesia): {len(results) - len(missed)} of {len(results)} runs"
            " found a safety violation"
            + (f"; MISSED in seeds {missed}" if missed else "")
        )
        return 1 if missed else 0
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
