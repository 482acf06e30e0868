"""The critical path of an uncontended lock+unlock, leg by leg, across the voter processes.

``python -m benchmarks.trace_round [--seconds S] [--json]``

The three durable voters of `bench_paxtor` run as OS processes, each with
marks put on a few methods before it starts (wrappers installed at run
time, not in the library): a chunk read from a socket (``recv``), a flush
of a connection's queued frames (``send``), this node's vote
(``vote``), the acceptor log's write+fsync (``fsync`` and ``fsynced``),
the proposer server taking a request (``submit``), any other message
(``info``) and a round's end (``decided``). A client on node1 marks
``lock``, ``locked``, ``unlock``, ``unlocked`` around its calls. Every mark
is ``time.monotonic_ns()``, one clock for every process of the machine, so
the marks of node1 and of the voter it asked can be merged into one
timeline.

The report takes the most common sequence of marks from one ``lock`` on
node1 to the next, and gives the median time of each step and the running
total: which leg of a round (node1's own work, the wake-up of the other
voter, its fsync, its answer) is on the critical path. A mark costs about
a microsecond; the total runs a little above `bench_paxtor`'s median.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from typing import Any

#: marks kept per process (the last ones: the end of the loop)
KEEP = 40_000

_marks: deque[tuple[int, str]] = deque(maxlen=KEEP)


def mark(tag: str) -> None:
    _marks.append((time.monotonic_ns(), tag))


def _marked(method: Any, before: str, after: str | None = None) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(before)
        if after is None:
            return method(*args, **kwargs)
        try:
            return method(*args, **kwargs)
        finally:
            mark(after)

    return wrapper


def install_marks() -> None:
    """Wrap the marked methods (before the node starts: readers bind theirs when a connection starts)."""
    from paxtor.actors.reader import Reader
    from paxtor.actors.writer import Writer
    from paxtor.paxos.local_acceptor import LocalAcceptor
    from paxtor.paxos.proposer_server import ProposerServer
    from paxtor.paxos.storage.log import AcceptorLog

    Reader._on_readable = _marked(Reader._on_readable, "recv")  # type: ignore[method-assign]
    Writer._flush = _marked(Writer._flush, "send")  # type: ignore[method-assign]
    LocalAcceptor.handle = _marked(LocalAcceptor.handle, "vote")  # type: ignore[method-assign]
    AcceptorLog._timed_write_and_sync = _marked(  # type: ignore[method-assign]
        AcceptorLog._timed_write_and_sync, "fsync", "fsynced"
    )
    ProposerServer.handle_call = _marked(ProposerServer.handle_call, "submit")  # type: ignore[method-assign]
    ProposerServer.handle_info = _marked(ProposerServer.handle_info, "info")  # type: ignore[method-assign]
    ProposerServer._finish = _marked(ProposerServer._finish, "decided")  # type: ignore[method-assign]


def node_main(number: int, base_port: int, data_dir: str, durability: str) -> None:
    install_marks()
    from benchmarks import bench_paxtor

    bench_paxtor.node_main(number, base_port, data_dir, durability)


def marks_of(reply_to: Any, tag: Any) -> None:
    """This node's marks, to `reply_to`."""
    from paxtor.actors import send

    send(reply_to, (tag, list(_marks)))


def lock_loop(reply_to: Any, key: Any, seconds: float) -> None:
    """On node1: lock+unlock `key` for `seconds`, marked; the count."""
    import paxtor
    from paxtor.actors import send

    for _ in range(300):
        paxtor.lock(key)
        paxtor.unlock(key)
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        mark("lock")
        paxtor.lock(key)
        mark("locked")
        mark("unlock")
        paxtor.unlock(key)
        mark("unlocked")
        count += 1
    send(reply_to, ("traced", count))


