"""Module-level functions and servers the Paxtor tests start on nodes (remote
spawns and singleton child specs name them as "paxtor_helpers:NAME", so the
subprocess nodes import this module too)."""

from __future__ import annotations

import time
from typing import Any

import gevent

import paxtor
from paxtor.actors import GenServer, Stop, call, exit, receive, self_pid, send
from paxtor.actors.distribution import node


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
