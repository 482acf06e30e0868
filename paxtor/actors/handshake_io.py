"""The cookie handshake driven over a socket: the I/O of `paxtor.actors.handshake`.

The machines there are pure; this runs one over a connected socket, one
frame at a time, with frames limited to `MAX_HANDSHAKE_FRAME` until the
peer has authenticated. Fault injection applies to handshake frames too: a
link that blocks what it sends or receives blocks the handshake. The caller
(a `Connection`) bounds the whole exchange with its handshake deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paxtor.actors.connection_config import ConnectionConfig, ConnectionStats
from paxtor.actors.faults import LinkFaults
from paxtor.actors.framing import FrameDecoder, FrameError, frame
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

__all__ = ["Authenticated", "authenticate", "handshake_machine", "send_handshake"]


@dataclass
class Authenticated:
    """A finished handshake: the peer, and the data frames that came with its last frame."""

    peer: Peer
    early_frames: list[bytes]
    early_error: FrameError | None
    """Set when the bytes after the last handshake frame already broke the framing."""


def handshake_machine(
    config: ConnectionConfig, role: str, expected_peer: str | None
) -> tuple[Initiator | Acceptor, list[HandshakeMessage]]:
    """The machine for `role` (``"initiator"`` or ``"acceptor"``) and what it sends first."""
    if role == "initiator":
        initiator = Initiator(
            cookie=config.cookie,
            name=config.name,
            incarnation=config.incarnation,
            random_bytes=config.random_bytes,
            expected_peer=expected_peer,
            cluster=config.cluster.value,
        )
        return initiator, initiator.start().send
    acceptor = Acceptor(
        cookie=config.cookie,
        name=config.name,
        incarnation=config.incarnation,
        random_bytes=config.random_bytes,
        admit=config.admit,
        cluster=config.cluster.value,
    )
    return acceptor, []


def authenticate(
    sock: Any,
    machine: Initiator | Acceptor,
    first: list[HandshakeMessage],
    decoder: FrameDecoder,
    stats: ConnectionStats,
    *,
    faults: Callable[[], LinkFaults | None],
    on_greeting: Callable[[str], None],
    max_frame_size: int,
) -> Authenticated:
    """Send `first`, then feed the peer's frames to `machine` until it is done.

    `faults()` gives the link's faults in force now; `on_greeting(name)` runs
    when the peer names itself (its Hello or Challenge), before the message
    is acted on. Once authenticated the decoder takes frames up to
    `max_frame_size`. Raises `HandshakeFailed`, `FrameError` or `OSError`.
    """
    send_handshake(sock, first, faults(), stats)
    while True:
        data = sock.recv(MAX_HANDSHAKE_FRAME)
        if not data:
            raise HandshakeFailed("peer_closed: during the handshake")
        stats.bytes_received += len(data)
        frames = decoder.feed(data, max_frames=1)
        while frames:
            message = unpack_message(frames[0])
            if isinstance(message, (Hello, Challenge)):
                on_greeting(message.name)
            link = faults()
            if link is not None and link.block_in:
                frames = decoder.feed(max_frames=1)
                continue
            step = machine.receive(message)
            failed = isinstance(step.outcome, HandshakeFailed)
            send_handshake(sock, step.send, link, stats, best_effort=failed)
            if isinstance(step.outcome, HandshakeFailed):
                raise step.outcome
            if isinstance(step.outcome, Peer):
                decoder.max_frame_size = max_frame_size
                try:
                    return Authenticated(step.outcome, decoder.feed(), None)
                except FrameError as exc:
                    return Authenticated(step.outcome, exc.frames, exc)
            frames = decoder.feed(max_frames=1)


def send_handshake(
    sock: Any, messages: list[HandshakeMessage], faults: LinkFaults | None, stats: ConnectionStats,
    *, best_effort: bool = False,
) -> None:  # fmt: skip
    """Write `messages` as frames (nothing while the link blocks what it sends).

    `best_effort`: a failure to write is ignored (the last word of a failed
    handshake: the connection closes anyway)."""
    if not messages or (faults is not None and faults.block_out):
        return
    data = b"".join(frame(pack_message(m)) for m in messages)
    try:
        sock.sendall(data)
    except OSError:
        if not best_effort:
            raise
    stats.bytes_sent += len(data)
