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
them; each figure is the best of several interleaved rounds. A ratio is
baseline time / our time: above 1 means faster than the baseline.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue

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
    # (label, ours, baseline, target ratio)
    ("(a) send+receive round trip", "process_pingpong", "queue_pingpong", 0.7),
    ("(b) GenServer.call round trip", "genserver_call", "pykka_ask", 1.0),
    ("(b) GenServer.call vs Queue ping-pong", "genserver_call", "queue_pingpong", None),
    ("(b) GenServer.call vs process ping-pong", "genserver_call", "process_pingpong", None),
    ("(c) spawn + exit", "process_spawn_exit", "gevent_spawn_join", 0.5),
    ("(c) spawn + exit vs Pykka start+stop", "process_spawn_exit", "pykka_start_stop", 1.0),
]


def run_all(rounds: int) -> dict[str, float]:
    """Best time of each benchmark; rounds interleave them so that a burst of
    load on the machine hits ours and the baselines alike."""
    results: dict[str, float] = {}
    for fn in BENCHES.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, fn in BENCHES.items():
            secs = fn()
            results[name] = min(secs, results.get(name, secs))
    return results


def format_report(results: dict[str, float]) -> str:
    lines = ["actors: time per operation (best of rounds), ratio = baseline / ours"]
    for name, secs in results.items():
        lines.append(f"  {name:<22} {secs * 1e6:9.2f} us")
    lines.append("")
    lines.append(f"  {'comparison':<40} {'ratio':>7}  {'target':>7}  ok")
    for label, ours, base, target in COMPARISONS:
        ratio = results[base] / results[ours]
        tgt = f">={target:.2f}" if target is not None else "-"
        ok = "" if target is None else ("yes" if ratio >= target else "NO")
        lines.append(f"  {label:<40} {ratio:7.2f}  {tgt:>7}  {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_actors", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", choices=sorted(BENCHES), help="cProfile one benchmark instead")
    args = parser.parse_args(argv)
    try:
        if args.profile:
            fn = BENCHES[args.profile]
            fn()
            profiler = cProfile.Profile()
            profiler.runcall(fn)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return 0
        print(format_report(run_all(args.rounds)))
    finally:
        stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
