"""The gevent driver of one node-to-node TCP connection, and its listener.

A `Connection` owns one connected socket (optionally TLS). Its life:

  handshaking  TCP connect (initiator), TLS handshake (if configured), then
               the cookie handshake (`paxtor.actors.handshake`), all under
               one deadline, `handshake_timeout`: a peer that never finishes
               (slow-loris) is dropped when it passes. Frames are limited to
               `MAX_HANDSHAKE_FRAME` until the peer has authenticated.
  up           `on_up(conn)` runs; frames are decoded and handed to
               `on_message(conn, msg)` one by one, in order: in the hub, by
               an io watcher's callback, for plain TCP (no greenlet switch
               per chunk received); by a reader greenlet for TLS. A writer greenlet
               writes everything `send()` queued during one hub loop turn
               with ONE ``sendall``; a heartbeat greenlet sends an empty
               frame every `heartbeat_interval` and declares the peer dead
               after `heartbeat_timeout` without a byte from it (even if TCP
               stays open), or when a write has been stuck that long
               (counted in ticks, so a stall of our own hub is not blamed
               on the peer).
  closed       `close(reason)` ran exactly once: greenlets stopped, socket
               closed, unsent frames discarded, `on_close(conn, reason)`
               called, and the event logged (``handshake_failed`` if the
               peer never authenticated, else ``connection_closed``).

Anything wrong on the wire (malformed frame, oversized frame, unknown ext
type or wire type, bad handshake) closes that connection with a logged reason
and touches nothing else. Callbacks run in the hub or in the connection's
greenlets and must not block (hand work to a queue/mailbox); an exception in
`on_message` closes the connection (a message lost silently would break
ordering). An `on_message` that must let what it woke run before the next
frame is applied calls `conn.defer_rest()`.

Messages `send()` queues before the handshake completes are written once it
does. `send()` never blocks; a sender that may outrun the network should
check `busy` and call `wait_drained()` (Erlang's busy dist port).

Fault injection (`paxtor.actors.faults`) is off unless `config.faults` is set.

Typical use by the distribution layer (one config, one listener per node):

    config = ConnectionConfig("node1", incarnation, resolve_cookie(cookie))
    listener = Listener(config, host="127.0.0.1", port=base_port + 1,
                        on_message=route, on_close=lost, on_up=joined).start()
    conn = Connection.connect(config, "127.0.0.1", base_port + 2,
                              expected_peer="node2",
                              on_message=route, on_close=lost, on_up=joined)
    conn.send(("link", from_pid, to_pid))   # any value `wire.encode` accepts

`on_close` runs for every Connection exactly once, including those that never
got up (``conn.peer is None``; e.g. a failed connect, to retry later). Two
nodes connecting to each other at the same time get two connections: keep one
by a deterministic rule (e.g. the one the smaller name initiated), refusing
the other with `config.admit` or closing it in `on_up`.
"""

from __future__ import annotations

import errno
import os
import socket as _stdsocket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import structlog
from gevent.hub import Waiter

from paxtor.actors.faults import FaultInjector, LinkFaults
from paxtor.actors.framing import MAX_FRAME_SIZE, FrameDecoder, FrameError, frame, frame_header
from paxtor.actors.handshake_slots import FailureTally, Pending, Suppressed, choose_evictions
from paxtor.actors.handshake import (
    MAX_HANDSHAKE_FRAME,
    Acceptor,
    Challenge,
    HandshakeFailed,
    HandshakeMessage,
    Hello,
    Initiator,
    Peer,
    pack_message,
    unpack_message,
)
from paxtor.actors.wire import WireError, decode, encode

__all__ = ["ConnectionConfig", "Connection", "ConnectionStats", "Listener", "ListenError", "bind_listener"]

log = structlog.get_logger(__name__)

OnMessage = Callable[["Connection", Any], None]
OnClose = Callable[["Connection", str], None]
OnUp = Callable[["Connection"], None]

_HEARTBEAT = frame(b"")
_HANDSHAKING = "handshaking"
_UP = "up"
_CLOSED = "closed"


