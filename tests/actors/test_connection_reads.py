"""A Connection reads into one buffer per connection, reused for every recv: what
it hands on must be a copy, or a later read would overwrite frames still held."""

from __future__ import annotations

from typing import Any

import gevent.queue

from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ConnectionConfig
from paxtor.actors.listener import Listener

COOKIE = b"connection-reads-cookie"
WAIT = 10.0


def test_frames_survive_the_reuse_of_a_small_read_buffer() -> None:
    seen: gevent.queue.Queue[Any] = gevent.queue.Queue()
    up: gevent.queue.Queue[Connection] = gevent.queue.Queue()
    # 7 bytes per recv: every frame spans reads, and most reads end inside a frame
    tiny = ConnectionConfig("srv", 1, COOKIE, recv_size=7, heartbeat_timeout=30.0)
    listener = Listener(tiny, on_message=lambda c, m: seen.put(m), on_close=lambda c, r: None,
                        on_up=up.put).start()
    try:
        conn = Connection.connect(ConnectionConfig("cli", 1, COOKIE, heartbeat_timeout=30.0),
                                  "127.0.0.1", listener.port,
                                  on_message=lambda c, m: None, on_close=lambda c, r: None)
        assert conn.wait_up(WAIT), conn.close_reason
        up.get(timeout=WAIT)
        sent = [("m", i, "x" * (i * 37 % 300), bytes(range(i % 256))) for i in range(200)]
        for i, message in enumerate(sent):
            conn.send(message)
            if i % 17 == 0:
                gevent.sleep(0)  # some frames alone in a write, most batched
        assert [seen.get(timeout=WAIT) for _ in sent] == sent
        conn.close()
    finally:
        listener.stop()
