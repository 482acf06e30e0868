"""The socket calls of node connections: dialing, Nagle off, and the raw socket of the hot path."""

from __future__ import annotations

import socket as _stdsocket
from typing import Any

import gevent.socket
import gevent.ssl

__all__ = ["open_socket", "raw_socket", "set_nodelay"]


def open_socket(address: tuple[str, int], source_address: tuple[str, int] | None = None) -> Any:
    """A gevent TCP socket connected to `address` (bound to `source_address` first, if given)."""
    sock = gevent.socket.create_connection(address, source_address=source_address)
    set_nodelay(sock)
    return sock


def raw_socket(sock: Any) -> Any:
    """The non-blocking stdlib socket inside a plain gevent socket, or None
    (TLS): the hot path calls its recv/send directly, skipping gevent's
    Python-level wrappers, and never blocks on it."""
    if isinstance(sock, gevent.ssl.SSLSocket):
        return None
    raw = getattr(sock, "_sock", None)  # gevent's socket wraps a stdlib one, set non-blocking
    if raw is None or raw.gettimeout() != 0.0:
        return None
    return raw


def set_nodelay(sock: Any) -> None:
    """Connections batch per loop turn themselves; Nagle would only add latency."""
    try:
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
    except OSError:
        pass