class ClusterId:
    """The cluster id a node's handshakes carry: set once, when the node learns it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"ClusterId({self.value!r})"


@dataclass(frozen=True)
class ConnectionConfig:
    """What a node needs to open and accept connections (one per node)."""

    name: str
    incarnation: int
    cookie: bytes
    handshake_timeout: float = 5.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    max_frame_size: int = MAX_FRAME_SIZE
    busy_limit: int = 8 * 2**20
    """Bytes queued for writing above which `Connection.busy` is true."""
    recv_size: int = 256 * 2**10
    """The most read per recv, into one buffer per connection allocated once: a plain
    ``recv(256 KiB)`` allocates (mmap, mremap, munmap) per chunk, ~12 us each time."""
    server_ssl_context: ssl.SSLContext | None = None
    client_ssl_context: ssl.SSLContext | None = None
    faults: FaultInjector | None = None
    random_bytes: Callable[[int], bytes] = os.urandom
    admit: Callable[[str, int], str | None] | None = None
    """Acceptor only: may refuse an authenticated peer (returns a reason)."""
    cluster: ClusterId = field(default_factory=lambda: ClusterId(""))
    """The id of the cluster this node belongs to, told and checked at every handshake."""

    def __post_init__(self) -> None:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must exceed heartbeat_interval")
        if not self.cookie:
            raise ValueError("empty cookie")


@dataclass
class ConnectionStats:
    """Counters, for tests and benchmarks."""

    frames_sent: int = 0
    frames_received: int = 0
    writes: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_dropped: int = 0
    """Data frames lost to fault injection (either direction)."""


class Connection:
    """One node-to-node connection; create with `connect()` or via `Listener`."""

    #: where an initiator's socket is bound before it dials (None: the kernel picks)
    source_address: tuple[str, int] | None = None

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        role: str,
        on_message: OnMessage,
        on_close: OnClose,
        on_up: OnUp | None = None,
        sock: Any = None,
        address: tuple[str, int] | None = None,
        expected_peer: str | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if role not in ("initiator", "acceptor"):
            raise ValueError(f"bad role {role!r}")
        self.config = config
        self.role = role
        self.address = address
        self.expected_peer = expected_peer
        self.peer: Peer | None = None
        self.close_reason: str | None = None
        self.stats = ConnectionStats()
        self.faults: LinkFaults | None = None
        self._server_hostname = server_hostname
        self._on_message = on_message
        self._on_close = on_close
        self._on_up = on_up
        self._sock = sock
        self._state = _HANDSHAKING
        self._decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)
        self._early_frames: list[bytes] = []  # data frames that came with the last handshake frame
        self._early_error: FrameError | None = None
        self._claimed_peer: str | None = expected_peer
        self._greeted = False  # the peer's first handshake message (Hello or Challenge) arrived
        #: set by a Listener: reports a handshake failure instead of logging it here (rate-limited)
        self.on_handshake_failed: Callable[[Connection, str], None] | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._delayed: deque[tuple[float, bytes, bytes]] = deque()
        self._flush_scheduled = False
        self._writer_waiter: Waiter | None = None
        self._writer_busy = False  # the writer greenlet owns the socket's write side
        self._handoff: bytes | memoryview | None = None
        self._nonblocking_send: Callable[[Any], int] | None = None
        self._readable: Any = None  # plain TCP: the io watcher that reads in the hub
        self._read_args: tuple[Any, ...] = ()
        self._deliver_later: list[bytes] | None = None  # frames held back by `defer_rest`
        self._close_after_held: str | None = None
        self._defer_requested = False
        self._close_expected = False  # we said goodbye: the peer's close is no fault
        self._received_chunks = 0  # bumped per recv (not when blocked): a sign of life
        self._writes_done = 0
        self._writing = False
        self._loop = gevent.get_hub().loop
        self._up_event = gevent.event.Event()
        self._closed_event = gevent.event.Event()
        self._drained = gevent.event.Event()
        self._drained.set()
        self._main: gevent.Greenlet | None = None
        self._writer: gevent.Greenlet | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self._delayer: gevent.Greenlet | None = None

    # ---------------------------------------------------------------- public

    @classmethod
    def connect(
        cls,
        config: ConnectionConfig,
        host: str,
        port: int,
        *,
        on_message: OnMessage,
        on_close: OnClose,
        on_up: OnUp | None = None,
        expected_peer: str | None = None,
        server_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> Connection:
        """Start connecting to (host, port); returns at once.

        `on_up` runs when the peer has authenticated; on any failure
        `on_close` runs instead. `expected_peer` makes the handshake fail if
        another node answers. `server_hostname` is for TLS (default `host`).
        `source_address` (host, port) is bound before connecting, so the
        peer (and a firewall) sees which of this host's addresses dialed.
        """
        conn = cls(
            config,
            role="initiator",
            on_message=on_message,
            on_close=on_close,
            on_up=on_up,
            address=(host, port),
            expected_peer=expected_peer,
            server_hostname=server_hostname or host,
        )
        conn.source_address = source_address
        conn.start()
        return conn

    def start(self) -> None:
        """Run the connection in its own greenlets (called by connect/Listener)."""
        if self._main is not None:
            raise RuntimeError("connection already started")
        self._main = gevent.spawn(self._run)

    @property
    def state(self) -> str:
        """``"handshaking"``, ``"up"`` or ``"closed"``."""
        return self._state

    @property
    def is_up(self) -> bool:
        return self._state is _UP

    @property
    def greeted(self) -> bool:
        """The peer has sent its first handshake message (not yet authenticated)."""
        return self._greeted

    @property
    def peer_name(self) -> str | None:
        """The authenticated peer's node name (None before authentication)."""
        return self.peer.name if self.peer is not None else None

    @property
    def busy(self) -> bool:
        """More than `config.busy_limit` bytes wait to be written."""
        return self._out_bytes > self.config.busy_limit

    def send(self, message: Any) -> None:
        """Queue one message; it is written at the end of this loop turn.

        Encodes now, so an unencodable message raises TypeError here (and a
        message over the frame limit ValueError). Never blocks. A message
        sent on a closed connection is dropped (`on_close` has said so).
        """
        payload = encode(message)
        size = len(payload)
        if size > self.config.max_frame_size:
            raise ValueError(
                f"message of {size} bytes exceeds the frame limit of {self.config.max_frame_size}"
            )
        if self._state is _CLOSED:
            return
        self.stats.frames_sent += 1
        faults = self.faults
        if faults is not None:
            self._enqueue_with_faults(frame_header(size), payload, faults, heartbeat=False)
            return
        self._out.append(frame_header(size))
        self._out.append(payload)
        self._out_bytes += size + 4
        if not self._flush_scheduled and self._state is _UP:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def close(self, reason: str = "closed") -> None:
        """Close now (idempotent): unsent frames are dropped, on_close runs."""
        self._close(reason, requested=True)

    def wait_up(self, timeout: float | None = None) -> bool:
        """Block until the handshake is done or failed; True if up."""
        gevent.wait([self._up_event, self._closed_event], timeout=timeout, count=1)
        return self._state is _UP

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until closed; True if closed."""
        return self._closed_event.wait(timeout)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Block until the write queue is below `busy_limit` (or closed)."""
        while self.busy and self._state is not _CLOSED:
            self._drained.clear()
            if not self._drained.wait(timeout):
                return False
        return True

    def expect_close(self) -> None:
        """This side said goodbye: the peer will close its end, which is then
        logged as an ordinary event, not a warning."""
        self._close_expected = True

    def defer_rest(self) -> None:
        """From inside `on_message`: apply the frames after this one only
        once every callback scheduled so far has run (e.g. a process this
        frame woke acts before the next frame is applied)."""
        self._defer_requested = True

    def __repr__(self) -> str:
        return f"<Connection {self.config.name}->{self._label()} {self.role} {self._state}>"

    # ------------------------------------------------------------ handshake

    def _label(self) -> str:
        if self.peer is not None:
            return self.peer.name
        if self._claimed_peer is not None:
            return f"{self._claimed_peer}?"
        return f"{self.address[0]}:{self.address[1]}" if self.address else "?"

    def _run(self) -> None:
        try:
            if self._handshake():
                self._read_loop()
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # a bug here must not escape into the hub
            log.exception("connection_error", local=self.config.name, peer=self._label())
            self._close(f"internal_error: {exc!r}")

    def _handshake(self) -> bool:
        deadline = gevent.Timeout(self.config.handshake_timeout)
        deadline.start()
        try:
            if self._sock is None:
                self._sock = self._open_socket()
            else:
                _set_nodelay(self._sock)
            self._sock = self._secure(self._sock)
            peer = self._authenticate()
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self._close(f"handshake_timeout: not done within {self.config.handshake_timeout}s")
            return False
        except HandshakeFailed as exc:
            self._close(exc.reason)
            return False
        except FrameError as exc:
            self._close(f"malformed: {exc}")
            return False
        except ssl.SSLError as exc:
            self._close(f"tls_failed: {exc}")
            return False
        except OSError as exc:
            where = "connect_failed" if self._sock is None else "socket_error"
            self._close(f"{where}: {exc}")
            return False
        finally:
            deadline.close()
        self._become_up(peer)
        return self._state is _UP

    def _open_socket(self) -> Any:
        assert self.address is not None
        sock = gevent.socket.create_connection(self.address, source_address=self.source_address)
        _set_nodelay(sock)
        return sock

    def _secure(self, sock: Any) -> Any:
        server = self.role == "acceptor"
        context = self.config.server_ssl_context if server else self.config.client_ssl_context
        if context is None:
            return sock
        secured = gevent.ssl.SSLSocket(
            sock=sock,
            server_side=server,
            server_hostname=None if server else self._server_hostname,
            do_handshake_on_connect=False,
            _context=context,
        )
        secured.do_handshake()
        return secured

    def _authenticate(self) -> Peer:
        """Run the handshake machine over the socket; returns the peer."""
        config = self.config
        machine: Initiator | Acceptor
        if self.role == "initiator":
            machine = Initiator(
                cookie=config.cookie,
                name=config.name,
                incarnation=config.incarnation,
                random_bytes=config.random_bytes,
                expected_peer=self.expected_peer,
                cluster=config.cluster.value,
            )
            if self.expected_peer is not None:
                self._resolve_faults(self.expected_peer)
            self._send_handshake(machine.start().send)
        else:
            machine = Acceptor(
                cookie=config.cookie,
                name=config.name,
                incarnation=config.incarnation,
                random_bytes=config.random_bytes,
                admit=config.admit,
                cluster=config.cluster.value,
            )
        decoder = self._decoder
        while True:
            data = self._sock.recv(MAX_HANDSHAKE_FRAME)
            if not data:
                raise HandshakeFailed("peer_closed: during the handshake")
            self.stats.bytes_received += len(data)
            frames = decoder.feed(data, max_frames=1)
            while frames:
                message = unpack_message(frames[0])
                if isinstance(message, (Hello, Challenge)):
                    self._claimed_peer = message.name
                    self._greeted = True
                    self._resolve_faults(message.name)
                if self.faults is not None and self.faults.block_in:
                    frames = decoder.feed(max_frames=1)
                    continue
                step = machine.receive(message)
                failed = isinstance(step.outcome, HandshakeFailed)
                self._send_handshake(step.send, best_effort=failed)
                if failed:
                    raise step.outcome  # type: ignore[misc]
                if isinstance(step.outcome, Peer):
                    decoder.max_frame_size = config.max_frame_size
                    try:
                        self._early_frames = decoder.feed()
                    except FrameError as exc:
                        self._early_frames = exc.frames
                        self._early_error = exc
                    return step.outcome
                frames = decoder.feed(max_frames=1)

    def _send_handshake(self, messages: list[HandshakeMessage], *, best_effort: bool = False) -> None:
        if not messages or (self.faults is not None and self.faults.block_out):
            return
        data = b"".join(frame(pack_message(m)) for m in messages)
        try:
            self._sock.sendall(data)
        except OSError:
            if not best_effort:
                raise
        self.stats.bytes_sent += len(data)

    def _resolve_faults(self, peer: str) -> None:
        injector = self.config.faults
        if injector is not None:
            self.faults = injector.link(self.config.name, peer)

    def _become_up(self, peer: Peer) -> None:
        self.peer = peer
        self._resolve_faults(peer.name)
        self._state = _UP
        raw = _raw_socket(self._sock)
        if raw is not None:
            self._nonblocking_send = raw.send
        self._writer = gevent.spawn(self._write_loop)
        self._heartbeat = gevent.spawn(self._heartbeat_loop)
        log.debug("connection_up", local=self.config.name, peer=peer.name, role=self.role)
        self._up_event.set()
        if self._on_up is not None:
            try:
                self._on_up(self)
            except Exception as exc:
                log.exception("on_up_failed", local=self.config.name, peer=peer.name)
                self._close(f"on_up_failed: {exc!r}")
                return
        if self._out and not self._flush_scheduled and self._state is _UP:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    # --------------------------------------------------------------- reading

    def _read_loop(self) -> None:
        if self._early_frames:
            self.stats.frames_received += len(self._early_frames)
            if not self._deliver(self._early_frames):
                return
        if self._early_error is not None:
            self._close(f"frame_error: {self._early_error}")
            return
        raw = _raw_socket(self._sock)
        if raw is not None:
            self._read_in_hub(raw)
            return
        recv_into = self._sock.recv_into
        view = memoryview(bytearray(self.config.recv_size))
        feed = self._decoder.feed
        stats = self.stats
        while True:
            try:
                size = recv_into(view)
            except OSError as exc:
                self._close(f"recv_failed: {exc}")
                return
            if not self._received(view[:size].tobytes(), feed, stats):
                return

    def _read_in_hub(self, raw: Any) -> None:
        """Plain TCP: read and hand over frames in the hub, from an io
        watcher's callback, instead of switching into a reader greenlet and
        back for every chunk (the hot path of every message received). This
        greenlet ends here; `_close` stops the watcher."""
        if self._state is not _UP:
            return
        self._readable = readable = self._loop.io(raw.fileno(), 1)
        view = memoryview(bytearray(self.config.recv_size))
        self._read_args = (raw.recv_into, view, self._decoder.feed, self.stats)
        readable.start(self._on_readable, *self._read_args)

    def _on_readable(self, recv_into: Callable[[memoryview], int], view: memoryview,
                     feed: Callable[[bytes], list[bytes]], stats: ConnectionStats) -> None:
        """The socket is readable (runs in the hub: nothing may block or escape)."""
        try:
            size = recv_into(view)
        except (BlockingIOError, InterruptedError):
            return  # nothing after all; the watcher stays on
        except OSError as exc:
            self._close(f"recv_failed: {exc}")
            return
        data = view[:size].tobytes()
        try:
            if not data or self.faults is not None:
                self._received(data, feed, stats)
                return
            stats.bytes_received += len(data)  # the common case: `_received`, inlined
            self._received_chunks += 1
            frames = feed(data)
            if frames:
                stats.frames_received += len(frames)
                self._deliver(frames)
        except FrameError as exc:
            self._broken_stream(exc)
        except Exception as exc:  # a bug here must not reach the hub
            log.exception("connection_error", local=self.config.name, peer=self._label())
            self._close(f"internal_error: {exc!r}")
        except BaseException as exc:
            self._close(f"internal_error: {exc!r}")
            raise

    def _received(self, data: bytes, feed: Callable[[bytes], list[bytes]], stats: ConnectionStats) -> bool:
        """Handle one chunk from the socket; False once the connection is closed."""
        if not data:
            self._close("peer_closed")
            return False
        stats.bytes_received += len(data)
        faults = self.faults
        if faults is None or not faults.block_in:
            self._received_chunks += 1
        try:
            frames = feed(data)
        except FrameError as exc:
            self._broken_stream(exc)
            return False
        if not frames:
            return True
        stats.frames_received += len(frames)
        return self._deliver(frames)

    def _broken_stream(self, exc: FrameError) -> None:
        """The framing broke: deliver the frames before the fault, then close."""
        self.stats.frames_received += len(exc.frames)
        if self._deliver(exc.frames):
            reason = f"frame_error: {exc}"
            if self._deliver_later is None:
                self._close(reason)
            else:
                self._close_after_held = reason  # once the held frames are in

    def _deliver(self, frames: list[bytes]) -> bool:
        """Decode and hand over frames in order; False once the connection closed."""
        on_message = self._on_message
        faults = self.faults
        index = 0
        for payload in frames:
            index += 1
            if not payload:  # heartbeat
                continue
            if faults is not None and faults.drops_incoming():
                self.stats.frames_dropped += 1
                continue
            try:
                message = decode(payload)
            except WireError as exc:
                self._close(f"malformed_frame: {exc}")
                return False
            try:
                on_message(self, message)
            except Exception as exc:
                log.exception("on_message_failed", local=self.config.name, peer=self._label())
                self._close(f"on_message_failed: {exc!r}")
                return False
            if self._state is _CLOSED:
                return False
            if self._defer_requested:
                self._defer_requested = False
                if self._readable is None:  # a reader greenlet: let the others run
                    gevent.sleep(0)
                    if self._state is _CLOSED:
                        return False
                elif index < len(frames):
                    self._hold_rest(frames[index:])
                    return True
        return True

    def _hold_rest(self, frames: list[bytes]) -> None:
        """Reading in the hub, `defer_rest` was asked for: the rest of the
        chunk waits for a later callback, and reading stops until then."""
        self._deliver_later = frames
        self._readable.stop()
        self._loop.run_callback(self._deliver_held)

    def _deliver_held(self) -> None:
        frames, self._deliver_later = self._deliver_later, None
        if self._state is _CLOSED or frames is None:
            return
        try:
            if not self._deliver(frames) or self._deliver_later is not None:
                return  # closed, or held back again
        except Exception as exc:
            log.exception("connection_error", local=self.config.name, peer=self._label())
            self._close(f"internal_error: {exc!r}")
            return
        if self._close_after_held is not None:
            self._close(self._close_after_held)
            return
        self._readable.start(self._on_readable, *self._read_args)

    # --------------------------------------------------------------- writing

    def _enqueue_with_faults(self, header: bytes, payload: bytes, faults: LinkFaults, *, heartbeat: bool) -> None:
        if faults.block_out or (not heartbeat and faults.drops_outgoing()):
            self.stats.frames_dropped += not heartbeat
            return
        if faults.delay_out > 0.0 or self._delayed:
            self._delayed.append((self._loop.now() + faults.delay_out, header, payload))
            if self._delayer is None or self._delayer.dead:
                self._delayer = gevent.spawn(self._delay_loop)
            return
        self._push(header, payload)

    def _push(self, header: bytes, payload: bytes) -> None:
        self._out.append(header)
        self._out.append(payload)
        self._out_bytes += len(header) + len(payload)
        if not self._flush_scheduled and self._state is _UP:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def _flush(self) -> None:
        """Hub callback at the end of a loop turn: write what the turn queued.

        It runs in the hub, so it only tries a non-blocking send; what the
        kernel does not take at once (and every TLS write) goes to the writer
        greenlet, which owns the write side until it has caught up. The fast
        path saves two greenlet switches per batch.
        """
        self._flush_scheduled = False
        out = self._out
        if not out or self._writer_busy or self._state is not _UP:
            return  # a busy writer takes `out` itself when it is done
        data: bytes | memoryview = b"".join(out)
        out.clear()
        self.stats.writes += 1
        send = self._nonblocking_send
        if send is not None:
            try:
                sent = send(data)
            except OSError:  # EAGAIN, or an error the writer will meet and report
                sent = 0
            if sent == len(data):  # the common case, `_wrote` inlined
                self.stats.bytes_sent += sent
                self._out_bytes -= sent
                if self._out_bytes <= self.config.busy_limit and not self._drained.is_set():
                    self._drained.set()
                return
            self._wrote(sent)
            data = memoryview(data)[sent:]
        self._writer_busy = True
        self._handoff = data
        waiter = self._writer_waiter
        if waiter is not None:
            self._writer_waiter = None
            waiter.switch(None)

    def _wrote(self, size: int) -> None:
        self.stats.bytes_sent += size
        self._out_bytes -= size
        if self._out_bytes <= self.config.busy_limit and not self._drained.is_set():
            self._drained.set()

    def _write_loop(self) -> None:
        """The slow path: blocking writes of what `_flush` could not send at once."""
        out = self._out
        sendall = self._sock.sendall
        try:
            while True:
                data = self._handoff
                if data is None:
                    self._writer_waiter = waiter = Waiter()
                    waiter.get()
                    continue
                self._handoff = None
                while data is not None:
                    self._writing = True
                    sendall(data)
                    self._writing = False
                    self._writes_done += 1
                    self._wrote(len(data))
                    data = None
                    if out:
                        data = b"".join(out)
                        out.clear()
                        self.stats.writes += 1
                self._writer_busy = False
        except OSError as exc:
            self._close(f"send_failed: {exc}")

    def _delay_loop(self) -> None:
        delayed = self._delayed
        while delayed:
            due, header, payload = delayed[0]
            wait = due - self._loop.now()
            if wait > 0:
                gevent.sleep(wait)
                continue
            delayed.popleft()
            self._push(header, payload)

    def _heartbeat_loop(self) -> None:
        """Tick every interval; the peer is dead after `timeout` worth of silent ticks.

        Silence is counted in ticks, not by clock: if our own hub was blocked
        (a long computation), the late tick counts once instead of making a
        live peer look silent for the whole stall.
        """
        interval = self.config.heartbeat_interval
        limit = max(1, round(self.config.heartbeat_timeout / interval))
        silent_ticks = stalled_ticks = 0
        last_received = self._received_chunks
        last_writes = self._writes_done
        while self._state is _UP:
            gevent.sleep(interval)
            silent_ticks = silent_ticks + 1 if self._received_chunks == last_received else 0
            last_received = self._received_chunks
            stuck = self._writing and self._writes_done == last_writes
            stalled_ticks = stalled_ticks + 1 if stuck else 0
            last_writes = self._writes_done
            if silent_ticks >= limit:
                self._close(f"heartbeat_timeout: nothing received for {silent_ticks} ticks of {interval}s")
                return
            if stalled_ticks >= limit:
                self._close(f"send_stalled: a write blocked for {stalled_ticks} ticks of {interval}s")
                return
            faults = self.faults
            if faults is None:
                self._push(_HEARTBEAT, b"")
            else:
                self._enqueue_with_faults(_HEARTBEAT, b"", faults, heartbeat=True)

    # --------------------------------------------------------------- closing

    def _close(self, reason: str, *, requested: bool = False) -> None:
        if self._state is _CLOSED:
            return
        was_up = self._state is _UP
        self._state = _CLOSED
        self.close_reason = reason
        if not was_up:
            if _benign_refusal(reason):  # the mesh makes these common: nothing to tally
                log.info("handshake_failed", local=self.config.name, peer=self._label(), role=self.role, reason=reason)
            elif self.on_handshake_failed is not None:
                self._report_handshake_failure(reason)
            else:
                log.warning("handshake_failed", local=self.config.name, peer=self._label(), role=self.role, reason=reason)
        elif requested or self._close_expected:
            log.info("connection_closed", local=self.config.name, peer=self._label(), reason=reason)
        else:
            log.warning("connection_closed", local=self.config.name, peer=self._label(), reason=reason)
        current = gevent.getcurrent()
        for greenlet in (self._main, self._writer, self._heartbeat, self._delayer):
            if greenlet is not None and greenlet is not current and not greenlet.dead:
                greenlet.kill(block=False)
        self._out.clear()
        self._out_bytes = 0
        self._delayed.clear()
        self._writer_waiter = None
        self._handoff = None
        self._deliver_later = None
        if self._readable is not None:
            self._readable.close()  # before the socket: its fd may be reused at once
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._drained.set()
        self._closed_event.set()
        try:
            self._on_close(self, reason)
        except Exception:
            log.exception("on_close_failed", local=self.config.name, peer=self._label())

    def _report_handshake_failure(self, reason: str) -> None:
        try:
            self.on_handshake_failed(self, reason)  # type: ignore[misc]
        except Exception:
            log.exception("handshake_failure_report_failed", local=self.config.name, peer=self._label())


