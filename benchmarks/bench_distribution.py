"""Distribution: remote GenServer calls and casts vs raw gevent TCP + msgpack, in interleaved rounds.

``python -m benchmarks.bench_distribution [--seconds S] [--casts N] [--rounds R] [--profile call|cast] [--json]``

Two OS processes on 127.0.0.1, this one (node "bench1") and a child it
spawns and kills (node "bench2", which also serves the raw baselines), so
both sides of every figure run in the same two processes, in the same run:

  remote call    a process calls a GenServer on the other node, in a loop
                 (monitor + request out, reply back, demonitor: gen:call)
  raw echo       one greenlet: sendall(packb(msg)); recv until one object back
  remote casts   8 processes cast to one GenServer on the other node, then
                 each makes one call (so all its casts were handled)
  raw frames     one greenlet: sendall(packb(msg)) per message, child counts

Aims: remote call >= 0.8x raw echo; remote casts >= 0.5x raw frames. Each
round measures the floor (`benchmarks.floor`: a raw loopback round trip of
plain blocking sockets, no gevent), then both sides of each pair in turn
(the order alternates); every ratio is the median of the per-round ratios,
with the lowest and highest round. Two ratios per pair: by wall clock
(rate), and by CPU time (of both processes, per operation; Linux /proc),
which other load on a shared machine does not skew.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import structlog

from benchmarks.bench_wire import RAW_MESSAGE, RawClient, _raw_echo, _raw_sink
from benchmarks.floor import median_ms, round_trips
from benchmarks.interleave import Rounds, Row, figure_text, markdown, rotated
from paxtor.actors import GenServer, call, cast, receive, self_pid, send, spawn
from paxtor.actors.distribution import start_distributed, stop_all_distributed

COOKIE = "bench-distribution-cookie"
REPO = Path(__file__).resolve().parent.parent
SENDERS = 8
REQUEST = ("get", "key-17")  # the size of bench_wire's RAW_MESSAGE, about
CAST = ("put", "key-17", 12345)


class Echo(GenServer):
    """Answers every call with its request."""

    def handle_call(self, request: Any, caller: Any) -> Any:
        return self_pid() if request == "pid" else request


class Counter(GenServer):
    """Counts casts; calls read or reset the count."""

    def init(self) -> None:
        self.count = 0

    def handle_cast(self, msg: Any) -> None:
        self.count += 1

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "pid":
            return self_pid()
        if request == "reset":
            self.count = 0
        return self.count


# ----------------------------------------------------------------- the child


def _quiet_logs() -> None:
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )


def _raw_server(handler: Any) -> int:
    server = gevent.socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def accept() -> None:
        while True:
            sock, _ = server.accept()
            sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
            gevent.spawn(handler, sock)

    gevent.spawn(accept)
    return server.getsockname()[1]


def child_main() -> None:
    """Node bench2 with its servers, plus the raw baselines; prints the ports."""
    _quiet_logs()
    dist = start_distributed("bench2", port=0, cookie=COOKIE, heartbeat_interval=1.0, heartbeat_timeout=30.0)
    dist.run(Echo.start, name="echo")
    dist.run(Counter.start, name="counter")
    print(dist.port, _raw_server(_raw_echo), _raw_server(_raw_sink), flush=True)
    gevent.wait()


class Child:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_distribution", "--child"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        self.dist_port, self.echo_port, self.sink_port = map(int, self.proc.stdout.readline().split())

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


# ----------------------------------------------------------------- measurements


def _child_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(child_pid: int, run: Any) -> dict[str, float]:
    """`run()` returns (operations, seconds): the rate, and both processes' CPU microseconds per operation."""
    cpu0, child0 = time.process_time(), _child_cpu(child_pid)
    ops, seconds = run()
    cpu = (time.process_time() - cpu0 + _child_cpu(child_pid) - child0) / ops
    return {"per_s": ops / seconds, "cpu_us": cpu * 1e6}


def call_rate(server: Any, seconds: float) -> tuple[int, float]:
    """Remote calls from one process: (count, seconds)."""
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            call(server, REQUEST)
        count += 50
    return count, elapsed


def cast_rate(counter: Any, total: int) -> tuple[int, float]:
    """Casts one way from SENDERS processes: (count, seconds)."""
    call(counter, "reset")
    me = self_pid()
    per_sender = total // SENDERS

    def sender() -> None:
        for i in range(per_sender):
            cast(counter, CAST)
            if i % 64 == 63:
                gevent.sleep(0)  # a process yields now and then
        call(counter, "sync", timeout=120)  # after every cast of this sender
        send(me, "sent")

    started = time.perf_counter()
    for _ in range(SENDERS):
        spawn(sender)
    for _ in range(SENDERS):
        receive(lambda m: m == "sent", timeout=120)
    elapsed = time.perf_counter() - started
    counted = call(counter, "count")
    assert counted == per_sender * SENDERS, counted
    return counted, elapsed


