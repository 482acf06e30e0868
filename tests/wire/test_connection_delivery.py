"""How a Connection hands received frames over: in the hub for plain TCP
(no reader greenlet per chunk), and `defer_rest`, which lets what one frame
woke run before the next frame of the same chunk is applied."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import gevent.queue
import pytest
from gevent.hub import get_hub

from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ConnectionConfig
from paxtor.actors.listener import Listener

COOKIE = b"delivery-test-cookie"
WAIT = 10.0


def config(name: str) -> ConnectionConfig:
    return ConnectionConfig(name, 1, COOKIE, heartbeat_interval=0.5, heartbeat_timeout=30.0)


class Server:
    """A listener whose on_message is set per test; records what it saw."""

    def __init__(self) -> None:
        self.seen: gevent.queue.Queue[Any] = gevent.queue.Queue()
        self.on_message = lambda conn, msg: self.seen.put(msg)
        self.up: gevent.queue.Queue[Connection] = gevent.queue.Queue()
        self.listener = Listener(config("srv"), on_message=lambda c, m: self.on_message(c, m),
                                 on_close=lambda c, r: None, on_up=self.up.put).start()

    def client(self) -> Connection:
        conn = Connection.connect(config("cli"), "127.0.0.1", self.listener.port,
                                  on_message=lambda c, m: None, on_close=lambda c, r: None)
        assert conn.wait_up(WAIT), conn.close_reason
        self.up.get(timeout=WAIT)
        return conn

    def take(self, n: int) -> list[Any]:
        return [self.seen.get(timeout=WAIT) for _ in range(n)]


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.listener.stop()


def test_plain_tcp_frames_are_handed_over_in_the_hub(server: Server) -> None:
    def on_message(conn: Connection, msg: Any) -> None:
        server.seen.put((msg, gevent.getcurrent() is get_hub()))

    server.on_message = on_message
    conn = server.client()
    conn.send("x")
    assert server.take(1) == [("x", True)]
    conn.close("done")


def _apply_with_wakes(server: Server, messages: tuple[str, ...], defer: bool) -> tuple[list[Any], Connection]:
    """Send `messages` in one loop turn; each "wake" schedules a hub callback (as a process
    it woke would run) and, if `defer`, calls `defer_rest`. The order things happened in."""
    order: list[Any] = []
    done = gevent.event.Event()

    def on_message(conn: Connection, msg: Any) -> None:
        order.append(msg)
        if msg == "wake":
            get_hub().loop.run_callback(order.append, "woken")
            if defer:
                conn.defer_rest()
        if msg == "last":
            done.set()

    server.on_message = on_message
    conn = server.client()
    for msg in messages:
        conn.send(msg)  # one loop turn: one write, most likely one chunk
    assert done.wait(WAIT)
    return order, conn


def test_defer_rest_lets_what_a_frame_scheduled_run_before_the_next_frame(server: Server) -> None:
    order, conn = _apply_with_wakes(server, ("before", "wake", "after", "wake", "last"), defer=True)
    assert order == ["before", "wake", "woken", "after", "wake", "woken", "last"]
    conn.send("still reading")
    server.on_message = lambda c, m: server.seen.put(m)
    assert server.take(1) == ["still reading"]
    conn.close("done")


def test_without_defer_rest_a_chunk_is_applied_at_once(server: Server) -> None:
    order, conn = _apply_with_wakes(server, ("wake", "after", "last"), defer=False)
    assert order.index("woken") > order.index("after")  # the contrast the test above relies on
    conn.close("done")


def test_a_connection_closed_from_on_message_stops_reading(server: Server) -> None:
    closed = gevent.event.Event()
    seen: list[Any] = []

    def on_message(conn: Connection, msg: Any) -> None:
        seen.append(msg)
        if msg == "stop":
            conn.close("asked")
            closed.set()

    server.on_message = on_message
    conn = server.client()
    for msg in ("a", "stop", "never"):
        conn.send(msg)
    assert closed.wait(WAIT)
    assert conn.wait_closed(WAIT)
    assert seen == ["a", "stop"]
