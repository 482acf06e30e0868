"""Module-level functions and servers that tests spawn on other nodes (a
remote spawn names them as "dist.remote_helpers:NAME", so the subprocess
nodes of test_node_command import this module too)."""

from __future__ import annotations

from typing import Any

import gevent

from paxtor.actors import GenServer, NoReply, exit, receive, reply, self_pid, send, spawn
from paxtor.actors.distribution import distributed_node, node, nodes


def echo_loop() -> None:
    """Echo every (sender, msg) back to the sender."""
    while True:
        frm, msg = receive()
        send(frm, msg)


def waiter() -> None:
    """Wait for one message, then end normally."""
    receive()


def exit_with(reason: Any) -> None:
    """End at once with `reason`."""
    exit(reason)


def crash_on_message() -> None:
    """Crash with ValueError(msg) on the first message."""
    msg = receive()
    raise ValueError(f"boom: {msg}")


def report_node(reply_to: Any, tag: Any = "ran_on") -> None:
    """Tell `reply_to` which node this runs on."""
    send(reply_to, (tag, node(), self_pid()))


def report_mesh(reply_to: Any, names: list[str], timeout: float) -> None:
    """Wait until this node is connected to `names`, then report its peers."""
    dist = distributed_node()
    meshed = dist is not None and dist.wait_for_nodes(names, timeout)
    send(reply_to, ("mesh", node(), meshed, nodes()))


def collect(reply_to: Any, total: int) -> None:
    """Receive `total` (sender, seq) messages; report per-sender counts and
    whether every sender's sequence arrived in order without gaps."""
    last: dict[Any, int] = {}
    in_order = True
    for _ in range(total):
        sender, seq = receive()
        if seq != last.get(sender, -1) + 1:
            in_order = False
        last[sender] = seq
    send(reply_to, ("collected", {s: n + 1 for s, n in last.items()}, in_order))


def send_sequence(dest: Any, sender: Any, count: int) -> None:
    """Send (sender, 0..count-1) to `dest`, yielding now and then."""
    for seq in range(count):
        send(dest, (sender, seq))
        if seq % 50 == 49:
            gevent.sleep(0)


def ticker(dest: Any, count: int, interval: float) -> None:
    """Send ("tick", i) to `dest` every `interval` seconds."""
    for i in range(count):
        send(dest, ("tick", i))
        gevent.sleep(interval)


class EchoServer(GenServer):
    """Answers calls with ("echo", request); a few requests do more."""

    def init(self) -> None:
        self.memory: Any = None

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "recall":
            return self.memory
        if isinstance(request, tuple) and request[:1] == ("sleep",):
            _, seconds, answer = request
            gevent.sleep(seconds)
            return answer
        if isinstance(request, tuple) and request[:1] == ("notify_then_hang",):
            send(request[1], ("hanging", self_pid()))
            return NoReply
        if request == "crash":
            raise RuntimeError("server crashed on purpose")
        if request == "pid_and_node":
            return (self_pid(), node())
        if isinstance(request, tuple) and request[:1] == ("delegate",):
            spawn(reply, caller, request[1])  # another process answers
            return NoReply
        return ("echo", request)

    def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, tuple) and msg[:1] == ("remember",):
            self.memory = msg[1]
        elif isinstance(msg, tuple) and msg[:1] == ("reply_later",):
            reply(msg[1], msg[2])


def start_echo_server(name: str | None = None) -> Any:
    """Start an EchoServer (unlinked) on the current node; return its pid."""
    return EchoServer.start(name=name)


def start_echo_server_and_report(reply_to: Any, name: str | None = None) -> None:
    send(reply_to, ("server", start_echo_server(name)))
    receive()  # stay alive so a registered name stays resolvable
