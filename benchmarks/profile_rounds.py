"""Where the time of one lock+unlock, or of one remote call, goes: sampled on real nodes.

``python -m benchmarks.profile_rounds [lock|call] [--seconds S] [--rate HZ] [--durability fsync|memory]
[--keep-raw PREFIX] [--json]``

``lock``: the three durable voters of `bench_paxtor` (OS processes); a
client on node1 locks and unlocks one key in a loop for S seconds while
``py-spy`` samples every node process from outside (wall clock, idle
included, no pause of the process: ``--nonblocking --idle``). ``call``: the
two nodes of `bench_distribution`; a process of this one calls the Echo
server of the other in a loop.

Every sample is put in one category, by the innermost frame that belongs to
a known part (the codec, a mailbox, the proposer, structlog, the acceptor
log's write+fsync, a socket call, gevent's hub...): frames of the standard
library are skipped, so a dataclass built while decoding counts as codec.
Samples of the hub waiting in its loop are "idle". The report gives, per
node, the microseconds per operation of each category (samples / rate /
operations): the wall time of one operation, split by where each node
spends it; ``lock`` adds each voter's acceptor records and fsyncs per
lock+unlock. ``--keep-raw PREFIX`` keeps py-spy's collapsed stacks
(``PREFIX-<pid>.txt``) for a closer look. Needs ``py-spy`` (in the ``bench``
extra; root or ptrace rights).
"""

from __future__ import annotations

import argparse
import functools
import json
import linecache
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: (category, what a frame's "function (path:line)" text contains), first match wins per frame
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("acceptor log write+fsync", ("write_and_sync (",)),
    ("acceptor log (Python)", ("paxtor/paxos/storage/", "paxtor/paxos/log_codec.py", "paxtor/paxos/log_format.py")),
    ("logging (structlog)", ("/structlog/", "/logging/__init__.py")),
    ("codec (msgpack + ext types)", ("paxtor/actors/wire.py", "/msgpack/", "paxtor/paxos/wire_format.py",
                                     "paxtor/actors/ids.py")),
    ("socket send/recv", ("/gevent/_socket", "paxtor/actors/transport.py", "/socket.py")),
    ("connection & framing", ("paxtor/actors/connection.py", "paxtor/actors/reader.py", "paxtor/actors/writer.py",
                              "paxtor/actors/sockets.py", "paxtor/actors/heartbeat.py", "paxtor/actors/framing.py",
                              "paxtor/actors/dist_protocol.py", "paxtor/actors/peers.py", "paxtor/actors/mesh.py",
                              "paxtor/actors/distribution.py")),
    ("gen_server call/reply", ("paxtor/actors/gen_server.py",)),
    ("mailbox & process (send, receive, spawn)", ("paxtor/actors/mailbox.py", "paxtor/actors/process.py",
                                                  "paxtor/actors/primitives.py", "paxtor/actors/node.py",
                                                  "paxtor/actors/registry.py", "paxtor/actors/timers.py")),
    ("proposer (round driver + pure core)", ("paxtor/paxos/proposer_server.py", "paxtor/paxos/proposer.py",
                                             "paxtor/paxos/api.py", "paxtor/paxos/ballot.py")),
    ("acceptor (driver + pure core)", ("paxtor/paxos/acceptor.py", "paxtor/paxos/local_acceptor.py",
                                       "paxtor/paxos/acceptor_server.py", "paxtor/paxos/register.py",
                                       "paxtor/paxos/envelopes.py")),
    ("lease, bindings, membership", ("paxtor/paxos/lease", "paxtor/paxos/bindings.py", "paxtor/paxos/membership.py",
                                     "paxtor/paxos/voter_config.py", "paxtor/paxos/counters.py")),
    ("lock layer (agent, home, register)", ("paxtor/lock", "paxtor/rounds.py", "paxtor/placement.py")),
    ("benchmark loop", ("benchmarks/",)),
    ("gevent hub, switches, timers", ("/gevent/", "greenlet")),
    ("other paxtor", ("paxtor/",)),
)
IDLE = "idle (hub waiting for I/O)"
SOCKET_CALLS = "socket send/recv (the syscalls)"
#: a leaf frame whose source line makes one of these calls is in the kernel (py-spy sees no C frames)
SYSCALL_TEXT = ((SOCKET_CALLS, (".send(", "send(data)", ".recv(", ".recv_into(", ".sendall(")),)
REPO = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r".* \((?P<path>[^:()]+):(?P<line>\d+)\)$")


@functools.cache
def _source_line(path: str, line: int) -> str:
    for root in (REPO, *map(Path, filter(None, sys.path))):
        text = linecache.getline(str(root / path), line)
        if text:
            return text
    return ""


