"""What a node's connections share: their settings, the cluster id, their states, their counters.

Plain data, no I/O: `ConnectionConfig` (one per node), `ClusterId` (set once,
when the node learns its cluster), the three states of a `Connection`, the
`ConnectionStats` counters, and `Link`: what a connection's reader, writer
and heartbeat see of it.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from paxtor.actors.faults import FaultInjector, LinkFaults
from paxtor.actors.framing import MAX_FRAME_SIZE

__all__ = ["CLOSED", "HANDSHAKING", "UP", "ClusterId", "ConnectionConfig", "ConnectionStats", "Link"]

#: The states of a connection, compared by identity on the hot paths.
HANDSHAKING = "handshaking"
UP = "up"
CLOSED = "closed"


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
    ``recv(256 KiB)`` allocates (mmap, mremap, munmap) per chunk."""
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


class Link(Protocol):
    """What the parts of a connection (reader, writer, heartbeat) see of the connection."""

    config: ConnectionConfig
    state: str
    """`HANDSHAKING`, `UP` or `CLOSED`."""
    faults: LinkFaults | None
    """The faults injected on this link, once the peer is known (None: a healthy link)."""

    def label(self) -> str:
        """The peer as the logs name it."""
        ...

    def fail(self, reason: str) -> None:
        """Close the connection for `reason`: something broke (not a requested close)."""
        ...
