"""The read side of a node connection: frames from the socket, decoded, handed over in order.

Plain TCP is read in the hub, by an io watcher's callback: no greenlet
switch per chunk received, the hot path of every message. TLS is read by a
blocking loop in the connection's own greenlet. Either way each frame is
decoded and given to ``on_message(conn, message)`` one by one, in order;
empty frames are heartbeats. A frame that cannot be decoded, or an
``on_message`` that raises, closes the connection (a message lost silently
would break ordering). An ``on_message`` that must let what it woke run
before the next frame is applied asks `defer_rest`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import structlog

from paxtor.actors.connection_config import CLOSED, UP, ConnectionStats, Link
from paxtor.actors.framing import FrameDecoder, FrameError
from paxtor.actors.sockets import raw_socket
from paxtor.actors.wire import WireError, decode

__all__ = ["OnMessage", "Reader"]

log = structlog.get_logger(__name__)

OnMessage = Callable[[Any, Any], None]
"""``on_message(conn, message)``: the connection and one decoded message."""


class Reader:
    """Reads one connection's socket once it is up (see the module docstring)."""

    def __init__(self, link: Link, decoder: FrameDecoder, stats: ConnectionStats, on_message: OnMessage) -> None:
        self.link = link
        self.decoder = decoder
        self.stats = stats
        self.on_message = on_message
        self.received_chunks = 0
        """Bumped per chunk received (not while a fault blocks input): a sign of life."""
        self.defer_requested = False
        self._loop = gevent.get_hub().loop
        self._readable: Any = None  # plain TCP: the io watcher that reads in the hub
        self._read_args: tuple[Any, ...] = ()
        self._deliver_later: list[bytes] | None = None  # frames held back by `defer_rest`
        self._close_after_held: str | None = None

    def run(self, sock: Any, early_frames: list[bytes], early_error: FrameError | None) -> None:
        """Deliver the frames that came with the handshake, then read until closed.

        Returns at once for plain TCP (the hub reads from then on); for TLS,
        only once the connection is closed.
        """
        if early_frames:
            self.stats.frames_received += len(early_frames)
            if not self.deliver(early_frames):
                return
        if early_error is not None:
            self.link.fail(f"frame_error: {early_error}")
            return
        raw = raw_socket(sock)
        if raw is not None:
            self._read_in_hub(raw)
            return
        recv_into = sock.recv_into
        view = memoryview(bytearray(self.link.config.recv_size))
        feed = self.decoder.feed
        stats = self.stats
        while True:
            try:
                size = recv_into(view)
            except OSError as exc:
                self.link.fail(f"recv_failed: {exc}")
                return
            if not self._received(view[:size].tobytes(), feed, stats):
                return

    def stop(self) -> None:
        """Stop reading (the connection closes): before the socket closes, its fd may be reused."""
        self._deliver_later = None
        if self._readable is not None:
            self._readable.close()

    def _read_in_hub(self, raw: Any) -> None:
        """Plain TCP: read and hand over frames in the hub, from an io
        watcher's callback, instead of switching into a reader greenlet and
        back for every chunk. The calling greenlet is done once this returns;
        `stop` stops the watcher."""
        if self.link.state is not UP:
            return
        self._readable = readable = self._loop.io(raw.fileno(), 1)
        view = memoryview(bytearray(self.link.config.recv_size))
        self._read_args = (raw.recv_into, view, self.decoder.feed, self.stats)
        readable.start(self._on_readable, *self._read_args)

    def _on_readable(
        self,
        recv_into: Callable[[memoryview], int],
        view: memoryview,
        feed: Callable[[bytes], list[bytes]],
        stats: ConnectionStats,
    ) -> None:
        """The socket is readable (runs in the hub: nothing may block or escape)."""
        try:
            size = recv_into(view)
        except (BlockingIOError, InterruptedError):
            return  # nothing after all; the watcher stays on
        except OSError as exc:
            self.link.fail(f"recv_failed: {exc}")
            return
        data = view[:size].tobytes()
        try:
            if not data or self.link.faults is not None:
                self._received(data, feed, stats)
                return
            stats.bytes_received += len(data)  # the common case: `_received`, inlined
            self.received_chunks += 1
            frames = feed(data)
            if frames:
                stats.frames_received += len(frames)
                self.deliver(frames)
        except FrameError as exc:
            self._broken_stream(exc)
        except Exception as exc:  # a bug here must not reach the hub
            log.exception("connection_error", local=self.link.config.name, peer=self.link.label())
            self.link.fail(f"internal_error: {exc!r}")
        except BaseException as exc:
            self.link.fail(f"internal_error: {exc!r}")
            raise

    def _received(self, data: bytes, feed: Callable[[bytes], list[bytes]], stats: ConnectionStats) -> bool:
        """Handle one chunk from the socket; False once the connection is closed."""
        if not data:
            self.link.fail("peer_closed")
            return False
        stats.bytes_received += len(data)
        faults = self.link.faults
        if faults is None or not faults.block_in:
            self.received_chunks += 1
        try:
            frames = feed(data)
        except FrameError as exc:
            self._broken_stream(exc)
            return False
        if not frames:
            return True
        stats.frames_received += len(frames)
        return self.deliver(frames)

    def _broken_stream(self, exc: FrameError) -> None:
        """The framing broke: deliver the frames before the fault, then close."""
        self.stats.frames_received += len(exc.frames)
        if self.deliver(exc.frames):
            reason = f"frame_error: {exc}"
            if self._deliver_later is None:
                self.link.fail(reason)
            else:
                self._close_after_held = reason  # once the held frames are in

    def deliver(self, frames: list[bytes]) -> bool:
        """Decode and hand over frames in order; False once the connection closed."""
        link = self.link
        on_message = self.on_message
        faults = link.faults
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
                link.fail(f"malformed_frame: {exc}")
                return False
            try:
                on_message(link, message)
            except Exception as exc:
                log.exception("on_message_failed", local=link.config.name, peer=link.label())
                link.fail(f"on_message_failed: {exc!r}")
                return False
            if link.state is CLOSED:
                return False
            if self.defer_requested:
                self.defer_requested = False
                if self._readable is None:  # a reader greenlet: let the others run
                    gevent.sleep(0)
                    if link.state is CLOSED:
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
        if self.link.state is CLOSED or frames is None:
            return
        try:
            if not self.deliver(frames) or self._deliver_later is not None:
                return  # closed, or held back again
        except Exception as exc:
            log.exception("connection_error", local=self.link.config.name, peer=self.link.label())
            self.link.fail(f"internal_error: {exc!r}")
            return
        if self._close_after_held is not None:
            self.link.fail(self._close_after_held)
            return
        self._readable.start(self._on_readable, *self._read_args)
