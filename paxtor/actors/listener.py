"""The listening side of node connections: accept, bound the pending handshakes, log refusals.

`bind_listener` binds and listens (a node binds its port with it before
anything else, so two nodes never start under one name). A `Listener`
accepts on that socket and turns each arrival into an acceptor
`Connection`. Unauthenticated connections are bounded (a flood evicts its
own: `paxtor.actors.handshake_slots` chooses whom), and failed handshakes
are logged at most once per source and kind per interval, then summed up.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

import gevent
import gevent.socket
import structlog

from paxtor.actors.connection import Connection, OnClose, OnUp
from paxtor.actors.connection_config import HANDSHAKING, ConnectionConfig
from paxtor.actors.errors import PaxtorError
from paxtor.actors.handshake_slots import FailureTally, Pending, Suppressed, choose_evictions
from paxtor.actors.reader import OnMessage

__all__ = ["Listener", "ListenError", "bind_listener"]

log = structlog.get_logger(__name__)


class ListenError(PaxtorError, OSError):
    """The listening socket could not be bound or opened (its errno is the cause's:
    EADDRINUSE for a port in use), as opposed to any other start-up failure."""


def bind_listener(host: str, port: int, backlog: int = 128) -> Any:
    """A gevent TCP socket bound to (host, port) and listening (`ListenError` if it cannot be):
    a node that must own its port before anything else binds it with this first."""
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
            if conn.state is HANDSHAKING
        ]
        victims = choose_evictions(
            pending, source, max_pending=self._max_pending, max_per_source=self._max_per_source
        )
        for conn in victims:
            self.evicted += 1
            conn.close(f"handshake_evicted: {len(pending)} handshakes pending, room made for {source}")

    def _handshake_failed(self, conn: Connection, reason: str) -> None:
        source = conn.address[0] if conn.address else "?"
        full, summary = self._failures.record(source, reason, time.monotonic())
        if summary is not None:
            self._log_suppressed([summary])
        if full:
            log.warning("handshake_failed", local=self.config.name, peer=conn.label(), role=conn.role, reason=reason)

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
