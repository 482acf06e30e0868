"""The simulator's command line.

``python -m paxtor.sim --seeds N [--seed S] [--verbose] [--mutation NAME]
[--faults KIND,...] [--scenario NAME]``.

Runs seeds S, S+1, ..., S+N-1 (S defaults to 0; ``--seed S`` alone runs just
that seed), prints a summary, and for each failing seed the violations and the
command that replays it. Exit status 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from paxtor.sim import MUTATIONS, UNCAUGHT, Mutations, SimConfig, first_catch, replay_command, run_seed, scenario
from paxtor.sim.faults import FAULT_KINDS, SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paxtor.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=None, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=None, help="first seed (alone: only it)")
    parser.add_argument("--verbose", action="store_true", help="one line per seed")
    parser.add_argument("--mutation", choices=MUTATIONS, default=None, help="inject a known bug")
    parser.add_argument(
        "--max-drift",
        type=float,
        default=None,
        help="the clock-rate bound the lease assumes (default 1.0: clocks 0.5x..2x)",
    )
    parser.add_argument(
        "--clock-spread",
        type=float,
        default=None,
        help="the rate bound clocks really obey; above --max-drift voids the lease guarantee",
    )
    parser.add_argument(
        "--faults",
        default=None,
        metavar="KIND,...",
        help=f"exactly these fault kinds instead of a swarm draw ({', '.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default=None,
        help="a fault plan written by hand instead of each seed's draw (the seed draws the workload)",
    )
    parser.add_argument(
        "--controls",
        action="store_true",
        help="for every negative control: the checker that first catches it, and after how many of --seeds",
    )
    args = parser.parse_args(argv)
    if args.controls:
        return controls(args.seeds if args.seeds is not None else 300, args.seed or 0)
    first = args.seed if args.seed is not None else 0
    count = args.seeds if args.seeds is not None else (1 if args.seed is not None else 100)
    config = SimConfig()
    if args.max_drift is not None or args.clock_spread is not None:
        config = SimConfig(
            max_drift=config.max_drift if args.max_drift is None else args.max_drift,
            clock_spread=args.clock_spread,
        )
    if args.faults is not None:
        config = dataclasses.replace(config, faults=tuple(k for k in args.faults.split(",") if k))
    plan = None
    if args.scenario is not None:
        config, plan = scenario(args.scenario, config)
    mutations = Mutations.only(args.mutation)
    started = time.perf_counter()
    failed = []
    undecided = []
    events = 0
    totals: dict[str, int] = {}
    for seed in range(first, first + count):
        result = run_seed(seed, config, mutations, plan)
        events += result.events
        for name, n in result.stats.items():
            totals[name] = totals.get(name, 0) + n
        if result.undecided:
            undecided.append(seed)
        if args.verbose:
            status = "ok" if result.ok else "FAIL " + ",".join(result.checkers())
            print(
                f"seed {seed}: {status} events={result.events} ops={result.operations} "
                f"chosen={result.chosen} grants={result.grants} trace={result.trace_hash[:12]} "
                f"{result.plan}"
            )
        if not result.ok:
            failed.append(result)
            for checker, text in result.violations[:5]:
                print(f"  seed {seed} [{checker}] {text}")
            if len(result.violations) > 5:
                print(f"  ... {len(result.violations) - 5} more")
            print(f"  replay: {replay_command(seed, mutations, args.scenario)}")
    elapsed = time.perf_counter() - started
    rate = count / elapsed if elapsed > 0 else float("inf")
    label = f" mutation={args.mutation}" if args.mutation else ""
    print(
        f"{count} seeds, {count - len(failed)} ok, {len(failed)} failed{label} "
        f"in {elapsed:.1f}s ({rate:.1f} seeds/s, {events} events)"
    )
    print("rounds: " + " ".join(f"{k}={totals[k]}" for k in sorted(totals)))
    if undecided:
        print(
            f"linearizability undecided (search budget) on {len(undecided)} seeds: "
            + " ".join(map(str, undecided[:20]))
        )
    if failed:
        print("failing seeds: " + " ".join(str(r.seed) for r in failed))
    return 1 if failed else 0


def controls(seeds: int, first: int) -> int:
    """Print one line per negative control: who catches it, on which seed; 1 if one that
    should be caught was not."""
    missed = []
    print(f"{'mutation':<24} {'caught by':<32} {'first seed':>10} {'seeds run':>10}  scenario")
    for mutation in MUTATIONS:
        started = time.perf_counter()
        catch = first_catch(mutation, seeds, first)
        by = ",".join(catch.checkers) if catch.seed is not None else "UNCAUGHT"
        seed = "-" if catch.seed is None else str(catch.seed)
        print(
            f"{mutation:<24} {by:<32} {seed:>10} {catch.seeds:>10}  {catch.scenario or 'swarm'}"
            f"  ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
        if catch.seed is None and mutation not in UNCAUGHT:
            missed.append(mutation)
    if missed:
        print("not caught: " + " ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
