"""Connections over real loopback TCP in one process: delivery, batching,
hostile peers, heartbeats and fault injection."""

from __future__ import annotations

import random
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.queue
import gevent.socket
import pytest
from structlog.testing import capture_logs

from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ConnectionConfig
from paxtor.actors.faults import FaultInjector
from paxtor.actors.framing import FrameDecoder, frame
from paxtor.actors.handshake import Initiator, pack_message, unpack_message
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.listener import Listener
from paxtor.actors.wire import RemoteError, encode

COOKIE = b"test-cookie"
WAIT = 10.0  # generous upper bound for anything that should happen "soon"


def config(name: str, **overrides: Any) -> ConnectionConfig:
    settings: dict[str, Any] = dict(
        incarnation=1, cookie=COOKIE, handshake_timeout=5.0, heartbeat_interval=0.5, heartbeat_timeout=30.0
    )
    settings.update(overrides)
    return ConnectionConfig(name, **settings)


class Endpoint:
    """Callbacks that record what a side of the connection saw."""

    def __init__(self) -> None:
        self.messages: gevent.queue.Queue[Any] = gevent.queue.Queue()
        self.closed: gevent.queue.Queue[tuple[Connection, str]] = gevent.queue.Queue()
        self.up: gevent.queue.Queue[Connection] = gevent.queue.Queue()
        self.close_calls: list[tuple[Connection, str]] = []

    def on_message(self, conn: Connection, message: Any) -> None:
        self.messages.put(message)

    def on_close(self, conn: Connection, reason: str) -> None:
        self.close_calls.append((conn, reason))
        self.closed.put((conn, reason))

    def on_up(self, conn: Connection) -> None:
        self.up.put(conn)

    def callbacks(self) -> dict[str, Any]:
        return dict(on_message=self.on_message, on_close=self.on_close, on_up=self.on_up)

    def take(self, n: int) -> list[Any]:
        return [self.messages.get(timeout=WAIT) for _ in range(n)]

    def next_close(self) -> tuple[Connection, str]:
        return self.closed.get(timeout=WAIT)


