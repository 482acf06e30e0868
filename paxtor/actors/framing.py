"""Sans-IO framing: a byte stream <-> a sequence of frames.

A frame is a 4-byte big-endian payload length followed by the payload. An
empty payload is a valid frame (connections use it as a heartbeat). The
decoder refuses a length above its limit as soon as the 4 header bytes are
in, so a peer cannot make it buffer more than one frame's worth of data.
"""

from __future__ import annotations

import struct

from paxtor.actors.errors import PaxtorError

__all__ = ["frame", "frame_header", "FrameDecoder", "FrameError", "HEADER_SIZE", "MAX_FRAME_SIZE"]

HEADER_SIZE = 4
MAX_FRAME_SIZE = 64 * 2**20
_HEADER = struct.Struct(">I")
_unpack_header = _HEADER.unpack_from
frame_header = _HEADER.pack
"""frame_header(n) -> the 4 bytes announcing an n-byte payload."""


class FrameError(PaxtorError, ValueError):
    """The stream broke the framing rules; the decoder cannot continue.

    `frames` holds the complete frames that preceded the violation in the
    data passed to the failing `feed`, so nothing valid is lost silently.
    """

    def __init__(self, message: str, frames: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.frames = frames or []


def frame(payload: bytes) -> bytes:
    """One frame holding `payload`."""
    if len(payload) > 0xFFFFFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits received bytes into frame payloads; keeps the incomplete tail.

    `max_frame_size` may be changed between feeds (a connection keeps it
    small until the peer has authenticated).
    """

    __slots__ = ("max_frame_size", "_buffer", "_dead")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._dead: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview = b"", max_frames: int | None = None) -> list[bytes]:
        """Add received bytes; return the payloads of the frames now complete.

        With `max_frames`, stop after that many and keep the rest buffered
        (call ``feed()`` with no data to continue). Raises FrameError on a
        length above the limit, and on every call after that.
        """
        if self._dead is not None:
            raise FrameError(f"decoder unusable after: {self._dead}")
        buffer = self._buffer
        if not buffer and max_frames is None and type(data) is bytes:
            return self._feed_bytes(data)
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            source = data
        end = len(source)
        limit = self.max_frame_size
        frames: list[bytes] = []
        offset = 0
        with memoryview(source) as view:
            while end - offset >= HEADER_SIZE:
                if max_frames is not None and len(frames) >= max_frames:
                    break
                (length,) = _unpack_header(view, offset)
                if length > limit:
                    self._dead = f"frame of {length} bytes exceeds the limit of {limit}"
                    self._buffer = bytearray()
                    raise FrameError(self._dead, frames)
                stop = offset + HEADER_SIZE + length
                if stop > end:
                    break
                frames.append(view[offset + HEADER_SIZE : stop].tobytes())
                offset = stop
            if source is not buffer and offset < end:
                buffer += view[offset:]  # keep the incomplete tail
        if source is buffer and offset:
            del buffer[:offset]  # O(1) amortized: bytearray trims its head in place
        return frames

    def _feed_bytes(self, data: bytes) -> list[bytes]:
        """Fast path: nothing buffered and a bytes chunk (slicing copies once)."""
        end = len(data)
        limit = self.max_frame_size
        frames: list[bytes] = []
        offset = 0
        while end - offset >= HEADER_SIZE:
            (length,) = _unpack_header(data, offset)
            if length > limit:
                self._dead = f"frame of {length} bytes exceeds the limit of {limit}"
                raise FrameError(self._dead, frames)
            stop = offset + HEADER_SIZE + length
            if stop > end:
                break
            frames.append(data[offset + HEADER_SIZE : stop])
            offset = stop
        if offset < end:
            self._buffer += data[offset:]
        return frames
