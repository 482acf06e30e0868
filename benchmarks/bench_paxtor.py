"""Paxtor's locks on three durable voters, against etcd and ZooKeeper, in interleaved rounds.

``python -m benchmarks.bench_paxtor [--rounds R] [--seconds S] [--ops N] [--clients N]
[--no-baselines] [--count] [--durability fsync|memory] [--json]``

Three voters node1..node3 run as OS processes on 127.0.0.1, durability
"fsync" (each acceptor fsyncs before it answers) in a temporary directory.
This process joins as a plain distributed node ("bench"), starts the
workloads on the voters by remote spawn (the application runs on the nodes,
as Paxtor is meant to be used) and collects their figures by message.
etcd and ZooKeeper 3-member clusters (`benchmarks.baselines`) stay up beside
them for the whole run when installed (``PAXTOR_BENCH_INSTALL=1`` lets them
install; without them the table says "not installed").

Each round measures the floor (`benchmarks.floor`: raw loopback RTT, fsync
with 3 processes at once on the voters' disk), then each phase on every
system in turn (the order rotates each round):

  lock_unlock     one client locks and unlocks one key in a loop (Paxtor: on
                  node1; the baselines: on the leader): median and p99
  contended       8 clients (``--clients``) spread over the nodes lock one key,
                  hold it for nothing, unlock: handoffs/s, and each client's
                  count (fairness: every client within 10% of the mean)
  distinct        8 clients spread over the nodes, each on its own key:
                  lock+unlock/s in total

Every comparison is the median of the per-round ratios, with the lowest and
highest round; ``--json`` prints every round's raw figures too. After the
rounds, once: the call through a singleton's name against its pid, and with
``--count`` what one lock+unlock costs on node1 (rounds, records, fsyncs,
calls, log lines, under cProfile).

Aims: lock+unlock within 2x its floor 2 x (RTT + fsync) and 2x faster than
etcd and ZooKeeper; one key: 10x etcd's handoffs/s and 5x ZooKeeper's,
within 10%; distinct keys: 4x both.

``--durability memory`` runs the same workloads on voters that never touch
the disk (for tests only, and not what the aims are about).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import structlog

from benchmarks.floor import describe, measure_floor
from benchmarks.interleave import Rounds, Row, figure_text, markdown, rotated
from benchmarks.process_cpu import cpu_seconds
from paxtor.actors import GenServer

REPO = Path(__file__).resolve().parent.parent
COOKIE = "bench-paxtor-cookie"
CLIENTS = 8
NODES = ("node1", "node2", "node3")


def _quiet_logs() -> None:
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )


# ----------------------------------------------------------------- the voters


def node_main(number: int, base_port: int, data_dir: str, durability: str = "fsync") -> None:
    """One voter: `paxtor.start_node` (distribution, durable PaxosKV and the Paxtor services)."""
    _quiet_logs()
    import paxtor

    paxtor.start_node(
        number, cluster_size=3, base_port=base_port, cookie=COOKIE, data_dir=data_dir, durability=durability,
        heartbeat_interval=1.0, heartbeat_timeout=10.0,
    )  # fmt: skip
    print("ready", flush=True)
    gevent.wait()


class Voters:
    """The three voter OS processes (``module``'s ``--node`` entry runs each)."""

    def __init__(
        self, base_port: int, data_dir: str, durability: str = "fsync", module: str = "benchmarks.bench_paxtor"
    ) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", module, "--node", str(n), str(base_port), data_dir, durability],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            for n in (1, 2, 3)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != b"ready":
                raise RuntimeError(f"a voter failed to start: {line!r}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the three voters so far."""
        return cpu_seconds(proc.pid for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)


# ----------------------------------------------------------------- workloads (run on the voters)


def await_quorum(reply_to: Any) -> None:
    import paxtor
    from paxtor.actors import send

    paxtor.wait_for_quorum(30)
    send(reply_to, ("quorum", paxtor.actors.distribution.node()))


def uncontended(reply_to: Any, ops: int, warmup: int) -> None:
    """lock+unlock of one key in a loop: per-operation seconds."""
    import paxtor
    from paxtor.actors import send

    for _ in range(warmup):
        paxtor.lock("bench-uncontended")
        paxtor.unlock("bench-uncontended")
    samples = []
    for _ in range(ops):
        started = time.perf_counter()
        paxtor.lock("bench-uncontended")
        paxtor.unlock("bench-uncontended")
        samples.append(time.perf_counter() - started)
    send(reply_to, ("uncontended", samples))


#: (label, module suffix, function or "*" for any) whose calls per lock+unlock `--count` reports
COUNTED = (
    ("paxos.propose", "paxtor/paxos/api.py", "propose"),
    ("proposer_server._attempt", "paxtor/paxos/proposer_server.py", "_attempt"),
    ("local_acceptor.handle", "paxtor/paxos/local_acceptor.py", "handle"),
    ("storage.append", "paxtor/paxos/storage/log.py", "append"),
    ("storage._commit", "paxtor/paxos/storage/log.py", "_commit"),
    ("os.fsync", "~", "<built-in method posix.fsync>"),
    ("gen_server.call", "paxtor/actors/gen_server.py", "call"),
    ("gen_server.cast", "paxtor/actors/gen_server.py", "cast"),
    ("mailbox.put (messages delivered)", "paxtor/actors/mailbox.py", "put"),
    ("wire.encode", "paxtor/actors/wire.py", "encode"),
    ("wire._decode (frames decoded)", "paxtor/actors/wire.py", "_decode"),
    ("wire ext/list hooks", "paxtor/actors/wire.py", "_ext_hook"),
    ("wire ext/list hooks", "paxtor/actors/wire.py", "_list_hook"),
    ("wire._default (ext types encoded)", "paxtor/actors/wire.py", "_default"),
    ("connection.send (messages to peers)", "paxtor/actors/connection.py", "send"),
    ("writer._flush (socket writes)", "paxtor/actors/writer.py", "_flush"),
    ("log calls (structlog, emitted or filtered)", "structlog/_native.py", "*"),
)


def count_calls(reply_to: Any, ops: int) -> None:
    """Under cProfile (every greenlet of node1): calls per lock+unlock of the COUNTED functions."""
    import cProfile
    import pstats

    import paxtor
    from paxtor.actors import send

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(ops):
        paxtor.lock("bench-counted")
        paxtor.unlock("bench-counted")
    gevent.sleep(0.2)  # let the last round's durable callbacks run
    profiler.disable()
    counts: dict[str, float] = {}
    for (path, _line, name), (calls, *_rest) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        for label, suffix, wanted in COUNTED:
            if path.endswith(suffix) and wanted in (name, "*"):
                counts[label] = counts.get(label, 0.0) + calls / ops
    send(reply_to, ("counted", counts))


def log_counters(reply_to: Any, tag: Any) -> None:
    """This voter's acceptor: (records appended, fsyncs, seconds in write+fsync) so far."""
    import gc

    from paxtor.actors import send
    from paxtor.paxos.local_acceptor import LocalAcceptor

    voting = [o for o in gc.get_objects() if isinstance(o, LocalAcceptor)]  # benchmark only: no API for it
    logs = [v.durable_log for v in voting if v.durable_log is not None]
    records = sum(v._appends for v in voting)
    send(reply_to, (tag, records, sum(log.fsync_count for log in logs), sum(log.sync_seconds for log in logs)))


def _log_counters(me: Any) -> dict[str, tuple[int, int, float]]:
    """Every voter's `log_counters`, by node name."""
    from paxtor.actors import spawn

    for node in NODES:
        spawn(log_counters, me, ("log_counters", node), node=node)
    answers = [_receive_tagged("log_counters") for _ in NODES]
    return {tag[1]: (records, fsyncs, seconds) for tag, records, fsyncs, seconds in answers}


def log_deltas(before: dict[str, tuple[int, int, float]], after: dict[str, tuple[int, int, float]],
               ops: int) -> dict[str, Any]:  # fmt: skip
    """Acceptor records and fsyncs per operation over all voters, and the mean write+fsync in ms."""
    records = sum(after[n][0] - before[n][0] for n in NODES)
    fsyncs = sum(after[n][1] - before[n][1] for n in NODES)
    seconds = sum(after[n][2] - before[n][2] for n in NODES)
    return {
        "records_per_op": records / max(1, ops), "fsyncs_per_op": fsyncs / max(1, ops),
        "records_per_fsync": records / fsyncs if fsyncs else None,
        "node_fsync_ms": seconds / fsyncs * 1e3 if fsyncs else None,
    }  # fmt: skip


def lock_loop(reply_to: Any, key: Any, seconds: float, start_at: float, tag: Any) -> None:
    """lock+unlock `key` from `start_at` (wall clock) for `seconds`: the count."""
    import paxtor
    from paxtor.actors import send

    gevent.sleep(max(0.0, start_at - time.time()))
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        paxtor.lock(key)
        paxtor.unlock(key)
        count += 1
    send(reply_to, (tag, count))


class Counter(GenServer):
    """The singleton of the name-call figure: counts calls."""

    def init(self) -> None:
        self.n = 0

    def handle_call(self, request: Any, caller: Any) -> Any:
        self.n += 1
        return self.n


def name_vs_pid(reply_to: Any, key: Any, calls: int, rounds: int) -> None:
    """Calls to a singleton through its name and through its pid, interleaved rounds."""
    import paxtor
    from paxtor.actors import call, send

    via = paxtor.name(key, "benchmarks.bench_paxtor:Counter")
    pid = paxtor.whereis(via)
    for _ in range(200):  # warm both paths
        call(via, "inc")
        call(pid, "inc")
    by_name, by_pid = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call(via, "inc")
        by_name.append((time.perf_counter() - started) / calls)
        started = time.perf_counter()
        for _ in range(calls):
            call(pid, "inc")
        by_pid.append((time.perf_counter() - started) / calls)
    send(reply_to, ("name_vs_pid", by_name, by_pid, pid.node))


def home_of(reply_to: Any, keys: list[Any]) -> None:
    from paxtor.actors import send
    from paxtor.placement import rendezvous_order
    from paxtor.rounds import paxos_key

    send(reply_to, ("homes", [rendezvous_order(paxos_key(k), NODES)[0] for k in keys]))


# ----------------------------------------------------------------- the driver

PHASES = ("lock_unlock", "contended", "distinct")
BASELINES = ("etcd", "zookeeper")


def _receive(tag: str, timeout: float = 120.0) -> Any:
    from paxtor.actors import receive

    return receive(lambda m: isinstance(m, tuple) and m[0] == tag, timeout=timeout)


def _receive_tagged(kind: str) -> Any:
    from paxtor.actors import receive

    return receive(lambda m: isinstance(m, tuple) and isinstance(m[0], tuple) and m[0][0] == kind, timeout=120)


def _free_base_port() -> int:
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 30_000)
        sockets = []
        try:
            for offset in range(1, 5):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports")


class Paxtor:
    """Paxtor's side of each phase, run from a process of the bench node."""

    def __init__(self, me: Any, ops: int, seconds: float, clients: int, cpu: Callable[[], float]) -> None:
        self.me, self.ops, self.seconds, self.clients, self.cpu = me, ops, seconds, clients, cpu
        self.warm = False

    def lock_unlock(self) -> dict[str, Any]:
        from paxtor.actors import spawn

        warmup = 20 if self.warm else max(100, self.ops // 10)
        self.warm = True
        before = _log_counters(self.me)
        spawn(uncontended, self.me, self.ops, warmup, node="node1")
        samples = sorted(_receive("uncontended")[1])
        logs = log_deltas(before, _log_counters(self.me), self.ops + warmup)
        p99 = samples[min(len(samples) - 1, max(0, round(0.99 * len(samples)) - 1))]
        return {
            "lock_unlock_median_ms": statistics.median(samples) * 1e3, "lock_unlock_p99_ms": p99 * 1e3,
            "lock_unlock_fsyncs": logs["fsyncs_per_op"], "lock_unlock_node_fsync_ms": logs["node_fsync_ms"],
        }  # fmt: skip

    def _loops(self, kind: str, key: Callable[[int], Any]) -> tuple[list[int], float]:
        """`clients` lock loops spread over the voters, started together: their counts, voter CPU seconds."""
        from paxtor.actors import spawn

        start_at = time.time() + 0.3
        for i in range(self.clients):
            spawn(lock_loop, self.me, key(i), self.seconds, start_at, (kind, i), node=NODES[i % 3])
        gevent.sleep(max(0.0, start_at - time.time()))
        cpu_before = self.cpu()
        counts = [0] * self.clients
        for _ in range(self.clients):
            (_tag, i), count = _receive_tagged(kind)
            counts[i] = count
        return counts, self.cpu() - cpu_before

    def contended(self) -> dict[str, Any]:
        counts, cpu = self._loops("contended", lambda i: "bench-contended")
        mean = sum(counts) / self.clients
        return {
            "contended_handoffs_per_s": sum(counts) / self.seconds,
            "contended_counts": counts,
            "contended_max_deviation": max(abs(c - mean) / mean for c in counts) if mean else None,
            "contended_jain_fairness": sum(counts) ** 2 / (self.clients * sum(c * c for c in counts)) if mean else None,
            "contended_cpu_ms_per_handoff": cpu * 1e3 / max(1, sum(counts)),
        }

    def distinct(self) -> dict[str, Any]:
        before = _log_counters(self.me)
        counts, cpu = self._loops("distinct", lambda i: ("bench-distinct", i))
        logs = log_deltas(before, _log_counters(self.me), sum(counts))
        return {
            "distinct_lock_unlock_per_s": sum(counts) / self.seconds,
            "distinct_cpu_ms_per_lock_unlock": cpu * 1e3 / max(1, sum(counts)),
            "distinct_records_per_fsync": logs["records_per_fsync"],
            "distinct_node_fsync_ms": logs["node_fsync_ms"],
        }


def measure(args: argparse.Namespace, service: Any = None) -> dict[str, Any]:
    """Start the voters, run the rounds (and the extras), stop them: the rounds' figures."""
    from paxtor.actors.distribution import start_distributed, stop_all_distributed

    base = _free_base_port()
    with tempfile.TemporaryDirectory(prefix="bench-paxtor-") as data_dir:
        voters = Voters(base, data_dir, args.durability)
        try:
            bench = start_distributed("bench", port=0, base_port=base, cluster_size=3, cookie=COOKIE,
                                      heartbeat_interval=1.0, heartbeat_timeout=10.0)  # fmt: skip
            assert bench.wait_for_nodes(NODES, 30), "the voters did not connect"
            return bench.run(_rounds, args, service, data_dir, voters.cpu_seconds, timeout=None)
        finally:
            stop_all_distributed()
            voters.stop()


def _rounds(args: argparse.Namespace, service: Any, data_dir: str, cpu: Callable[[], float]) -> dict[str, Any]:
    from paxtor.actors import self_pid, spawn

    me = self_pid()
    for node in NODES:
        spawn(await_quorum, me, node=node)
    for _ in NODES:
        _receive("quorum")
    paxtor = Paxtor(me, args.ops, args.seconds, args.clients, cpu)
    systems = ["paxtor", *(service.systems if service else [])]
    rounds = Rounds()
    for r in range(args.rounds):
        rounds.add(r, "floor", "machine", measure_floor(data_dir))
        for phase in PHASES:
            for system in rotated(systems, r):
                figures = getattr(paxtor, phase)() if system == "paxtor" else service.measure(system, phase)
                if figures is not None:
                    rounds.add(r, phase, system, figures)
    extras: dict[str, Any] = {}
    if args.count:
        spawn(count_calls, me, 200, node="node1")
        extras["per_lock_unlock"] = _receive("counted")[1]
    spawn(home_of, me, [("bench-name", i) for i in range(50)], node="node1")
    homes = _receive("homes")[1]
    key = ("bench-name", homes.index("node2"))  # hosted on another node than the caller
    spawn(name_vs_pid, me, key, 2000, 5, node="node1")
    _, by_name, by_pid, host = _receive("name_vs_pid")
    extras.update(name_call_us=min(by_name) * 1e6, pid_call_us=min(by_pid) * 1e6,
                  name_over_pid=min(by_name) / min(by_pid), name_host=host)  # fmt: skip
    return {"rounds": rounds.as_json(), "extras": extras}


def rows(result: dict[str, Any], clients: int, service: Any = None) -> list[Row]:
    """The aims of the lock figures: against the floor, etcd and ZooKeeper."""
    rounds = Rounds(result["rounds"])
    against = _baseline_labels(service)
    out: list[Row] = []
    aims = (
        # phase, metric, unit, higher is better, floor metric, clients per op, aim, floor target, baseline targets
        ("lock_unlock", "lock_unlock_median_ms", "ms", False, "lock_unlock_ms", 1,
         "uncontended durable lock+unlock (median)", "<= 2", {"etcd": ">= 2", "zookeeper": ">= 2"}),
        ("contended", "contended_handoffs_per_s", "/s", True, "round_ms", 1,
         f"one key, {clients} clients: handoffs/s", "", {"etcd": ">= 10", "zookeeper": ">= 5"}),
        ("distinct", "distinct_lock_unlock_per_s", "/s", True, "lock_unlock_ms", clients,
         f"distinct keys, {clients} clients: lock+unlock/s", "", {"etcd": ">= 4", "zookeeper": ">= 4"}),
    )  # fmt: skip
    for phase, metric, unit, higher, floor_metric, per_op_clients, aim, floor_target, targets in aims:
        figure = figure_text(rounds.figure(phase, "paxtor", metric), unit)
        floor_labels = {"lock_unlock_ms": "floor 2 x (RTT + fsync)", "round_ms": "floor RTT + fsync per handoff"}
        floor_label = floor_labels[floor_metric]
        if per_op_clients > 1:
            floor_label = "floor 2 x (RTT + fsync) per client"
        out.append(Row(aim, figure, floor_label,
                       rounds.over_floor(phase, "paxtor", metric, "per_s" if unit == "/s" else unit, floor_metric,
                                         per_op_clients), floor_target))  # fmt: skip
        for system in BASELINES:
            ratio = rounds.compare(phase, metric, "paxtor", system, higher)
            theirs = figure_text(rounds.figure(phase, system, metric), unit)
            out.append(Row(aim, figure, f"{against[system]}: {theirs}", ratio, targets[system],
                           "" if ratio else _missing(service, system)))  # fmt: skip
        if phase == "contended":
            deviation = rounds.figure(phase, "paxtor", "contended_max_deviation")
            percent = deviation.scaled(100) if deviation else None
            out.append(Row(f"one key, {clients} clients: fairness", figure_text(percent, "%", 1),
                           "largest distance of a client's count from the mean", percent, "<= 10",
                           unit="%"))  # fmt: skip
    return out


def _baseline_labels(service: Any) -> dict[str, str]:
    labels = {"etcd": "etcd", "zookeeper": "ZooKeeper"}
    for name in labels:
        version = service.status.get(name, {}).get("server_version") if service else None
        if version:
            labels[name] += f" {version}"
    return labels


def _missing(service: Any, system: str) -> str:
    return service.reason(system) if service else "not measured (--no-baselines)"


def report(args: argparse.Namespace, result: dict[str, Any], table: list[Row]) -> None:
    rounds = Rounds(result["rounds"])
    floors = [row for row in result["rounds"] if row["phase"] == "floor"]
    print(f"Paxtor, 3 voters (durability {args.durability}), 127.0.0.1; {rounds.count} interleaved rounds")
    for floor in floors:
        print(f"  round {floor['round']}: {describe(floor)}")
    print(markdown(table))
    extras = result["extras"]
    if "per_lock_unlock" in extras:
        counted = "  ".join(f"{name} {n:.2f}" for name, n in sorted(extras["per_lock_unlock"].items()))
        print(f"per lock+unlock on node1: {counted}")
    records = rounds.figure("distinct", "paxtor", "distinct_records_per_fsync")
    cpu = rounds.figure("contended", "paxtor", "contended_cpu_ms_per_handoff")
    fsync = rounds.figure("lock_unlock", "paxtor", "lock_unlock_node_fsync_ms")
    fsyncs = rounds.figure("lock_unlock", "paxtor", "lock_unlock_fsyncs")
    floor = rounds.figure("floor", "machine", "fsync_ms")
    print(f"uncontended: {figure_text(fsyncs, '')} fsyncs per lock+unlock over the voters, write+fsync"
          f" {figure_text(fsync, 'ms', 3)} in the nodes against {figure_text(floor, 'ms', 3)} at the floor")
    print(f"acceptor records per fsync (distinct keys): {figure_text(records, '')};"
          f" voter CPU per handoff: {figure_text(cpu, 'ms', 3)}")  # fmt: skip
    print(f"call through a name {extras['name_call_us']:.1f} us vs pid {extras['pid_call_us']:.1f} us,"
          f" ratio {extras['name_over_pid']:.3f} (singleton on {extras['name_host']}; aim <= 1.2)")  # fmt: skip


def baseline_settings(args: argparse.Namespace) -> Any:
    """The baselines' phase sizes, matched to ours."""
    from benchmarks.baselines import BenchSettings

    return BenchSettings(clients=args.clients, seconds=args.seconds, latency_ops=min(args.ops, 500),
                         latency_seconds=args.seconds, warmup_ops=20, warmup_seconds=1.0)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each throughput phase")
    parser.add_argument("--ops", type=int, default=1000, help="lock+unlock pairs timed per round for the latency")
    parser.add_argument("--clients", type=int, default=CLIENTS,
                        help="clients of the contended and distinct-keys workloads (the aims are for 8)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_paxtor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--no-baselines", action="store_true", help="skip etcd/ZooKeeper")
    parser.add_argument("--count", action="store_true", help="count rounds, records, fsyncs, calls per lock+unlock")
    parser.add_argument("--json", action="store_true", help="print every round's figures and the table as JSON too")
    parser.add_argument("--durability", choices=("fsync", "memory"), default="fsync",
                        help="the voters' durability; memory shows what the disk costs (not an aim)")  # fmt: skip
    parser.add_argument("--node", nargs=4, metavar=("N", "BASE_PORT", "DATA_DIR", "DURABILITY"), help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.node:
        node_main(int(args.node[0]), int(args.node[1]), args.node[2], args.node[3])
        return 0
    _quiet_logs()
    service = None
    if not args.no_baselines:
        from benchmarks.baselines.service import BaselineService

        service = BaselineService(BASELINES, baseline_settings(args))
    try:
        result = measure(args, service)
    finally:
        if service is not None:
            service.close()
    table = rows(result, args.clients, service)
    report(args, result, table)
    if args.json:
        print(json.dumps({**result, "table": [row.as_dict() for row in table]}))
    return 0


if __name__ == "__main__":
    # the workloads travel to the voters as "benchmarks.bench_paxtor:NAME", not "__main__:NAME"
    from benchmarks import bench_paxtor

    sys.exit(bench_paxtor.main())
