"""Changing the voters under load, and a wiped voter catching up, on durable voters.

``python -m benchmarks.bench_voters [--only reconfig|catchup] [--clients N]
[--keys N] [--readers N] [--phase S]``

The voters are ``python -m paxtor node N --no-shell`` OS processes on
127.0.0.1 with the default timings (lease 3 s, margin 0.5 s) and
durability "fsync", in a temporary directory; this process joins as a
client node ("bench").

  reconfig   ``--clients`` processes here hand one lock round (lock,
             unlock, again) while the cluster goes through: steady;
             kill -9 node3 (its machine dies); ``cluster.replace_voter
             (node3, node4)``; steady; ``set_voters`` to five (node5 and
             node6 added); steady; ``set_voters`` back to three (node1 and
             node2 removed: every key must have moved); steady. Figures: the
             handoffs per second of each phase, the longest stall (the
             longest time without a handoff, the phase's start counted) and
             that stall over the lease + margin (the aim: at most 1.0).
  catchup    ``--keys`` keys are written, then ``--readers`` processes here
             read every key once with ``paxos.get`` (a linearizable read,
             one round each), all at once; then node3's data directory is
             wiped and it is started again with its usual command: the time
             from its start to ``catch_up_done`` in its log (and the
             ``seconds`` the line carries: the reseat alone). Figure: the
             readers' time over the catch-up's (the aim: at least 5).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import structlog

REPO = Path(__file__).resolve().parent.parent
#: the default lease and margin (`paxtor.paxos.PaxosConfig`): the stall aim
LEASE, MARGIN = 3.0, 0.5


def _quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


# -- reconfig ----------------------------------------------------------------------------


def handoffs(key: Any, stop: gevent.event.Event, times: list[float]) -> None:
    """lock, unlock, again until `stop`: the time of each acquisition goes to `times`."""
    import paxtor

    while not stop.is_set():
        paxtor.lock(key)
        times.append(time.monotonic())
        paxtor.unlock(key)


def stall(times: list[float], start: float, end: float) -> float:
    """The longest time in [start, end] without an acquisition (from `start` to the first too)."""
    inside = [t for t in times if start <= t <= end]
    edges = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(edges))


def reconfig(clients: int, phase: float) -> list[dict[str, Any]]:
    from paxtor import cluster as voters_api
    from paxtor.testing import LocalCluster, wait_for_nodes

    with LocalCluster(3, flags=["--log-level", "warning"], pythonpath=[REPO], prefix="bench-voters-", spare=4) as local:
        for number in (1, 2, 3):
            local.start(number)
        node = local.join("bench", reconnect_max=0.3, seeds=_seeds(local, range(4, 7)))
        wait_for_nodes(node, ["node1", "node2", "node3"], 30)
        node.run(_wait_quorum)
        times: list[float] = []
        stop = gevent.event.Event()
        workers = [gevent.spawn(node.run, handoffs, "bench-reconfig", stop, times) for _ in range(clients)]
        phases: list[dict[str, Any]] = []

        def timed(name: str, action: Callable[[], Any] | None = None) -> None:
            began = time.monotonic()
            said = node.run(action) if action is not None else gevent.sleep(phase)
            ended = time.monotonic()
            count = sum(1 for t in times if began <= t <= ended)
            phases.append({"phase": name, "seconds": ended - began, "handoffs_per_s": count / (ended - began),
                           "stall": stall(times, began, ended), "result": said})  # fmt: skip

        def start_voters(numbers: range) -> None:
            for number in numbers:  # seeds: every other node, as an operator would give
                local.start(number, extra=["--voter", "--seeds", ",".join(_seeds(local, range(1, 7)))])
            wait_for_nodes(node, [f"node{n}" for n in numbers], 30)
            gevent.sleep(0.5)  # their first hello: a change checks that they run an acceptor

        try:
            gevent.sleep(1.0)  # warm up
            timed("steady, 3 voters")
            local.kill("node3")
            timed("kill -9 node3")
            start_voters(range(4, 5))
            timed("replace node3 -> node4", lambda: voters_api.replace_voter("node3", "node4"))
            timed("steady")
            start_voters(range(5, 7))
            timed("grow 3 -> 5", lambda: voters_api.set_voters(["node1", "node2", "node4", "node5", "node6"]))
            timed("steady, 5 voters")
            timed("shrink 5 -> 3", lambda: voters_api.set_voters(["node4", "node5", "node6"]))
            timed("steady, 3 voters")
        finally:
            stop.set()
            gevent.joinall(workers, timeout=10)
        return phases


def _seeds(local: Any, numbers: range) -> list[str]:
    return [f"127.0.0.1:{local.base_port + n}" for n in numbers]


def _wait_quorum() -> None:
    import paxtor

    paxtor.wait_for_quorum(timeout=30)


# -- catchup -----------------------------------------------------------------------------


def fill(start: int, stop: int, step: int, reply_to: Any) -> None:
    """Put key i -> i for every i of ``range(start, stop, step)`` (runs on a voter)."""
    from paxtor import paxos
    from paxtor.actors import send

    for i in range(start, stop, step):
        paxos.put(("bench", i), i, timeout=60)
    send(reply_to, ("filled",))


def read_all(keys: range, results: list[int]) -> None:
    from paxtor import paxos

    wrong = 0
    for i in keys:
        wrong += paxos.get(("bench", i), timeout=60) != i
    results.append(wrong)


def catchup(count: int, readers: int) -> dict[str, Any]:
    from benchmarks import bench_voters as this  # functions spawned on the voters travel by name
    from paxtor.actors import receive, self_pid, spawn
    from paxtor.testing import LocalCluster, wait_for_nodes

    with LocalCluster(3, flags=["--log-level", "info"], pythonpath=[REPO], prefix="bench-catchup-", spare=2) as local:
        for number in (1, 2, 3):
            local.start(number)
        node = local.join("bench", reconnect_max=0.3)
        wait_for_nodes(node, ["node1", "node2", "node3"], 30)
        node.run(_wait_quorum)
        writers = 24

        def write() -> float:
            began = time.monotonic()
            for w in range(writers):
                spawn(this.fill, w, count, writers, self_pid(), node=f"node{w % 3 + 1}")
            for _ in range(writers):
                receive(lambda m: isinstance(m, tuple) and m[0] == "filled", timeout=600)
            return time.monotonic() - began

        filled = node.run(write)
        wrong: list[int] = []
        began = time.monotonic()
        jobs = [gevent.spawn(node.run, read_all, range(r, count, readers), wrong) for r in range(readers)]
        gevent.joinall(jobs, raise_error=True)
        read_s = time.monotonic() - began
        local.kill("node3")
        shutil.rmtree(local.workdir / "data" / "node3")
        restarted = time.monotonic()
        process = local.start(3)
        done = process.wait_for_log("catch_up_done", timeout=600)
        catch_s = time.monotonic() - restarted
        return {"keys": count, "fill_s": filled, "read_s": read_s, "wrong_reads": sum(wrong), "readers": readers,
                "catch_up_s": catch_s, "reseat_s": float(done["seconds"]), "records": done.get("records")}  # fmt: skip


# -- the report --------------------------------------------------------------------------


def report_reconfig(phases: list[dict[str, Any]], clients: int) -> None:
    aim = LEASE + MARGIN
    print(f"Lock handoffs, one key, {clients} clients on a client node; 3 durable voters as OS processes, "
          f"lease {LEASE:g} s + margin {MARGIN:g} s = {aim:g} s:")  # fmt: skip
    for p in phases:
        result = f"   -> {' '.join(p['result'])}" if isinstance(p["result"], tuple) else ""
        print(f"  {p['phase']:<24} {p['seconds']:6.2f} s  {p['handoffs_per_s']:7.0f} handoffs/s   "
              f"longest stall {p['stall']:5.2f} s = {p['stall'] / aim:.2f}x (lease + margin){result}")  # fmt: skip
    changes = [p for p in phases if p["result"] is not None]
    worst = max(p["stall"] for p in changes)
    steady = [p["handoffs_per_s"] for p in phases if p["phase"].startswith("steady")]
    print(f"  longest stall during a change {worst:.2f} s = {worst / aim:.2f}x lease + margin (aim: <= 1.0); "
          f"changes ran at {min(p['handoffs_per_s'] for p in changes) / max(steady):.2f}-"
          f"{max(p['handoffs_per_s'] for p in changes) / max(steady):.2f}x the best steady rate")  # fmt: skip


def report_catchup(r: dict[str, Any]) -> None:
    print(f"Catch-up of a wiped voter over {r['keys']:,} keys (3 durable voters as OS processes; "
          f"written in {r['fill_s']:.1f} s):")  # fmt: skip
    print(f"  {r['readers']} paxos.get readers, every key once   {r['read_s']:7.2f} s  "
          f"({r['keys'] / r['read_s']:,.0f} keys/s, {r['wrong_reads']} wrong)")  # fmt: skip
    print(f"  wiped node3: start -> catch_up_done  {r['catch_up_s']:7.2f} s  (the reseat itself {r['reseat_s']:.2f} s, "
          f"{r['records']} records)")  # fmt: skip
    print(f"  readers / catch-up = {r['read_s'] / r['catch_up_s']:.1f}x   (aim: >= 5x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_voters", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("reconfig", "catchup"), default=None)
    parser.add_argument("--clients", type=int, default=8, help="lock clients of the reconfig run")
    parser.add_argument("--phase", type=float, default=4.0, help="seconds of each steady phase")
    parser.add_argument("--keys", type=int, default=100_000, help="keys of the catchup run")
    parser.add_argument("--readers", type=int, default=8, help="paxos.get readers of the catchup run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    _quiet_logs()
    if args.only in (None, "reconfig"):
        report_reconfig(reconfig(args.clients, args.phase), args.clients)
    if args.only in (None, "catchup"):
        report_catchup(catchup(args.keys, args.readers))
    return 0


if __name__ == "__main__":
    # functions spawned on the voters travel as "benchmarks.bench_voters:NAME", not "__main__:NAME"
    from benchmarks import bench_voters

    sys.exit(bench_voters.main())