def _syscall(leaf: str) -> str | None:
    found = _FRAME.match(leaf)
    if not found:
        return None
    source = _source_line(found["path"], int(found["line"]))
    for name, needles in SYSCALL_TEXT:
        if any(needle in source for needle in needles):
            return name
    return None


def classify(frames: list[str]) -> str:
    """The category of one sample, `frames` from the root to the leaf."""
    leaf = frames[-1] if frames else ""
    if leaf.startswith("Hub.run (") and "gevent/hub.py" in leaf:
        return IDLE
    in_kernel = _syscall(leaf)
    if in_kernel and "write_and_sync (" not in leaf:
        return in_kernel
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def categorize(raw: str) -> dict[str, Counter[str]]:
    """py-spy's raw (collapsed) output -> per thread id: samples per category."""
    threads: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        threads.setdefault(thread, Counter())[classify(frames)] += int(count)
    return threads


class Sampler:
    """One ``py-spy record`` of one process, started now, read when it ends."""

    def __init__(self, pid: int, seconds: float, rate: int, workdir: Path, keep_raw: str | None = None) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.pid, self.rate, self.keep_raw = pid, rate, keep_raw
        self.output = workdir / f"py-spy-{pid}.txt"
        self.proc = subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(int(seconds)),
             "--format", "raw", "--output", str(self.output), "--nonblocking", "--idle", "--threads"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def result(self) -> dict[str, Counter[str]]:
        _, err = self.proc.communicate(timeout=120)
        if not self.output.exists():
            raise RuntimeError(f"py-spy recorded nothing for pid {self.pid}: {err.decode()[-500:]}")
        if self.keep_raw:
            shutil.copy(self.output, f"{self.keep_raw}-{self.pid}.txt")
        return categorize(self.output.read_text())


def breakdown(threads: dict[str, Counter[str]], pid: int, rate: int, ops: int) -> dict[str, float]:
    """Microseconds per operation of each category: the main (hub) thread, plus fsyncs of other threads."""
    per_op: dict[str, float] = {}
    for thread, counts in threads.items():
        main = thread.startswith(f"thread ({pid})")
        for name, samples in counts.items():
            if not main and name != "acceptor log write+fsync":
                continue  # another thread waiting: not this node's time
            label = name if main else "acceptor log write+fsync (sync thread)"
            per_op[label] = per_op.get(label, 0.0) + samples / rate / ops * 1e6
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------- lock+unlock on the voters


def lock_loop_for(reply_to: Any, key: Any, seconds: float) -> None:
    """On node1: lock+unlock `key` for `seconds`; the count."""
    import paxtor
    from paxtor.actors import send

    for _ in range(200):
        paxtor.lock(key)
        paxtor.unlock(key)
    send(reply_to, ("started",))
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        paxtor.lock(key)
        paxtor.unlock(key)
        count += 1
    send(reply_to, ("profiled", count))


def _per_node_log(before: tuple[int, int, float], after: tuple[int, int, float], ops: int) -> dict[str, Any]:
    """One voter's acceptor records and fsyncs per operation, and its mean write+fsync in ms."""
    records, fsyncs, seconds = (a - b for a, b in zip(after, before, strict=True))
    return {"records_per_op": records / max(1, ops), "fsyncs_per_op": fsyncs / max(1, ops),
            "node_fsync_ms": seconds / fsyncs * 1e3 if fsyncs else None}  # fmt: skip


def profile_lock(seconds: float, rate: int, durability: str, keep_raw: str | None = None) -> dict[str, Any]:
    from benchmarks import bench_paxtor
    from paxtor.actors import receive, self_pid, spawn
    from paxtor.actors.distribution import start_distributed, stop_all_distributed

    base = bench_paxtor._free_base_port()
    with tempfile.TemporaryDirectory(prefix="profile-lock-") as data_dir:
        voters = bench_paxtor.Voters(base, data_dir, durability)
        try:
            bench = start_distributed("bench", port=0, base_port=base, cluster_size=3, cookie=bench_paxtor.COOKIE,
                                      heartbeat_interval=1.0, heartbeat_timeout=10.0)  # fmt: skip
            assert bench.wait_for_nodes(bench_paxtor.NODES, 30), "the voters did not connect"
            pids = {name: proc.pid for name, proc in zip(bench_paxtor.NODES, voters.procs, strict=True)}

            def body() -> dict[str, Any]:
                me = self_pid()
                for node in bench_paxtor.NODES:
                    spawn(bench_paxtor.await_quorum, me, node=node)
                for _ in bench_paxtor.NODES:
                    receive(lambda m: isinstance(m, tuple) and m[0] == "quorum", timeout=60)
                before = bench_paxtor._log_counters(me)
                spawn(lock_loop_for, me, "profile-lock", seconds, node="node1")
                receive(lambda m: m == ("started",), timeout=60)
                samplers = {node: Sampler(pid, seconds, rate, Path(data_dir), keep_raw)
                            for node, pid in pids.items() if rate}  # fmt: skip
                count = receive(lambda m: isinstance(m, tuple) and m[0] == "profiled", timeout=seconds + 60)[1]
                after = bench_paxtor._log_counters(me)
                logs = {node: _per_node_log(before[node], after[node], count) for node in bench_paxtor.NODES}
                return {"ops": count, "samplers": samplers, "logs": logs}

            done = bench.run(body, timeout=None)
            result = _report(done["samplers"], pids, rate, done["ops"], seconds, "lock+unlock")
            result["acceptor_log_per_op"] = done["logs"]
            return result
        finally:
            stop_all_distributed()
            voters.stop()


