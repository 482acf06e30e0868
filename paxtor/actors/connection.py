"""The gevent driver of one node-to-node TCP connection.

A `Connection` owns one connected socket (optionally TLS). Its life:

  handshaking  TCP connect (initiator), TLS handshake (if configured,
               `paxtor.actors.tls`), then the cookie handshake
               (`paxtor.actors.handshake`, driven by
               `paxtor.actors.handshake_io`), all under one deadline,
               `handshake_timeout`: a peer that never finishes (slow-loris)
               is dropped when it passes.
  up           `on_up(conn)` runs; frames are decoded and handed to
               `on_message(conn, msg)` one by one, in order
               (`paxtor.actors.reader`); what `send()` queued during one hub
               loop turn is written with ONE send (`paxtor.actors.writer`);
               an empty frame goes out every `heartbeat_interval` and the
               peer is declared dead after `heartbeat_timeout` of silence or
               of a stuck write (`paxtor.actors.heartbeat`).
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

Typical use by the distribution layer (one config, one listener per node,
`paxtor.actors.listener`):

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

import ssl
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import structlog

from paxtor.actors.connection_config import CLOSED, HANDSHAKING, UP, ConnectionConfig, ConnectionStats
from paxtor.actors.faults import LinkFaults
from paxtor.actors.framing import FrameDecoder, FrameError, frame_header
from paxtor.actors.handshake import MAX_HANDSHAKE_FRAME, HandshakeFailed, Peer
from paxtor.actors.handshake_io import authenticate, handshake_machine
from paxtor.actors.heartbeat import HEARTBEAT, Liveness, run_heartbeats
from paxtor.actors.reader import OnMessage, Reader
from paxtor.actors.sockets import open_socket, set_nodelay
from paxtor.actors.tls import secure_socket
from paxtor.actors.wire import encode
from paxtor.actors.writer import Writer

__all__ = ["Connection", "OnClose", "OnUp"]

log = structlog.get_logger(__name__)

OnClose = Callable[["Connection", str], None]
OnUp = Callable[["Connection"], None]


class Connection:
    """One node-to-node connection; create with `connect()` or via a `Listener`."""

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
        self.state = HANDSHAKING
        """``"handshaking"``, ``"up"`` or ``"closed"`` (read-only)."""
        self.close_reason: str | None = None
        self.stats = ConnectionStats()
        self.faults: LinkFaults | None = None
        #: set by a Listener: reports a handshake failure instead of logging it here (rate-limited)
        self.on_handshake_failed: Callable[[Connection, str], None] | None = None
        self._server_hostname = server_hostname
        self._on_close = on_close
        self._on_up = on_up
        self._sock = sock
        self._decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)
        self._reader = Reader(self, self._decoder, self.stats, on_message)
        self._writer = Writer(self.stats, config.busy_limit, self.fail)
        self._early_frames: list[bytes] = []  # data frames that came with the last handshake frame
        self._early_error: FrameError | None = None
        self._claimed_peer: str | None = expected_peer
        self._greeted = False  # the peer's first handshake message (Hello or Challenge) arrived
        self._close_expected = False  # we said goodbye: the peer's close is no fault
        self._up_event = gevent.event.Event()
        self._closed_event = gevent.event.Event()
        self._main: gevent.Greenlet | None = None
        self._heartbeat: gevent.Greenlet | None = None

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
    def is_up(self) -> bool:
        return self.state is UP

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
        return self._writer.busy

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
        if self.state is CLOSED:
            return
        self.stats.frames_sent += 1
        faults = self.faults
        if faults is not None:
            self._writer.push_faulty(frame_header(size), payload, faults, heartbeat=False)
            return
        self._writer.push(frame_header(size), payload)

    def close(self, reason: str = "closed") -> None:
        """Close now (idempotent): unsent frames are dropped, on_close runs."""
        self._close(reason, requested=True)

    def fail(self, reason: str) -> None:
        """Close for `reason` because something broke (logged as a warning, unless expected)."""
        self._close(reason)

    def wait_up(self, timeout: float | None = None) -> bool:
        """Block until the handshake is done or failed; True if up."""
        gevent.wait([self._up_event, self._closed_event], timeout=timeout, count=1)
        return self.state is UP

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until closed; True if closed."""
        return self._closed_event.wait(timeout)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Block until the write queue is below `busy_limit` (or closed)."""
        return self._writer.wait_drained(timeout, lambda: self.state is CLOSED)

    def expect_close(self) -> None:
        """This side said goodbye: the peer will close its end, which is then
        logged as an ordinary event, not a warning."""
        self._close_expected = True

    def defer_rest(self) -> None:
        """From inside `on_message`: apply the frames after this one only
        once every callback scheduled so far has run (e.g. a process this
        frame woke acts before the next frame is applied)."""
        self._reader.defer_requested = True

    def label(self) -> str:
        """The peer as the logs name it: its name, the name it claims (``node2?``), or its address."""
        if self.peer is not None:
            return self.peer.name
        if self._claimed_peer is not None:
            return f"{self._claimed_peer}?"
        return f"{self.address[0]}:{self.address[1]}" if self.address else "?"

    @property
    def unwritten_bytes(self) -> int:
        """Bytes queued on this connection and not yet written to its socket."""
        return self._writer.queued_bytes

    def liveness_counters(self) -> tuple[int, int, bool]:
        """For the heartbeat: chunks received, blocking writes done, whether a write is under way."""
        writer = self._writer
        return self._reader.received_chunks, writer.writes_done, writer.writing

    def send_heartbeat(self) -> None:
        faults = self.faults
        if faults is None:
            self._writer.push(HEARTBEAT, b"")
        else:
            self._writer.push_faulty(HEARTBEAT, b"", faults, heartbeat=True)

    def __repr__(self) -> str:
        return f"<Connection {self.config.name}->{self.label()} {self.role} {self.state}>"

    # ------------------------------------------------------------ handshake

    def _run(self) -> None:
        try:
            if self._handshake():
                self._reader.run(self._sock, self._early_frames, self._early_error)
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # a bug here must not escape into the hub
            log.exception("connection_error", local=self.config.name, peer=self.label())
            self._close(f"internal_error: {exc!r}")

    def _handshake(self) -> bool:
        deadline = gevent.Timeout(self.config.handshake_timeout)
        deadline.start()
        try:
            if self._sock is None:
                assert self.address is not None
                self._sock = open_socket(self.address, self.source_address)
            else:
                set_nodelay(self._sock)
            server = self.role == "acceptor"
            context = self.config.server_ssl_context if server else self.config.client_ssl_context
            self._sock = secure_socket(self._sock, context, server_side=server, server_hostname=self._server_hostname)
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
        return self.state is UP

    def _authenticate(self) -> Peer:
        """Run the handshake machine over the socket; returns the peer."""
        machine, first = handshake_machine(self.config, self.role, self.expected_peer)
        if self.role == "initiator" and self.expected_peer is not None:
            self._resolve_faults(self.expected_peer)
        done = authenticate(
            self._sock, machine, first, self._decoder, self.stats,
            faults=lambda: self.faults, on_greeting=self._on_greeting, max_frame_size=self.config.max_frame_size,
        )  # fmt: skip
        self._early_frames, self._early_error = done.early_frames, done.early_error
        return done.peer

    def _on_greeting(self, name: str) -> None:
        self._claimed_peer = name
        self._greeted = True
        self._resolve_faults(name)

    def _resolve_faults(self, peer: str) -> None:
        injector = self.config.faults
        if injector is not None:
            self.faults = injector.link(self.config.name, peer)

    def _become_up(self, peer: Peer) -> None:
        self.peer = peer
        self._resolve_faults(peer.name)
        self.state = UP
        self._writer.start(self._sock)
        received, writes, _ = self.liveness_counters()
        liveness = Liveness(self.config.heartbeat_interval, self.config.heartbeat_timeout, received, writes)
        self._heartbeat = gevent.spawn(run_heartbeats, self, liveness)
        log.debug("connection_up", local=self.config.name, peer=peer.name, role=self.role)
        self._up_event.set()
        if self._on_up is not None:
            try:
                self._on_up(self)
            except Exception as exc:
                log.exception("on_up_failed", local=self.config.name, peer=peer.name)
                self._close(f"on_up_failed: {exc!r}")
                return
        self._writer.flush_soon()

    # --------------------------------------------------------------- closing

    def _close(self, reason: str, *, requested: bool = False) -> None:
        if self.state is CLOSED:
            return
        was_up = self.state is UP
        self.state = CLOSED
        self.close_reason = reason
        if not was_up:
            if _benign_refusal(reason):  # the mesh makes these common: nothing to tally
                log.info("handshake_failed", local=self.config.name, peer=self.label(), role=self.role, reason=reason)
            elif self.on_handshake_failed is not None:
                self._report_handshake_failure(reason)
            else:
                log.warning(
                    "handshake_failed", local=self.config.name, peer=self.label(), role=self.role, reason=reason
                )
        elif requested or self._close_expected:
            log.info("connection_closed", local=self.config.name, peer=self.label(), reason=reason)
        else:
            log.warning("connection_closed", local=self.config.name, peer=self.label(), reason=reason)
        current = gevent.getcurrent()
        for greenlet in (self._main, self._heartbeat):
            if greenlet is not None and greenlet is not current and not greenlet.dead:
                greenlet.kill(block=False)
        self._writer.stop()
        self._reader.stop()  # before the socket: its fd may be reused at once
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._closed_event.set()
        try:
            self._on_close(self, reason)
        except Exception:
            log.exception("on_close_failed", local=self.config.name, peer=self.label())

    def _report_handshake_failure(self, reason: str) -> None:
        report = self.on_handshake_failed
        assert report is not None
        try:
            report(self, reason)
        except Exception:
            log.exception("handshake_failure_report_failed", local=self.config.name, peer=self.label())


#: Refusals that only say "another connection to this peer is (about to be) in use", or
#: "this node is stopping" (`paxtor.actors.peers.NODE_STOPPING`).
_BENIGN_REFUSALS = ("simultaneous_connect", "already_connected", "node_stopping")


def _benign_refusal(reason: str) -> bool:
    """A handshake refused because both nodes dialed each other, one is connected already,
    or the acceptor is stopping: the mesh makes these common, and nothing is lost."""
    head, _, detail = reason.partition(": ")
    return head in ("not_admitted", "refused_by_peer") and detail in _BENIGN_REFUSALS