class Cluster:
    """A listening node "a" and helpers to connect to it; cleans up after."""

    def __init__(self, listener_options: dict[str, Any] | None = None, **listener_config: Any) -> None:
        self.server = Endpoint()
        options = listener_options or {}
        self.listener = Listener(config("a", **listener_config), **self.server.callbacks(), **options).start()
        self.connections: list[Connection] = []
        self.sockets: list[Any] = []

    def connect(
        self, name: str = "b", endpoint: Endpoint | None = None, **overrides: Any
    ) -> tuple[Connection, Endpoint]:
        endpoint = endpoint or Endpoint()
        expected = overrides.pop("expected_peer", None)
        conn = Connection.connect(
            config(name, **overrides), "127.0.0.1", self.listener.port, expected_peer=expected, **endpoint.callbacks()
        )
        self.connections.append(conn)
        return conn, endpoint

    def pair(self, name: str = "b", **overrides: Any) -> tuple[Connection, Endpoint, Connection]:
        """A connected client (conn, its endpoint) and the server-side connection."""
        conn, endpoint = self.connect(name, **overrides)
        assert conn.wait_up(WAIT), conn.close_reason
        server_conn = self.server.up.get(timeout=WAIT)
        return conn, endpoint, server_conn

    def raw_socket(self) -> Any:
        sock = gevent.socket.create_connection(("127.0.0.1", self.listener.port))
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for conn in self.connections:
            conn.close("test_over")
        for sock in self.sockets:
            sock.close()
        self.listener.stop()

    def assert_still_serving(self, name: str = "good") -> None:
        conn, endpoint, server_conn = self.pair(name)
        conn.send(("ping", name))
        assert self.server.take(1) == [("ping", name)]
        server_conn.send("pong")
        assert endpoint.take(1) == ["pong"]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def poll_until(condition: Any, timeout: float = WAIT) -> None:
    """Only for what nothing can signal (a frame silently dropped)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.01)


def read_until_closed(sock: Any, timeout: float = WAIT) -> bytes:
    """Everything the listener sends until it closes the socket."""
    data = b""
    with gevent.Timeout(timeout):
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def raw_handshake(sock: Any, name: str = "rogue", cookie: bytes = COOKIE) -> None:
    """Authenticate a raw socket as an initiator, to misbehave afterwards."""
    machine = Initiator(cookie=cookie, name=name, incarnation=1, random_bytes=random.Random(3).randbytes)
    sock.sendall(b"".join(frame(pack_message(m)) for m in machine.start().send))
    decoder = FrameDecoder()
    while machine.outcome is None:
        for payload in decoder.feed(sock.recv(4096)):
            step = machine.receive(unpack_message(payload))
            sock.sendall(b"".join(frame(pack_message(m)) for m in step.send))
    assert machine.outcome.name == "a"  # type: ignore[union-attr]


# ------------------------------------------------------------------ delivery


def test_messages_arrive_in_order_both_ways(cluster: Cluster) -> None:
    conn, endpoint, server_conn = cluster.pair()
    assert conn.peer_name == "a" and server_conn.peer_name == "b"
    assert conn.peer is not None and conn.peer.incarnation == 1
    values = list(range(500)) + [("tuple", Pid("b", 1, 2)), {Ref("b", 1, 3): {1, 2}}, ValueError("x")]
    for v in values:
        conn.send(v)
    got = cluster.server.take(len(values))
    assert got[:500] == list(range(500))
    assert got[500:] == [("tuple", Pid("b", 1, 2)), {Ref("b", 1, 3): {1, 2}}, RemoteError("builtins.ValueError", "x")]
    for i in range(100):
        server_conn.send(("reply", i))
    assert endpoint.take(100) == [("reply", i) for i in range(100)]


def test_messages_sent_before_the_handshake_are_delivered_after_it(cluster: Cluster) -> None:
    conn, _ = cluster.connect()
    assert conn.state == "handshaking"
    for i in range(10):
        conn.send(i)
    assert cluster.server.take(10) == list(range(10))


def test_large_message_near_the_frame_limit(cluster: Cluster) -> None:
    conn, _, _ = cluster.pair()
    blob = bytes(range(256)) * (4 * 2**12)  # 4 MiB
    conn.send(("blob", blob))
    assert cluster.server.take(1) == [("blob", blob)]


def test_all_sends_of_one_loop_turn_go_out_in_one_write(cluster: Cluster) -> None:
    conn, _, _ = cluster.pair(heartbeat_interval=60.0, heartbeat_timeout=120.0)
    before = conn.stats.writes
    for i in range(200):  # no yield in between: one loop turn
        conn.send(("cast", i))
    assert cluster.server.take(200) == [("cast", i) for i in range(200)]
    assert conn.stats.writes - before == 1


def test_sends_from_several_greenlets_in_one_turn_share_a_write(cluster: Cluster) -> None:
    conn, _, _ = cluster.pair(heartbeat_interval=60.0, heartbeat_timeout=120.0)
    before = conn.stats.writes

    def sender(k: int) -> None:
        for i in range(10):
            conn.send((k, i))

    gevent.joinall([gevent.spawn(sender, k) for k in range(8)])
    got = cluster.server.take(80)
    assert sorted(got) == sorted((k, i) for k in range(8) for i in range(10))
    for k in range(8):  # per-sender order is kept
        assert [i for (kk, i) in got if kk == k] == list(range(10))
    assert conn.stats.writes - before == 1


def test_unencodable_message_raises_in_the_sender_and_the_connection_lives(cluster: Cluster) -> None:
    conn, _, _ = cluster.pair()
    with pytest.raises(TypeError, match="builtins.object"):
        conn.send(("bad", object()))
    conn.send("after")
    assert cluster.server.take(1) == ["after"]
    assert conn.is_up


def test_message_over_the_frame_limit_raises_in_the_sender() -> None:
    c = Cluster(max_frame_size=1000)
    try:
        conn, _, _ = c.pair(max_frame_size=1000)
        with pytest.raises(ValueError, match="exceeds the frame limit"):
            conn.send(b"x" * 2000)
        conn.send("small")
        assert c.server.take(1) == ["small"]
    finally:
        c.close()


def test_acceptor_may_send_from_on_up_right_after_its_proof() -> None:
    server = Endpoint()
    listener = Listener(
        config("a"),
        on_message=server.on_message,
        on_close=server.on_close,
        on_up=lambda conn: [conn.send(("welcome", conn.peer_name, i)) for i in range(3)],
    ).start()
    client = Endpoint()
    conn = Connection.connect(config("b"), "127.0.0.1", listener.port, **client.callbacks())
    try:
        assert client.take(3) == [("welcome", "b", i) for i in range(3)]
    finally:
        conn.close()
        listener.stop()


def test_busy_and_wait_drained_follow_a_slow_reader() -> None:
    c = Cluster(busy_limit=64 * 1024)
    sock = c.raw_socket()
    raw_handshake(sock)
    server_conn = c.server.up.get(timeout=WAIT)
    try:
        blob = b"x" * 2**20
        for _ in range(16):  # more than the loopback buffers take while nobody reads
            server_conn.send(blob)
        assert server_conn.busy
        assert not server_conn.wait_drained(timeout=0.2)
        gevent.spawn(read_until_closed, sock)  # the peer starts reading
        assert server_conn.wait_drained(timeout=WAIT)
        assert not server_conn.busy
    finally:
        c.close()


# ------------------------------------------------------------------- closing


def test_close_runs_on_close_exactly_once_on_each_side(cluster: Cluster) -> None:
    conn, endpoint, server_conn = cluster.pair()
    conn.close("done")
    conn.close("again")
    assert endpoint.next_close() == (conn, "done")
    closed_conn, reason = cluster.server.next_close()
    assert closed_conn is server_conn and reason == "peer_closed"
    assert conn.wait_closed(WAIT) and server_conn.wait_closed(WAIT)
    server_conn.close("late")
    assert len(endpoint.close_calls) == 1 and len(cluster.server.close_calls) == 1
    assert conn.close_reason == "done" and conn.state == "closed"
    conn.send("into the void")  # dropped, no error


def test_exception_in_on_message_closes_that_connection(cluster: Cluster) -> None:
    conn, endpoint, server_conn = cluster.pair()
    server_conn._reader.on_message = lambda c, m: 1 / 0
    with capture_logs() as logs:
        conn.send("boom")
        _, reason = cluster.server.next_close()
    assert reason.startswith("on_message_failed")
    assert any(e["event"] == "on_message_failed" for e in logs)
    assert endpoint.next_close()[1] == "peer_closed"
    cluster.assert_still_serving()


def test_connect_to_a_closed_port_fails_cleanly() -> None:
    probe = gevent.socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    endpoint = Endpoint()
    conn = Connection.connect(config("b"), "127.0.0.1", port, **endpoint.callbacks())
    assert not conn.wait_up(WAIT)
    assert endpoint.next_close()[1].startswith("connect_failed")
    assert conn.peer is None


def test_listener_stop_closes_its_connections(cluster: Cluster) -> None:
    conn, endpoint, _ = cluster.pair()
    cluster.listener.stop()
    assert cluster.server.next_close()[1] == "listener_stopped"
    assert endpoint.next_close()[1] == "peer_closed"
    with pytest.raises(OSError):
        gevent.socket.create_connection(("127.0.0.1", cluster.listener.port), timeout=2)


# ------------------------------------------------------------ authentication


def test_wrong_cookie_is_refused_and_logged_on_both_sides(cluster: Cluster) -> None:
    with capture_logs() as logs:
        conn, endpoint = cluster.connect("intruder", cookie=b"wrong-cookie")
        assert not conn.wait_up(WAIT)
        client_reason = endpoint.next_close()[1]
        server_conn, server_reason = cluster.server.next_close()
    assert client_reason == "refused_by_peer: bad_cookie"
    assert server_reason.startswith("bad_cookie")
    assert server_conn.peer is None and not cluster.server.messages.qsize()
    failures = {(e["local"], e["reason"].split(":")[0]) for e in logs if e["event"] == "handshake_failed"}
    assert failures == {("a", "bad_cookie"), ("intruder", "refused_by_peer")}
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "handshake_failed")
    assert cluster.server.up.qsize() == 0
    cluster.assert_still_serving()


def test_peer_using_our_own_name_is_refused(cluster: Cluster) -> None:
    conn, endpoint = cluster.connect("a")
    assert not conn.wait_up(WAIT)
    assert endpoint.next_close()[1] == "refused_by_peer: own_name"
    assert cluster.server.next_close()[1].startswith("own_name")


def test_unexpected_peer_name_fails_the_initiator(cluster: Cluster) -> None:
    conn, endpoint = cluster.connect("b", expected_peer="z")
    assert not conn.wait_up(WAIT)
    assert endpoint.next_close()[1].startswith("unexpected_peer")


def test_admit_hook_refuses_a_duplicate() -> None:
    c = Cluster(admit=lambda name, inc: "duplicate" if name == "dup" else None)
    try:
        conn, endpoint = c.connect("dup")
        assert not conn.wait_up(WAIT)
        assert endpoint.next_close()[1] == "refused_by_peer: duplicate"
        c.assert_still_serving()
    finally:
        c.close()


# ------------------------------------------------------------ hostile peers


def test_random_bytes_close_that_connection_only(cluster: Cluster) -> None:
    sock = cluster.raw_socket()
    sock.sendall(random.Random(7).randbytes(5000))
    read_until_closed(sock)
    assert cluster.server.next_close()[1].startswith("malformed")
    cluster.assert_still_serving()


def test_small_garbage_frame_before_auth_is_malformed(cluster: Cluster) -> None:
    sock = cluster.raw_socket()
    sock.sendall(frame(b"\x93\x01\x02\x03"))
    read_until_closed(sock)
    assert cluster.server.next_close()[1].startswith("malformed")
    cluster.assert_still_serving()


def test_oversized_frame_header_before_auth(cluster: Cluster) -> None:
    sock = cluster.raw_socket()
    sock.sendall(b"\xff\xff\xff\xff")
    read_until_closed(sock)
    reason = cluster.server.next_close()[1]
    assert reason.startswith("malformed") and "exceeds the limit" in reason
    cluster.assert_still_serving()


def test_half_frame_then_close(cluster: Cluster) -> None:
    sock = cluster.raw_socket()
    sock.sendall(b"\x00\x00\x00\x40" + b"x" * 10)
    sock.close()
    assert cluster.server.next_close()[1].startswith("peer_closed")
    cluster.assert_still_serving()


def test_slow_loris_is_dropped_at_the_handshake_deadline() -> None:
    c = Cluster(handshake_timeout=0.5)
    try:
        silent = c.raw_socket()
        trickler = c.raw_socket()
        started = time.monotonic()

        def trickle() -> None:  # a valid-looking hello header, one byte at a time
            for byte in b"\x00\x00\x00\x30":
                trickler.sendall(bytes([byte]))
                gevent.sleep(0.1)

        gevent.spawn(trickle)
        reasons = sorted(c.server.next_close()[1].split(":")[0] for _ in range(2))
        assert reasons == ["handshake_timeout", "handshake_timeout"]
        assert time.monotonic() - started >= 0.5
        assert read_until_closed(silent) == b""
        c.assert_still_serving()
    finally:
        c.close()


def junk_from(source: str, port: int, count: int) -> list[Any]:
    """`count` connections from address `source` that never say a word."""
    socks = []
    for _ in range(count):
        sock = gevent.socket.socket()
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    return socks


@pytest.mark.parametrize("junk_source", ["127.0.0.2", "127.0.0.1"])
def test_a_peer_gets_a_slot_when_junk_holds_them_all(junk_source: str) -> None:
    c = Cluster({"max_pending_handshakes": 4}, handshake_timeout=30.0)  # 4 handshakes at most
    junk = junk_from(junk_source, c.listener.port, 4)
    try:
        conn, _ = c.connect("legit")
        assert conn.wait_up(WAIT), conn.close_reason  # the silent junk made room, the peer did not wait
        assert read_until_closed(junk[0]) == b""  # the oldest junk went
        assert c.listener.evicted >= 1
    finally:
        for sock in junk:
            sock.close()
        c.close()


def test_a_flood_from_one_source_evicts_only_its_own() -> None:
    c = Cluster({"max_pending_handshakes": 5, "max_pending_per_source": 3}, handshake_timeout=30.0)
    junk: list[Any] = []
    try:
        slow = c.raw_socket()  # from 127.0.0.1: says Hello, then takes its time
        initiator = Initiator(cookie=COOKIE, name="slow", incarnation=1, random_bytes=random.randbytes)
        slow.sendall(frame(pack_message(initiator.start().send[0])))
        challenge = unpack_message(FrameDecoder().feed(slow.recv(4096))[0])  # it is pending now
        junk = junk_from("127.0.0.2", c.listener.port, 10)
        assert read_until_closed(junk[0]) == b""
        assert c.listener.evicted == 7  # the flood keeps its last three slots, no more
        slow.sendall(frame(pack_message(initiator.receive(challenge).send[0])))  # the proof, late
        assert c.server.up.get(timeout=WAIT).peer_name == "slow"
    finally:
        for sock in junk:
            sock.close()
        c.close()


def test_refused_handshakes_are_logged_once_per_source_and_kind_then_summed_up() -> None:
    c = Cluster({"failure_log_interval": 60.0}, handshake_timeout=30.0)
    try:
        with capture_logs() as logs:
            for _ in range(50):
                sock = c.raw_socket()
                sock.sendall(b"\x00\x00\x00\x02\xc1\xc1")  # a frame that is no handshake message
                assert read_until_closed(sock) == b""
            c.listener.stop()
        failed = [e for e in logs if e["event"] == "handshake_failed"]
        summed = [e for e in logs if e["event"] == "handshake_failures_suppressed"]
        assert len(failed) == 1 and failed[0]["reason"].startswith("malformed")
        assert [(e["source"], e["kind"], e["count"]) for e in summed] == [("127.0.0.1", "malformed", 49)]
    finally:
        c.close()


@pytest.mark.parametrize(
    ("bad_frame", "reason"),
    [
        (b"\xff\xff\xff\xff", "frame_error"),  # oversized after auth
        (frame(b"\xc1"), "malformed_frame"),  # not msgpack
        (frame(encode(1)[:0] + b"\xd4\x2a\x00"), "malformed_frame"),  # unknown ext code 42
        (frame(b"\x92\xc7\x00\x04\xa9nosuch:Cls"), "malformed_frame"),  # unknown wire type
    ],
)
def test_bad_frame_from_an_authenticated_peer_closes_only_it(cluster: Cluster, bad_frame: bytes, reason: str) -> None:
    sock = cluster.raw_socket()
    raw_handshake(sock)
    assert cluster.server.up.get(timeout=WAIT).peer_name == "rogue"
    with capture_logs() as logs:
        sock.sendall(frame(encode(("fine", 1))) + bad_frame)
        _, got = cluster.server.next_close()
    assert cluster.server.take(1) == [("fine", 1)]  # what came before is delivered
    assert got.startswith(reason)
    assert [e["peer"] for e in logs if e["event"] == "connection_closed"] == ["rogue"]
    cluster.assert_still_serving()


# ---------------------------------------------------------------- heartbeats


def test_heartbeats_keep_an_idle_connection_up(cluster: Cluster) -> None:
    conn, _, server_conn = cluster.pair(heartbeat_interval=0.05, heartbeat_timeout=0.5)
    received = server_conn.stats.frames_received
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(1.0):  # longer than the timeout: nothing may close it
            conn.wait_closed()
    assert conn.is_up and server_conn.stats.frames_received > received


def test_silent_peer_is_declared_dead_though_tcp_is_open() -> None:
    faults = FaultInjector()
    c = Cluster(faults=faults, heartbeat_interval=0.05, heartbeat_timeout=0.4)
    try:
        conn, endpoint, server_conn = c.pair(faults=faults, heartbeat_interval=0.05, heartbeat_timeout=0.4)
        faults.block("b", "a")  # b's frames (heartbeats included) no longer reach a
        _, reason = c.server.next_close()
        assert reason.startswith("heartbeat_timeout")
        assert endpoint.next_close()[1] == "peer_closed"  # b still heard a, until a hung up
    finally:
        c.close()


def test_write_stalled_on_a_peer_that_stops_reading() -> None:
    c = Cluster(heartbeat_interval=0.05, heartbeat_timeout=0.5)
    sock = c.raw_socket()
    raw_handshake(sock)
    server_conn = c.server.up.get(timeout=WAIT)

    def keep_alive() -> None:  # the peer keeps heartbeating but never reads
        while True:
            sock.sendall(frame(b""))
            gevent.sleep(0.05)

    alive = gevent.spawn(keep_alive)
    try:
        blob = b"x" * 2**20
        for _ in range(64):  # far more than loopback socket buffers hold
            server_conn.send(blob)
        assert c.server.next_close()[1].startswith("send_stalled")
    finally:
        alive.kill()
        c.close()


# ------------------------------------------------------------- fault injection


@pytest.fixture
def faulty() -> Iterator[tuple[Cluster, FaultInjector]]:
    faults = FaultInjector(seed=42)
    c = Cluster(faults=faults)
    yield c, faults
    c.close()


def test_one_way_block_drops_that_direction_only(faulty: tuple[Cluster, FaultInjector]) -> None:
    c, faults = faulty
    conn, endpoint, server_conn = c.pair(faults=faults)
    faults.block("b", "a")
    conn.send("lost")
    server_conn.send("a->b still works")
    assert endpoint.take(1) == ["a->b still works"]
    faults.unblock("b", "a")
    conn.send("after heal")
    assert c.server.take(1) == ["after heal"]  # "lost" never arrived, order says so


def test_partition_blocks_both_ways_then_heals(faulty: tuple[Cluster, FaultInjector]) -> None:
    c, faults = faulty
    conn, endpoint, server_conn = c.pair(faults=faults)
    faults.partition("a", "b")
    conn.send("lost1")
    server_conn.send("lost2")
    faults.heal()
    conn.send("ok1")
    server_conn.send("ok2")
    assert c.server.take(1) == ["ok1"]
    assert endpoint.take(1) == ["ok2"]


def test_partition_survives_reconnects(faulty: tuple[Cluster, FaultInjector]) -> None:
    c, faults = faulty
    faults.partition("a", "b")
    conn, endpoint = c.connect("b", faults=faults, expected_peer="a", handshake_timeout=0.5)
    assert not conn.wait_up(WAIT)
    assert endpoint.next_close()[1].startswith("handshake_timeout")
    faults.heal("a", "b")
    conn, _, _ = c.pair(faults=faults)
    assert conn.is_up


def test_random_drop_is_seeded_and_repeatable() -> None:
    def run(seed: int) -> list[int]:
        faults = FaultInjector(seed=seed)
        c = Cluster(faults=faults)
        try:
            conn, _, _ = c.pair(faults=faults)
            faults.drop("b", "a", 0.5)
            for i in range(200):
                conn.send(i)
            faults.drop("b", "a", 0.0)
            conn.send("end")
            got = []
            while (m := c.server.messages.get(timeout=WAIT)) != "end":
                got.append(m)
            return got
        finally:
            c.close()

    first = run(seed=1)
    assert 50 < len(first) < 150 and first == sorted(first)
    assert run(seed=1) == first
    assert run(seed=2) != first


def test_delay_holds_frames_and_keeps_order(faulty: tuple[Cluster, FaultInjector]) -> None:
    c, faults = faulty
    conn, _, _ = c.pair(faults=faults)
    faults.delay("b", "a", 0.3)
    started = time.monotonic()
    conn.send(1)
    faults.delay("b", "a", 0.0)
    conn.send(2)  # not delayed itself, but must not overtake 1
    assert c.server.take(2) == [1, 2]
    assert time.monotonic() - started >= 0.3


def test_incoming_drop_on_the_receiver_side(faulty: tuple[Cluster, FaultInjector]) -> None:
    c, faults = faulty
    conn, _, server_conn = c.pair(faults=faults)
    faults.link("a", "b").drop_in = 1.0
    conn.send("dropped by a")
    poll_until(lambda: server_conn.stats.frames_dropped == 1)  # nothing signals a drop
    faults.link("a", "b").drop_in = 0.0
    conn.send("kept")
    assert c.server.take(1) == ["kept"]


# ----------------------------------------------------------------------- TLS


def _make_tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    return server, client


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_connection_carries_messages_and_plain_peers_are_refused(tmp_path: Path) -> None:
    server_ctx, client_ctx = _make_tls_contexts(tmp_path)
    c = Cluster(server_ssl_context=server_ctx, handshake_timeout=2.0)
    try:
        conn, endpoint, server_conn = c.pair(client_ssl_context=client_ctx)
        conn.send(("over", "tls"))
        assert c.server.take(1) == [("over", "tls")]
        server_conn.send("back")
        assert endpoint.take(1) == ["back"]
        plain, plain_endpoint = c.connect("plain")
        assert not plain.wait_up(WAIT)
        assert c.server.next_close()[1].startswith(("tls_failed", "socket_error", "handshake_timeout"))
    finally:
        c.close()
