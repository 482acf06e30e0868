"""Bounded measurement loops and statistics shared by the baseline modules.

Every loop is bounded both in operation count and in wall time; results are
plain dicts so the Paxtor benchmarks can print ratios against them. Client
concurrency uses OS threads: grpc and kazoo bring their own threads, and these
measurements run in a separate process from any gevent code.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PLACEMENT = "sequential runs: one client on the leader; concurrent clients: round-robin over members"


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of the baseline measurements (defaults: a few seconds each)."""

    clients: int = 8
    seconds: float = 3.0  # duration of each concurrent measurement
    latency_ops: int = 500  # max sequential ops per latency measurement
    latency_seconds: float = 3.0  # time cap per latency measurement
    warmup_ops: int = 100  # unmeasured sequential ops before each latency measurement
    warmup_seconds: float = 2.0  # unmeasured concurrent writes after start (JVM JIT, page cache)
    op_timeout: float = 10.0  # per-operation timeout given to the clients

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_stats(samples_s: Sequence[float]) -> dict[str, Any]:
    """Median/p99/mean/min/max in milliseconds of per-operation durations."""
    if not samples_s:
        return {"n": 0, "median_ms": None, "p99_ms": None, "mean_ms": None, "min_ms": None, "max_ms": None}
    ordered = sorted(samples_s)
    p99_index = min(len(ordered) - 1, max(0, int(round(0.99 * len(ordered))) - 1))
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[p99_index] * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
        "min_ms": ordered[0] * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


def jain_fairness(counts: Sequence[int]) -> float | None:
    """Jain's index: 1.0 when every client got the same share, 1/n when one got all."""
    total = sum(counts)
    if not counts or total == 0:
        return None
    return total * total / (len(counts) * sum(c * c for c in counts))


def sequential_latency(
    op: Callable[[int], None], settings: BenchSettings, *, warmup: bool = True
) -> dict[str, Any]:
    """Run op(i) one after another; per-op latency stats, bounded in count and time."""
    if warmup:
        warm_deadline = time.monotonic() + settings.latency_seconds
        for i in range(settings.warmup_ops):
            if time.monotonic() >= warm_deadline:
                break
            op(-1 - i)
    samples: list[float] = []
    deadline = time.monotonic() + settings.latency_seconds
    for i in range(settings.latency_ops):
        start = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - start)
        if time.monotonic() >= deadline:
            break
    return latency_stats(samples)


class Worker:
    """One client thread's loop body: ``op(i)`` performs one operation."""

    def __init__(self, op: Callable[[int], None]) -> None:
        self.op = op
        self.completed_in_window = 0
        self.completed_total = 0
        self.error: str | None = None