# ----------------------------------------------------------------- a remote call


def profile_call(seconds: float, rate: int, keep_raw: str | None = None) -> dict[str, Any]:
    from benchmarks import bench_distribution
    from paxtor.actors import call
    from paxtor.actors.distribution import start_distributed, stop_all_distributed

    child = bench_distribution.Child()
    try:
        dist = start_distributed("bench1", port=0, seeds=[f"127.0.0.1:{child.dist_port}"],
                                 cookie=bench_distribution.COOKIE, heartbeat_interval=1.0,
                                 heartbeat_timeout=30.0)  # fmt: skip
        assert dist.wait_for_nodes(["bench2"], 10), "the child node did not connect"
        echo = dist.run(call, ("echo", "bench2"), "pid")
        dist.run(bench_distribution.call_rate, echo, 0.5)  # warm
        pids = {"caller (bench1)": os.getpid(), "server (bench2)": child.proc.pid}
        with tempfile.TemporaryDirectory(prefix="profile-call-") as workdir:
            samplers = {
                name: Sampler(pid, seconds, rate, Path(workdir), keep_raw) for name, pid in pids.items() if rate
            }
            count, elapsed = dist.run(bench_distribution.call_rate, echo, seconds)
            return _report(samplers, pids, rate, count, elapsed, "remote call")
    finally:
        stop_all_distributed()
        child.kill()


def _report(samplers: dict[str, Sampler], pids: dict[str, int], rate: int, ops: int, seconds: float,
            what: str) -> dict[str, Any]:  # fmt: skip
    nodes = {name: breakdown(sampler.result(), pids[name], rate, ops) for name, sampler in samplers.items()}
    return {"what": what, "ops": ops, "seconds": seconds, "us_per_op": seconds / ops * 1e6, "rate_hz": rate,
            "nodes": nodes}  # fmt: skip


def describe(result: dict[str, Any]) -> str:
    lines = [f"{result['what']}: {result['ops']} in {result['seconds']:.1f} s = {result['us_per_op']:.0f} us each "
             f"(py-spy at {result['rate_hz']} Hz, wall clock; us per {result['what']})"]  # fmt: skip
    names = list(result["nodes"])
    width = max(len(c) for node in result["nodes"].values() for c in node) if names else 10
    lines.append(f"  {'':{width}s}" + "".join(f"{n:>18s}" for n in names))
    categories = sorted({c for node in result["nodes"].values() for c in node},
                        key=lambda c: -max(node.get(c, 0.0) for node in result["nodes"].values()))  # fmt: skip
    for category in categories:
        row = "".join(f"{result['nodes'][n].get(category, 0.0):18.1f}" for n in names)
        lines.append(f"  {category:{width}s}{row}")
    lines.append(f"  {'total':{width}s}" + "".join(f"{sum(result['nodes'][n].values()):18.1f}" for n in names))
    for node, log in result.get("acceptor_log_per_op", {}).items():
        lines.append(f"  {node}: {log['records_per_op']:.2f} acceptor records and {log['fsyncs_per_op']:.2f} fsyncs"
                     f" per {result['what']}, write+fsync {log['node_fsync_ms'] or 0:.3f} ms each")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_rounds", description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("lock", "call"), default="lock")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250,
                        help="samples per second of each node (0: no sampling, the same loop as a control)")
    parser.add_argument("--durability", choices=("fsync", "memory"), default="fsync")
    parser.add_argument("--keep-raw", metavar="PREFIX", help="keep py-spy's collapsed stacks as PREFIX-<pid>.txt")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from benchmarks.bench_paxtor import _quiet_logs

    _quiet_logs()
    if args.what == "lock":
        result = profile_lock(args.seconds, args.rate, args.durability, args.keep_raw)
    else:
        result = profile_call(args.seconds, args.rate, args.keep_raw)
    print(describe(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    # the loop travels to node1 as "benchmarks.profile_rounds:lock_loop_for", not "__main__:..."
    from benchmarks import profile_rounds

    sys.exit(profile_rounds.main())
