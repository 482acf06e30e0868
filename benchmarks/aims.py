"""Where each speed aim stands now: one table, every figure from interleaved rounds of one run.

``python -m benchmarks.aims [--rounds R] [--seconds S] [--no-baselines] [--json]``

Runs, in this order and in this one process: `bench_paxtor` (locks against
the floor, etcd and ZooKeeper), `bench_paxos` (durable puts against the
floor and etcd), `bench_distribution` (remote GenServer.call against a raw
gevent msgpack echo and the raw loopback RTT) and `bench_actors` (local
GenServer.call against a raw gevent Queue ping-pong and Pykka's gevent
actor). etcd and ZooKeeper start once and stay up for the whole run, and
are measured phase by phase between Paxtor's phases. Each ratio is the
median of the per-round ratios, with the lowest and highest round.

Prints the table as markdown (``--json``: the table and every round's raw
figures of every benchmark as one JSON document).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import structlog

from benchmarks import bench_actors, bench_distribution, bench_paxos, bench_paxtor
from benchmarks.interleave import Row, markdown

#: the benchmark modules this table runs (`python -m benchmarks` runs the others after it)
MODULES = ("bench_paxtor", "bench_paxos", "bench_distribution", "bench_actors")


def _defaults(add_arguments: Any, **overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def measure(rounds: int, seconds: float, baselines: bool) -> dict[str, Any]:
    """Every benchmark of the table, the baselines shared: {module: result, "table": rows}."""
    paxtor_args = _defaults(bench_paxtor.add_arguments, rounds=rounds, seconds=seconds, durability="fsync", count=False)
    paxos_args = _defaults(bench_paxos.add_arguments, rounds=rounds, seconds=seconds, durability="fsync", profile=None)
    distribution_args = _defaults(bench_distribution.add_arguments, rounds=rounds, profile=None)
    service = None
    if baselines:
        from benchmarks.baselines.service import BaselineService

        service = BaselineService(bench_paxtor.BASELINES, bench_paxtor.baseline_settings(paxtor_args))
    try:
        locks = bench_paxtor.measure(paxtor_args, service)
        puts = bench_paxos.measure(paxos_args, service)
    finally:
        if service is not None:
            service.close()
    from paxtor.actors.distribution import stop_all_distributed

    stop_all_distributed()
    calls = bench_distribution.measure(distribution_args)
    local = bench_actors.run_all(rounds)
    from paxtor.actors.node import stop_all

    stop_all()
    assert calls is not None
    table = [
        *bench_paxtor.rows(locks, paxtor_args.clients, service),
        *bench_paxos.rows(puts, service),
        *(row for row in bench_distribution.rows(calls) if "call" in row.aim),
        *(row for row in bench_actors.rows(local) if "GenServer.call" in row.aim and row.target),
    ]
    return {
        "bench_paxtor": locks, "bench_paxos": puts, "bench_distribution": calls, "bench_actors": local,
        "baselines": service.status if service else {}, "baseline_errors": service.errors if service else [],
        "table": table,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aims", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every benchmark")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each throughput phase")
    parser.add_argument("--no-baselines", action="store_true", help="skip etcd and ZooKeeper")
    parser.add_argument("--json", action="store_true", help="the table and every round's raw figures as JSON")
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    saved_logging = structlog.get_config()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )
    try:
        result = measure(args.rounds, args.seconds, not args.no_baselines)
    finally:
        structlog.configure(**saved_logging)
    table: list[Row] = result["table"]
    print(f"Speed aims: {args.rounds} interleaved rounds per benchmark, one run, 127.0.0.1, fsync on")
    print(markdown(table))
    for error in result["baseline_errors"]:
        print(f"baseline error: {error}")
    if args.json:
        print(json.dumps({**result, "table": [row.as_dict() for row in table]}))
    return 0


if __name__ == "__main__":
    # the workloads travel to the nodes as "benchmarks.bench_*:NAME", never "__main__:NAME"
    from benchmarks import aims

    sys.exit(aims.main())