def raw_echo_rate(client: RawClient, seconds: float) -> tuple[int, float]:
    started = time.perf_counter()
    rate = client.echo_rate(seconds)
    elapsed = time.perf_counter() - started
    return round(rate * elapsed), elapsed


def raw_frames_rate(client: RawClient, total: int) -> tuple[int, float]:
    started = time.perf_counter()
    client.frames_rate(total)
    return total, time.perf_counter() - started


def _profile(dist: Any, fn: Any, *args: Any) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    dist.run(fn, *args)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=1.0, help="per timed call round")
    parser.add_argument("--casts", type=int, default=80_000, help="casts (and raw frames) per one-way round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_distribution", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print every round's figures and the table as JSON too")
    parser.add_argument("--profile", choices=("call", "cast"), help="profile this side of one round instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        child_main()
        return 0
    saved_logging = structlog.get_config()
    _quiet_logs()
    try:
        run(args)
    finally:
        stop_all_distributed()
        structlog.configure(**saved_logging)
    return 0


def run(args: argparse.Namespace) -> None:
    result = measure(args)
    if result is None:
        return
    table = rows(result)
    print(f"two OS processes on 127.0.0.1, {args.rounds} interleaved rounds; CPU = both processes, per operation")
    print(markdown(table))
    if args.json:
        print(json.dumps({**result, "table": [row.as_dict() for row in table]}))


def measure(args: argparse.Namespace) -> dict[str, Any] | None:
    """The child node, the rounds, the child killed: every round's figures (None after a --profile)."""
    child = Child()
    try:
        dist = start_distributed("bench1", port=0, seeds=[f"127.0.0.1:{child.dist_port}"], cookie=COOKIE,
                                 heartbeat_interval=1.0, heartbeat_timeout=30.0)
        assert dist.wait_for_nodes(["bench2"], 10), "the child node did not connect"
        echo = dist.run(call, ("echo", "bench2"), "pid")
        counter = dist.run(call, ("counter", "bench2"), "pid")
        assert dist.run(call, echo, REQUEST) == REQUEST
        if args.profile == "call":
            _profile(dist, call_rate, echo, args.seconds)
            return None
        if args.profile == "cast":
            _profile(dist, cast_rate, counter, args.casts)
            return None
        raw_echo_client = RawClient(child.echo_port)
        raw_sink_client = RawClient(child.sink_port)
        assert raw_echo_client.echo_rate(0.05) > 0 and RAW_MESSAGE
        pid = child.proc.pid
        sides = {
            "call": {"paxtor": lambda: dist.run(call_rate, echo, args.seconds),
                     "raw": lambda: raw_echo_rate(raw_echo_client, args.seconds)},
            "cast": {"paxtor": lambda: dist.run(cast_rate, counter, args.casts),
                     "raw": lambda: raw_frames_rate(raw_sink_client, args.casts)},
        }  # fmt: skip
        rounds = Rounds()
        for r in range(args.rounds):
            rounds.add(r, "floor", "machine", {"rtt_ms": median_ms(round_trips())})
            for phase, systems in sides.items():
                for system in rotated(list(systems), r):
                    rounds.add(r, phase, system, measured(pid, systems[system]))
        raw_echo_client.close()
        raw_sink_client.close()
    finally:
        stop_all_distributed()
        child.kill()
    return {"rounds": rounds.as_json()}


def rows(result: dict[str, Any]) -> list[Row]:
    """Remote call against the raw echo and the floor; casts against raw frames."""
    rounds = Rounds(result["rounds"])

    def per_op(phase: str, system: str) -> str:
        rate = rounds.figure(phase, system, "per_s")
        cpu = rounds.figure(phase, system, "cpu_us")
        return f"{figure_text(rate, '/s')}, CPU {figure_text(cpu, 'us', 1)}"

    call, cast = per_op("call", "paxtor"), per_op("cast", "paxtor")
    return [
        Row("remote GenServer.call", call, f"raw gevent msgpack echo: {per_op('call', 'raw')}",
            rounds.compare("call", "per_s", "paxtor", "raw", True), ">= 0.8"),
        Row("remote GenServer.call, by CPU", call, "raw gevent msgpack echo, by CPU",
            rounds.compare("call", "cpu_us", "paxtor", "raw", False)),
        Row("remote GenServer.call", call, "floor: raw loopback RTT",
            rounds.over_floor("call", "paxtor", "per_s", "per_s", "rtt_ms")),
        Row(f"remote casts, {SENDERS} processes", cast, f"raw frames one way: {per_op('cast', 'raw')}",
            rounds.compare("cast", "per_s", "paxtor", "raw", True), ">= 0.5"),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
