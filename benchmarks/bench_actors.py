"""Actor runtime speed, as ratios against baselines run in this same process.

``python -m benchmarks.bench_actors [--rounds N] [--profile NAME]``

(a) send+receive round trip between two processes vs two greenlets
    ping-ponging over gevent.queue.Queue;
(b) GenServer call round trip vs Pykka 2.0.3 GeventActor ask, and vs (a)'s
    raw ping-pong;
(c) spawn + exit (observed through a monitor) vs gevent.spawn + join, and vs
    Pykka GeventActor start + stop.

Times are CPU time of this process (everything here is CPU-bound in one
thread), so load from other programs on a shared machine does not skew
them much. Every round runs every benchmark (the order rotates each round);
a ratio is baseline time / our time in the same round (above 1: faster than
the baseline), reported as the median over the rounds with the lowest and
highest round. Aims: GenServer.call >= 0.8x the raw Queue ping-pong, and
ahead of Pykka's gevent actor.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue
import structlog

from benchmarks.interleave import Rounds, Row, figure_text, markdown, rotated
from paxtor.actors import GenServer, call, exit, receive, self_pid, send, spawn, spawn_monitor
from paxtor.actors.node import stop_all

N_PINGPONG = 20_000
N_CALL = 10_000
N_SPAWN = 10_000


# -- (a) ping-pong ----------------------------------------------------------------


def queue_pingpong(n: int = N_PINGPONG) -> float:
    a_inbox: gevent.queue.Queue[Any] = gevent.queue.Queue()
    b_inbox: gevent.queue.Queue[Any] = gevent.queue.Queue()

    def ponger() -> None:
        get, put = b_inbox.get, a_inbox.put
        while True:
            m = get()
            if m is None:
                return
            put(m)

    def pinger() -> None:
        get, put = a_inbox.get, b_inbox.put
        for i in range(n):
            put(i)
            get()
        put(None)

    t0 = time.process_time()
    gevent.joinall([gevent.spawn(ponger), gevent.spawn(pinger)])
    return (time.process_time() - t0) / n


def process_pingpong(n: int = N_PINGPONG) -> float:
    def ponger() -> None:
        while True:
            m = receive()
            if m is None:
                return
            send(m[0], m)

    def pinger(peer: Any) -> None:
        me = self_pid()
        msg = (me, 1)
        for _ in range(n):
            send(peer, msg)
            receive()
        send(peer, None)

    t0 = time.process_time()
    peer = spawn(ponger)
    _, ref = spawn_monitor(pinger, peer)
    receive(lambda m: getattr(m, "ref", None) == ref)
    return (time.process_time() - t0) / n


# -- (b) calls ---------------------------------------------------------------------------


class Echo(GenServer):
    def handle_call(self, request: Any, caller: Any) -> Any:
        return request


def genserver_call(n: int = N_CALL) -> float:
    server = Echo.start()

    def client() -> None:
        for i in range(n):
            call(server, i)

    t0 = time.process_time()
    _, ref = spawn_monitor(client)
    receive(lambda m: getattr(m, "ref", None) == ref)
    elapsed = (time.process_time() - t0) / n
    exit(server, "kill")
    return elapsed


def _pykka() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pykka.gevent import GeventActor

    class PykkaEcho(GeventActor):  # type: ignore[misc]
        def on_receive(self, message: Any) -> Any:
            return message

    return PykkaEcho


def pykka_ask(n: int = N_CALL) -> float:
    actor = _pykka().start()

    def client() -> None:
        for i in range(n):
            actor.ask(i)

    t0 = time.process_time()
    gevent.spawn(client).join()
    elapsed = (time.process_time() - t0) / n
    actor.stop()
    return elapsed


# -- (c) spawn + exit -------------------------------------------------------------------------


def _noop() -> None:
    return None


def gevent_spawn_join(n: int = N_SPAWN) -> float:
    def run() -> None:
        for _ in range(n):
            gevent.spawn(_noop).join()

    t0 = time.process_time()
    gevent.spawn(run).join()
    return (time.process_time() - t0) / n


def process_spawn_exit(n: int = N_SPAWN) -> float:
    def run() -> None:
        for _ in range(n):
            _, ref = spawn_monitor(_noop)
            receive()  # the only message: its Down

    t0 = time.process_time()
    _, ref = spawn_monitor(run)
    receive(lambda m: getattr(m, "ref", None) == ref)
    return (time.process_time() - t0) / n


def pykka_start_stop(n: int = N_SPAWN // 4) -> float:
    cls = _pykka()

    def run() -> None:
        for _ in range(n):
            cls.start().stop()

    t0 = time.process_time()
    gevent.spawn(run).join()
    return (time.process_time() - t0) / n


# -- report -------------------------------------------------------------------------------------

BENCHES: dict[str, Callable[[], float]] = {
    "queue_pingpong": queue_pingpong,
    "process_pingpong": process_pingpong,
    "genserver_call": genserver_call,
    "pykka_ask": pykka_ask,
    "gevent_spawn_join": gevent_spawn_join,
    "process_spawn_exit": process_spawn_exit,
    "pykka_start_stop": pykka_start_stop,
}

COMPARISONS = [
    # (label, ours, baseline, target on the median ratio)
    ("send+receive round trip", "process_pingpong", "queue_pingpong", ">= 0.7"),
    ("GenServer.call round trip", "genserver_call", "queue_pingpong", ">= 0.8"),
    ("GenServer.call round trip", "genserver_call", "pykka_ask", ">= 1"),
    ("GenServer.call round trip", "genserver_call", "process_pingpong", ""),
    ("spawn + exit", "process_spawn_exit", "gevent_spawn_join", ">= 0.5"),
    ("spawn + exit", "process_spawn_exit", "pykka_start_stop", ">= 1"),
]

LABELS = {
    "queue_pingpong": "raw gevent Queue ping-pong",
    "process_pingpong": "send+receive ping-pong",
    "genserver_call": "GenServer.call",
    "pykka_ask": "Pykka 2.0.3 GeventActor ask",
    "gevent_spawn_join": "gevent.spawn + join",
    "process_spawn_exit": "spawn + exit",
    "pykka_start_stop": "Pykka start + stop",
}


def run_all(rounds: int) -> dict[str, Any]:
    """Every benchmark once per round, the order rotating: each round's microseconds per operation."""
    recorded = Rounds()
    for fn in BENCHES.values():
        fn()  # warm up
    for r in range(rounds):
        for name in rotated(list(BENCHES), r):
            recorded.add(r, "local", name, {"us": BENCHES[name]() * 1e6})
    return {"rounds": recorded.as_json()}