#: Refusals that only say "another connection to this peer is (about to be) in use", or
#: "this node is stopping" (`paxtor.actors.peers.NODE_STOPPING`).
_BENIGN_REFUSALS = ("simultaneous_connect", "already_connected", "node_stopping")


def _benign_refusal(reason: str) -> bool:
    """A handshake refused because both nodes dialed each other, one is connected already,
    or the acceptor is stopping: the mesh makes these common, and nothing is lost."""
    head, _, detail = reason.partition(": ")
    return head in ("not_admitted", "refused_by_peer") and detail in _BENIGN_REFUSALS


def _raw_socket(sock: Any) -> Any:
    """The non-blocking stdlib socket inside a plain gevent socket, or None
    (TLS): the hot path calls its recv/send directly, skipping gevent's
    Python-level wrappers, and never blocks on it."""
    if isinstance(sock, gevent.ssl.SSLSocket):
        return None
    raw = getattr(sock, "_sock", None)  # gevent's socket wraps a stdlib one, set non-blocking
    if raw is None or raw.gettimeout() != 0.0:
        return None
    return raw


def _set_nodelay(sock: Any) -> None:
    """We batch per loop turn ourselves; Nagle would only add latency."""
    try:
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
    except OSError:
        pass


class ListenError(OSError):
    """The listening socket could not be bound or opened (its errno is the cause's:
    EADDRINUSE for a port in use), as opposed to any other start-up failure."""


