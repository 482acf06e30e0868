"""Module-level functions and servers the Paxtor tests start on nodes (remote
spawns and singleton child specs name them as "paxtor_helpers:NAME", so the
subprocess nodes import this module too)."""

from __future__ import annotations

import time
from typing import Any

import gevent

import paxtor
from paxtor import paxos
from paxtor.actors import GenServer, Stop, call, exit, receive, self_pid, send
from paxtor.actors.distribution import node
from paxtor.actors.primitives import is_alive
from paxtor.paxos.config import MAX_REQUEST_BYTES


def lock_and_park(key: Any, reply_to: Any) -> None:
    """Take the lock, report ("locked", pid, token, node), then wait: ("unlock",) or ("exit", reason)."""
    token = paxtor.lock(key)
    send(reply_to, ("locked", self_pid(), token, node()))
    while True:
        msg = receive()
        if msg == ("unlock",):
            paxtor.unlock(key)
            send(reply_to, ("unlocked", self_pid()))
        elif isinstance(msg, tuple) and msg[0] == "exit":
            exit(msg[1])


def lock_and_report(key: Any, reply_to: Any, timeout: float | None = None) -> None:
    """Take the lock (reporting ("locked", pid, token) or ("timeout", pid)), then park."""
    try:
        token = paxtor.lock(key, timeout=timeout)
    except TimeoutError:
        send(reply_to, ("timeout", self_pid()))
        return
    send(reply_to, ("locked", self_pid(), token, node()))
    receive(lambda m: m == ("exit",))


class Counter(GenServer):
    """The seed README's counter: ``call(via, "inc")`` answers n, then n + 1."""

    def init(self, start: int = 1) -> None:
        self.n = start

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "inc":
            self.n += 1
            return self.n - 1
        if request == "where":
            return node()
        if request == "stop":
            raise Stop("normal", reply="stopping")
        raise ValueError(f"unknown request {request!r}")


class Reporter(GenServer):
    """Tells `collector` ("started", pid, node) in init, after `delay` seconds there."""

    def init(self, arg: Any) -> None:
        collector, delay = arg
        if delay:
            gevent.sleep(delay)  # a slow init: a second start would overlap it
        send(collector, ("started", self_pid(), node(), time.monotonic()))

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "where":
            return node()
        if request == "pid":
            return self_pid()
        return request

    def handle_info(self, msg: Any) -> None:
        if isinstance(msg, tuple) and msg[0] == "echo":
            send(msg[1], ("echo", self_pid(), msg[2]))


class Failing(GenServer):
    """A singleton whose init fails."""

    def init(self, why: str = "no") -> None:
        raise RuntimeError(f"refusing to start: {why}")


def start_echo_worker() -> Any:
    """A start function (not a GenServer): a linked process echoing (sender, msg)."""
    from paxtor.actors import spawn_link

    return spawn_link(echo_worker)


def echo_worker() -> None:
    while True:
        frm, msg = receive()
        send(frm, ("echoed", node(), msg))


def start_short_job(report_to: Any) -> Any:
    """A start function whose process does one thing and exits at once (a short job)."""
    from paxtor.actors import spawn_link

    return spawn_link(send, report_to, ("job_ran", node()))


def call_singleton(key: Any, spec: Any, request: Any, reply_to: Any) -> None:
    """Call the singleton `key` (started from `spec`) with `request`; report ("called", key, node, answer, pid)."""
    via = paxtor.name(key, spec)
    answer = call(via, request)
    send(reply_to, ("called", key, node(), answer, paxtor.whereis(via)))


def put_sized(key: Any, size: int, reply_to: Any) -> None:
    """``paxos.put(key, b"x" * size)`` here; report ("put", key, node, None) or the ValueError's text."""
    from paxtor import paxos

    try:
        paxos.put(key, b"x" * size, timeout=10)
    except ValueError as exc:
        send(reply_to, ("put", key, node(), str(exc)))
    else:
        send(reply_to, ("put", key, node(), None))


class LoopStall:
    """The longest this node's loop went without running a 10 ms timer, from now until `stop`
    (a greenlet of its own: what every lease keeper and connection of the node waited)."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick = tick
        self.longest = 0.0
        self._since = time.monotonic()
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.tick)
            now = time.monotonic()
            self.longest = max(self.longest, now - self._since - self.tick)
            self._since = now

    def stop(self) -> float:
        """The longest stall, the one under way included."""
        self._greenlet.kill()
        return max(self.longest, time.monotonic() - self._since - self.tick)


def large_then_too_large(reply_to: Any, holder: Any) -> None:
    """On the holder's node: four requests just under the default `max_request_bytes`, then
    five over it. Reports ("large_done", pid, what each refusal said (or "accepted"), the
    node's lease term before and after, whether `holder` still lives, the longest loop stall)."""
    stall = LoopStall()
    term = paxos.lease_term()
    for i in range(4):  # large but allowed: about 1.4 MiB each, key and value
        assert paxos.put(("large", i), b"v" * (MAX_REQUEST_BYTES - 100_000)) is not None
        assert len(paxos.get(("large", i))) == MAX_REQUEST_BYTES - 100_000
    refused = []
    for request in (
        lambda: paxos.put("too large", b"v" * (MAX_REQUEST_BYTES + 1)),  # the value alone
        lambda: paxos.put("k" * (MAX_REQUEST_BYTES + 1), 1),  # the key alone
        lambda: paxos.put(b"k" * (MAX_REQUEST_BYTES // 2), "v" * (MAX_REQUEST_BYTES // 2 + 10)),  # together
        lambda: paxos.put(("k", bytes(40 * 2**20)), 1),  # the 40 MiB key (zeros: calloc, no cost here)
        lambda: paxtor.lock(b"L" * (MAX_REQUEST_BYTES + 1)),
    ):
        try:
            request()
            refused.append("accepted")
        except ValueError as exc:
            refused.append(str(exc))
    send(reply_to, ("large_done", self_pid(), refused, term, paxos.lease_term(), is_alive(holder), stall.stop()))


def try_lock_and_report(key: Any, reply_to: Any) -> None:
    """Report ("try_lock", pid, what `paxtor.try_lock(key)` returned)."""
    send(reply_to, ("try_lock", self_pid(), paxtor.try_lock(key)))