def trace(seconds: float) -> dict[str, Any]:
    from benchmarks import bench_paxtor
    from paxtor.actors import self_pid, spawn
    from paxtor.actors.distribution import start_distributed, stop_all_distributed

    base = bench_paxtor._free_base_port()
    with tempfile.TemporaryDirectory(prefix="trace-round-") as data_dir:
        voters = bench_paxtor.Voters(base, data_dir, "fsync", module="benchmarks.trace_round")
        try:
            bench = start_distributed("bench", port=0, base_port=base, cluster_size=3, cookie=bench_paxtor.COOKIE,
                                      heartbeat_interval=1.0, heartbeat_timeout=10.0)  # fmt: skip
            assert bench.wait_for_nodes(bench_paxtor.NODES, 30), "the voters did not connect"

            def body() -> dict[str, Any]:
                me = self_pid()
                for node in bench_paxtor.NODES:
                    spawn(bench_paxtor.await_quorum, me, node=node)
                for _ in bench_paxtor.NODES:
                    bench_paxtor._receive("quorum")
                spawn(lock_loop, me, "trace-round", seconds, node="node1")
                count = bench_paxtor._receive("traced", timeout=seconds + 120)[1]
                marks = {}
                for node in bench_paxtor.NODES:
                    spawn(marks_of, me, ("marks", node), node=node)
                for _ in bench_paxtor.NODES:
                    (_, node), node_marks = bench_paxtor._receive_tagged("marks")
                    marks[node] = node_marks
                return {"ops": count, "marks": marks}

            return bench.run(body, timeout=None)  # type: ignore[no-any-return]
        finally:
            stop_all_distributed()
            voters.stop()


def critical_path(marks: dict[str, list[tuple[int, str]]]) -> dict[str, Any]:
    """The most common sequence of marks from one ``lock`` on node1 to the next: each step's median."""
    start = max(node_marks[0][0] for node_marks in marks.values() if node_marks)
    timeline = sorted(
        (t, f"{node}:{tag}") for node, node_marks in marks.items() for t, tag in node_marks if t >= start
    )
    starts = [i for i, (_, label) in enumerate(timeline) if label == "node1:lock"]
    cycles: Counter[tuple[str, ...]] = Counter()
    steps: dict[tuple[tuple[str, ...], int], list[float]] = defaultdict(list)
    for a, b in zip(starts, starts[1:], strict=False):
        cycle = timeline[a : b + 1]
        labels = tuple(label for _, label in cycle)
        cycles[labels] += 1
        for j in range(1, len(cycle)):
            steps[(labels, j)].append((cycle[j][0] - cycle[j - 1][0]) / 1000)
    if not cycles:
        return {"cycles": 0, "steps": []}
    labels, count = cycles.most_common(1)[0]
    out, total = [], 0.0
    for j in range(1, len(labels)):
        took = statistics.median(steps[(labels, j)])
        total += took
        out.append({"from": labels[j - 1], "to": labels[j], "us": round(took, 1), "total_us": round(total, 1)})
    return {"cycles": len(starts) - 1, "this_sequence": count, "steps": out}


def describe(result: dict[str, Any], ops: int, seconds: float) -> str:
    lines = [
        f"lock+unlock on node1: {ops} in {seconds:.0f} s ({seconds / max(1, ops) * 1e6:.0f} us each, marked); "
        f"the most common sequence of marks, {result.get('this_sequence', 0)} of {result['cycles']} cycles:"
    ]
    for step in result["steps"]:
        lines.append(f"  {step['from']:>16} -> {step['to']:<16} {step['us']:7.1f} us   (total {step['total_us']:7.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trace_round", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the marked loop runs")
    parser.add_argument("--json", action="store_true", help="print the steps as JSON too")
    parser.add_argument("--node", nargs=4, metavar=("N", "BASE_PORT", "DATA_DIR", "DURABILITY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.node:
        node_main(int(args.node[0]), int(args.node[1]), args.node[2], args.node[3])
        return 0
    from benchmarks import bench_paxtor

    bench_paxtor._quiet_logs()
    done = trace(args.seconds)
    result = critical_path(done["marks"])
    print(describe(result, done["ops"], args.seconds))
    if args.json:
        json.dump(result, sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    # the functions travel to the nodes as "benchmarks.trace_round:...", not "__main__:..."
    from benchmarks import trace_round

    sys.exit(trace_round.main())