def concurrent_throughput(
    ops: Sequence[Callable[[int], None]],
    settings: BenchSettings,
    *,
    seconds: float | None = None,
    server_cpu: Callable[[], float] | None = None,
    max_ops_per_client: int = 1_000_000,
) -> dict[str, Any]:
    """Run one thread per op for ``seconds``; count ops completed in the window.

    All threads start together (barrier). Ops still in flight at the deadline
    finish (drain) but are not counted; threads are joined with a deadline.
    CPU use of this (client) process and, if given, of the servers is reported
    in cores (CPU-seconds per second): a client near 1.0 is GIL-bound, so the
    number then measures the Python client as much as the server.
    """
    seconds = settings.seconds if seconds is None else seconds
    workers = [Worker(op) for op in ops]
    barrier = threading.Barrier(len(workers) + 1)
    window: dict[str, float] = {}

    def run(worker: Worker) -> None:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            worker.error = "start barrier broken"
            return
        end = window["end"]
        i = 0
        try:
            while i < max_ops_per_client and time.monotonic() < end:
                worker.op(i)
                i += 1
                worker.completed_total += 1
                if time.monotonic() <= end:
                    worker.completed_in_window += 1
        except Exception as exc:  # noqa: BLE001 - reported in the result, never hidden
            worker.error = f"{type(exc).__name__}: {exc}"

    threads = [
        threading.Thread(target=run, args=(w,), name=f"bench-client-{n}", daemon=True)
        for n, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    window["end"] = start + seconds
    cpu_start = time.process_time()
    server_start = server_cpu() if server_cpu else 0.0
    barrier.wait(timeout=30)
    join_deadline = window["end"] + settings.op_timeout + 5.0
    for thread in threads:
        thread.join(timeout=max(0.0, join_deadline - time.monotonic()))
    busy = max(time.monotonic() - start, 1e-9)
    client_cores = (time.process_time() - cpu_start) / busy
    server_cores = (server_cpu() - server_start) / busy if server_cpu else None
    stuck = sum(1 for t in threads if t.is_alive())
    counts = [w.completed_in_window for w in workers]
    errors = [w.error for w in workers if w.error]
    return {
        "clients": len(workers),
        "seconds": seconds,
        "ops": sum(counts),
        "ops_per_s": sum(counts) / seconds,
        "per_client": counts,
        "errors": errors,
        "stuck_threads": stuck,
        "client_process_cores": client_cores,
        "server_processes_cores": server_cores,
        "window_monotonic": [start, window["end"]],
    }


class HolderCheck:
    """Detects mutual-exclusion violations among in-process lock clients.

    Also records the acquisition order, so handoffs (lock passing to a
    different client) can be counted exactly.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.holder: int | None = None
        self.violations = 0
        self.order: list[tuple[int, float]] = []  # (client, monotonic time of acquisition)

    def acquired(self, client: int) -> None:
        with self._guard:
            if self.holder is not None:
                self.violations += 1
            self.holder = client
            self.order.append((client, time.monotonic()))

    def releasing(self, client: int) -> None:
        with self._guard:
            if self.holder != client:
                self.violations += 1
            self.holder = None

    def handoffs(self, start: float, end: float) -> int:
        """Acquisitions in [start, end] by a different client than the previous holder."""
        return sum(
            1
            for (prev, _), (cur, t) in zip(self.order, self.order[1:], strict=False)
            if prev != cur and start <= t <= end
        )


def checked_lock_op(
    acquire: Callable[[], None], release: Callable[[], None], client: int, check: HolderCheck | None
) -> Callable[[int], None]:
    """One lock+unlock of a baseline's lock as a loop body, told to `check` while held."""

    def op(_: int) -> None:
        acquire()
        if check is not None:
            check.acquired(client)
            check.releasing(client)
        release()

    return op


def contended_result(throughput: dict[str, Any], check: HolderCheck) -> dict[str, Any]:
    """Shape the contended-lock result: handoffs/s, per-client counts, fairness."""
    counts = throughput["per_client"]
    start, end = throughput["window_monotonic"]
    handoffs = check.handoffs(start, end)
    return {
        "clients": throughput["clients"],
        "seconds": throughput["seconds"],
        "acquisitions": throughput["ops"],
        "acquisitions_per_s": throughput["ops_per_s"],
        # an acquisition by a different client than the previous holder
        "handoffs": handoffs,
        "handoffs_per_s": handoffs / throughput["seconds"],
        "per_client_acquisitions": counts,
        "jain_fairness": jain_fairness(counts),
        "min_max": [min(counts), max(counts)] if counts else None,
        "mutual_exclusion_violations": check.violations,
        "errors": throughput["errors"],
        "stuck_threads": throughput["stuck_threads"],
        "client_process_cores": throughput["client_process_cores"],
        "server_processes_cores": throughput["server_processes_cores"],
    }


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers Paxtor reports ratios against, flat, from a ``measure_all`` result."""
    put, lock, contended, distinct = (
        results["put"],
        results["lock"],
        results["contended"],
        results["distinct_locks"],
    )
    return {
        "put_median_ms": put["latency_ms"]["median_ms"],
        "put_p99_ms": put["latency_ms"]["p99_ms"],
        "puts_per_s": put["throughput"]["ops_per_s"],
        "lock_unlock_median_ms": lock["latency_ms"]["median_ms"],
        "lock_unlock_p99_ms": lock["latency_ms"]["p99_ms"],
        "contended_handoffs_per_s": contended["handoffs_per_s"],
        "contended_jain_fairness": contended["jain_fairness"],
        "distinct_lock_unlock_per_s": distinct["ops_per_s"],
    }


class Phases:
    """One baseline's measurements, one phase at a time, on clients opened once.

    The interleaved benchmarks call the phases in rounds between Paxtor's own
    (`benchmarks.baselines.service`); ``measure_all`` runs each once. A
    subclass opens ``settings.clients`` clients (the first on the leader) and
    says what a put and a lock+unlock are.
    """

    def __init__(self, settings: BenchSettings, server_cpu: Callable[[], float] | None) -> None:
        self.settings = settings
        self.server_cpu = server_cpu
        self._serial = 0

    # -- what a subclass provides

    def put_ops(self, prefix: str) -> list[Callable[[int], None]]:
        """One put loop body per client, each on its own fresh keys under `prefix`."""
        raise NotImplementedError

    def lock_op(self, name: str, client: int, check: HolderCheck | None) -> Callable[[int], None]:
        """Lock and unlock the lock `name` from client `client`."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Keep the clients' sessions alive; called before each phase, outside its measurement."""

    # -- the phases

    def _fresh(self, what: str) -> str:
        self._serial += 1
        return f"{what}{self._serial}"

    def warm_up(self) -> None:
        """Unmeasured concurrent puts (JIT, page cache, connections)."""
        concurrent_throughput(self.put_ops(self._fresh("warm")), self.settings, seconds=self.settings.warmup_seconds)

    def put(self) -> dict[str, Any]:
        """Put latency, one client on the leader."""
        latency = sequential_latency(self.put_ops(self._fresh("seq"))[0], self.settings)
        return {"put_median_ms": latency["median_ms"], "put_p99_ms": latency["p99_ms"], "latency_ms": latency}

    def puts(self) -> dict[str, Any]:
        """Puts/s, every client on its own fresh keys."""
        throughput = concurrent_throughput(self.put_ops(self._fresh("put")), self.settings, server_cpu=self.server_cpu)
        return {"puts_per_s": throughput["ops_per_s"], "throughput": throughput}

    def lock_unlock(self) -> dict[str, Any]:
        """Uncontended lock+unlock latency, one client on the leader."""
        latency = sequential_latency(self.lock_op("solo", 0, None), self.settings)
        return {
            "lock_unlock_median_ms": latency["median_ms"], "lock_unlock_p99_ms": latency["p99_ms"],
            "latency_ms": latency,
        }  # fmt: skip

    def contended(self) -> dict[str, Any]:
        """Every client on one lock: handoffs/s and fairness."""
        check = HolderCheck()
        ops = [self.lock_op("contended", n, check) for n in range(self.settings.clients)]
        result = contended_result(concurrent_throughput(ops, self.settings, server_cpu=self.server_cpu), check)
        return {
            "contended_handoffs_per_s": result["handoffs_per_s"],
            "contended_jain_fairness": result["jain_fairness"],
            "contended_counts": result["per_client_acquisitions"],
            "contended_max_deviation": max_deviation(result["per_client_acquisitions"]),
            "contended": result,
        }

    def distinct(self) -> dict[str, Any]:
        """Every client on its own lock: lock+unlock/s in total."""
        ops = [self.lock_op(f"own{n}", n, None) for n in range(self.settings.clients)]
        result = concurrent_throughput(ops, self.settings, server_cpu=self.server_cpu)
        return {"distinct_lock_unlock_per_s": result["ops_per_s"], "distinct": result}

    def measure_all(self) -> dict[str, Any]:
        """Warm-up, then each phase once (the shape ``headline`` reads)."""
        self.warm_up()
        put, puts, lock = self.put(), self.puts(), self.lock_unlock()
        return {
            "put": {"latency_ms": put["latency_ms"], "throughput": puts["throughput"]},
            "lock": {"latency_ms": lock["latency_ms"]},
            "contended": self.contended()["contended"],
            "distinct_locks": self.distinct()["distinct"],
        }


PHASE_NAMES = ("put", "puts", "lock_unlock", "contended", "distinct")


def max_deviation(counts: Sequence[int]) -> float | None:
    """The largest distance of one client's count from the mean, as a fraction of the mean."""
    mean = sum(counts) / len(counts) if counts else 0
    return max(abs(c - mean) / mean for c in counts) if mean else None
