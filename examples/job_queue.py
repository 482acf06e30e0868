"""One worker per queue, cluster-wide: Paxtor singletons as queue consumers.

    .venv/bin/python examples/job_queue.py

Each queue ("emails", "invoices", "reports") is served by exactly one
`QueueWorker` in the whole cluster: ``paxtor.name(("queue", q), (QueueWorker,
q))``. A producer per queue on every node submits jobs to the queue's name
(``call``: it waits for each job's result); the first submission anywhere
starts the worker on one node (placement spreads the queues over the nodes)
and every later one reaches the same process. So the jobs of one queue never
run at the same time, each producer's jobs run in its order, and different
queues run in parallel on different nodes.

Then the node running one of the workers is stopped: the next submission
starts that queue's worker on another node, and a producer whose job was
cut off submits it again (at-least-once). The worker's state starts over; a
real queue keeps its jobs in a store, and guards it with the fencing token of
a lock (``paxtor.lock``) so that a paused old worker cannot write after the
new one started.
Three nodes start in this OS process (TCP over loopback).
"""

from __future__ import annotations

import itertools
import sys
import time
from typing import Any

import gevent

import paxtor
from paxtor.actors import GenServer, Pid, call, receive, self_pid, send, spawn
from paxtor.actors.messages import CallError
from paxtor.cli import configure_logging
from paxtor.testing import nodes_in_this_process

QUEUES = ("emails", "invoices", "reports")
JOBS_PER_PRODUCER = 5


class QueueWorker(GenServer):
    """The one consumer of a queue: runs its jobs one at a time, in arrival order."""

    def init(self, queue: str) -> None:
        self.queue = queue
        self.done = 0

    def handle_call(self, request: Any, caller: Any) -> tuple:
        _, job = request  # ("job", job)
        started = time.monotonic()
        gevent.sleep(0.01)  # the work
        self.done += 1
        return (self.queue, job, self_pid(), self.done, started, time.monotonic())


def worker(queue: str) -> Any:
    """The name of the queue's worker (starts nothing by itself)."""
    return paxtor.name(("queue", queue), (QueueWorker, queue))


def submit(queue: str, job: Any, timeout: float = 30.0) -> tuple:
    """Run `job` on the queue's worker; submit again if the worker died before it answered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(worker(queue), ("job", job), timeout=timeout)
        except CallError:  # its node went away: the next call starts a new worker
            if time.monotonic() > deadline:
                raise
            gevent.sleep(0.05)


def produce(queue: str, jobs: int, out: Pid) -> None:
    """A producer: submit `jobs` jobs to `queue`, one after the other; report each result."""
    me = f"{self_pid().node}"
    for i in range(jobs):
        send(out, ("done", *submit(queue, (me, i))))


def run_round(nodes: list[Any], jobs: int) -> list[tuple]:
    """A producer per queue on every node, all at once; every result."""
    me = self_pid()
    for node in nodes:
        for queue in QUEUES:
            spawn(produce, queue, jobs, me, node=node.name)
    return [receive(lambda m: m[0] == "done", timeout=60)[1:] for _ in range(jobs * len(QUEUES) * len(nodes))]


def check(results: list[tuple], expected_jobs: int) -> bool:
    """One worker per queue, no two jobs of a queue at once, each producer's jobs in order."""
    ok = True
    for queue in QUEUES:
        mine = sorted((r for r in results if r[0] == queue), key=lambda r: r[3])  # in the order they ran
        workers = {r[2] for r in mine}
        overlaps = sum(1 for a, b in itertools.pairwise(mine) if b[4] < a[5])
        producers = {job[0] for _, job, *_ in mine}
        in_order = all(
            [i for _, (p, i), *_ in mine if p == producer] == list(range(expected_jobs // len(producers)))
            for producer in producers
        )
        pid = next(iter(workers)) if len(workers) == 1 else None
        print(f"   {queue:<9} {len(mine)} jobs from {len(producers)} nodes, ran by "
              f"{f'{pid!r} on {pid.node}' if pid else f'{len(workers)} workers!'}; "
              f"overlapping jobs: {overlaps}; each producer's order kept: {in_order}")  # fmt: skip
        ok = ok and len(mine) == expected_jobs and len(workers) == 1 and overlaps == 0 and in_order
    return ok


def main() -> int:
    configure_logging(level="error")
    with nodes_in_this_process(3) as nodes:
        print(f"1. a producer on each of {', '.join(n.name for n in nodes)} submits {JOBS_PER_PRODUCER} jobs per queue")
        ok = check(run_round(nodes, JOBS_PER_PRODUCER), JOBS_PER_PRODUCER * len(nodes))

        where = {queue: paxtor.whereis(worker(queue)) for queue in QUEUES}
        victim = next((pid.node for pid in where.values() if pid.node != "node1"), None)
        if victim is None:
            print("   (every worker runs on node1, where this script runs: nothing to stop)")
        else:
            moved = [queue for queue, pid in where.items() if pid.node == victim]
            print(f"2. stop {victim}, which runs the worker of {', '.join(moved)}")
            next(node for node in nodes if node.name == victim).stop()
            survivors = [node for node in nodes if node.name != victim]
            ok = check(run_round(survivors, JOBS_PER_PRODUCER), JOBS_PER_PRODUCER * len(survivors)) and ok
            for queue in moved:
                pid = paxtor.whereis(worker(queue))
                print(f"   {queue}: new worker {pid!r} on {pid.node} (was {where[queue]!r})")
                ok = ok and pid.node != victim
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    import job_queue  # the nodes find this file's code as "job_queue:...", not "__main__:..."

    sys.exit(job_queue.main())