def bind_listener(host: str, port: int, backlog: int = 128) -> Any:
    """A gevent TCP socket bound to (host, port) and listening (`ListenError` if it cannot be):
    a node that must own its port before anything else binds it with this first."""
    sock = gevent.socket.socket(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM)
    try:
        sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """Accepts connections on (host, port); each becomes an acceptor Connection.

    `port=0` binds a free port; read the bound one from `.port`. `sock`, a
    socket from `bind_listener`, is used instead of binding one. Callbacks are
    passed to every accepted Connection (``on_close`` also runs for peers
    that fail the handshake; their ``conn.peer`` is None). Pending
    (unauthenticated) connections are bounded: at most `max_pending_handshakes`
    in all and `max_pending_per_source` per IP address; a newcomer is always
    taken and the pending handshakes to drop are chosen by
    `paxtor.actors.handshake_slots` (a flood evicts its own). Failed
    handshakes are logged at most once per source and kind every
    `failure_log_interval` seconds, then summed up (``handshake_failures_suppressed``).
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        on_message: OnMessage,
        on_close: OnClose,
        on_up: OnUp | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 128,
        max_pending_handshakes: int = 128,
        max_pending_per_source: int = 64,
        failure_log_interval: float = 10.0,
        sock: Any = None,
    ) -> None:
        self.config = config
        self.host = host
        self._requested_port = port
        self._backlog = backlog
        self._max_pending = max_pending_handshakes
        self._max_per_source = max_pending_per_source
        self._on_message = on_message
        self._on_close = on_close
        self._on_up = on_up
        self._sock: Any = None
        self._prebound = sock
        self._acceptor: gevent.Greenlet | None = None
        self._flusher: gevent.Greenlet | None = None
        self._stopped = False
        self._arrivals = 0
        self._pending: dict[Connection, int] = {}  # handshaking connections -> arrival number
        self._failures = FailureTally(failure_log_interval)
        self.evicted = 0
        """Pending handshakes dropped to make room (for tests and benchmarks)."""
        self.connections: set[Connection] = set()
        """Live connections accepted here (handshaking or up)."""

    def start(self) -> Listener:
        """Bind, listen and start accepting; returns self."""
        if self._prebound is not None:
            sock, self._prebound = self._prebound, None
        else:
            sock = bind_listener(self.host, self._requested_port, self._backlog)
        self._sock = sock
        self._acceptor = gevent.spawn(self._accept_loop)
        self._flusher = gevent.spawn(self._flush_failures)
        log.debug("listener_started", local=self.config.name, host=self.host, port=self.port)
        return self

    @property
    def port(self) -> int:
        """The bound port."""
        return self._sock.getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()[:2]

    def stop(self, *, close_connections: bool = True, reason: str = "listener_stopped") -> None:
        """Stop accepting; by default also close the connections accepted here."""
        if self._stopped:
            return
        self._stopped = True
        for greenlet in (self._acceptor, self._flusher):
            if greenlet is not None:
                greenlet.kill(block=False)
        if self._sock is not None:
            self._sock.close()
        if close_connections:
            for conn in list(self.connections):
                conn.close(reason)
        self._log_suppressed(self._failures.drain())

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                sock, address = self._sock.accept()
            except OSError as exc:
                if self._stopped:
                    return
                log.warning("accept_failed", local=self.config.name, error=str(exc))
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    gevent.sleep(0.1)  # out of descriptors: back off instead of spinning
                continue
            self._make_room(address[0])
            conn = Connection(
                self.config,
                role="acceptor",
                on_message=self._on_message,
                on_close=self._closed,
                on_up=self._up,
                sock=sock,
                address=address[:2],
            )
            conn.on_handshake_failed = self._handshake_failed
            self.connections.add(conn)
            self._arrivals += 1
            self._pending[conn] = self._arrivals
            conn.start()

    def _make_room(self, source: str) -> None:
        """Drop the pending handshakes `choose_evictions` picks, so a newcomer from `source` fits."""
        if len(self._pending) < min(self._max_pending, self._max_per_source):
            return  # the common case: nothing to choose
        pending = [
            Pending(conn, conn.address[0] if conn.address else "?", order, conn.greeted)
            for conn, order in self._pending.items()
            if conn.state is _HANDSHAKING
        ]
        victims = choose_evictions(
            pending, source, max_pending=self._max_pending, max_per_source=self._max_per_source
        )
        for conn in victims:
            self.evicted += 1
            conn.close(f"handshake_evicted: {len(pending)} handshakes pending, room made for {source}")  # type: ignore[attr-defined]

    def _handshake_failed(self, conn: Connection, reason: str) -> None:
        source = conn.address[0] if conn.address else "?"
        full, summary = self._failures.record(source, reason, time.monotonic())
        if summary is not None:
            self._log_suppressed([summary])
        if full:
            log.warning("handshake_failed", local=self.config.name, peer=conn._label(), role=conn.role, reason=reason)

    def _flush_failures(self) -> None:
        interval = self._failures.interval
        while not self._stopped:
            gevent.sleep(interval)
            self._log_suppressed(self._failures.flush(time.monotonic()))

    def _log_suppressed(self, summaries: list[Suppressed]) -> None:
        for s in summaries:
            log.warning(
                "handshake_failures_suppressed",
                local=self.config.name,
                source=s.source,
                kind=s.kind,
                count=s.count,
                seconds=round(time.monotonic() - s.since, 1),
                last_reason=s.last_reason,
            )

    def _up(self, conn: Connection) -> None:
        self._pending.pop(conn, None)
        if self._on_up is not None:
            self._on_up(conn)

    def _closed(self, conn: Connection, reason: str) -> None:
        self.connections.discard(conn)
        self._pending.pop(conn, None)
        self._on_close(conn, reason)