def rows(result: dict[str, Any]) -> list[Row]:
    rounds = Rounds(result["rounds"])
    return [
        Row(f"local {label}", figure_text(rounds.figure("local", ours, "us"), "us"),
            f"{LABELS[base]}: {figure_text(rounds.figure('local', base, 'us'), 'us')}",
            rounds.compare("local", "us", ours, base, False), target)
        for label, ours, base, target in COMPARISONS
    ]  # fmt: skip


def format_report(result: dict[str, Any]) -> str:
    count = Rounds(result["rounds"]).count
    header = f"actors: CPU time per operation over {count} interleaved rounds; ratio = baseline / ours, per round"
    return header + "\n" + markdown(rows(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_actors", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print every round's figures and the table as JSON too")
    parser.add_argument("--profile", choices=sorted(BENCHES), help="cProfile one benchmark instead")
    args, _unknown = parser.parse_known_args(argv)
    saved_logging = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        if args.profile:
            fn = BENCHES[args.profile]
            fn()
            profiler = cProfile.Profile()
            profiler.runcall(fn)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return 0
        result = run_all(args.rounds)
        print(format_report(result))
        if args.json:
            print(json.dumps({**result, "table": [row.as_dict() for row in rows(result)]}))
    finally:
        stop_all()
        structlog.configure(**saved_logging)
    return 0


if __name__ == "__main__":
    sys.exit(main())
