"""Length-prefixed framing: any split of the stream gives the same frames."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxtor.actors.framing import FrameDecoder, FrameError, frame

PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 3, b"", b"\x00\x00\x00\x05"]
STREAM = b"".join(frame(p) for p in PAYLOADS)


def test_frame_is_big_endian_length_then_payload() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


def test_whole_stream_in_one_chunk() -> None:
    assert FrameDecoder().feed(STREAM) == PAYLOADS


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert frames == PAYLOADS, f"split at {cut}"
        assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    frames = []
    for i in range(len(STREAM)):
        frames += decoder.feed(STREAM[i : i + 1])
    assert frames == PAYLOADS


def test_many_small_frames_in_one_chunk_and_a_tail() -> None:
    payloads = [str(i).encode() * (i % 7) for i in range(10_000)]
    stream = b"".join(frame(p) for p in payloads)
    decoder = FrameDecoder()
    assert decoder.feed(stream + b"\x00\x00") == payloads
    assert decoder.buffered == 2
    assert decoder.feed(b"\x00\x01z") == [b"z"]


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(bytearray(frame(b"ab"))) == [b"ab"]
    assert decoder.feed(memoryview(frame(b"cd"))) == [b"cd"]


def test_frames_are_independent_bytes_objects() -> None:
    decoder = FrameDecoder()
    chunk = bytearray(frame(b"one") + frame(b"two")[:3])
    frames = decoder.feed(chunk)
    chunk[:] = b"x" * len(chunk)  # reusing the receive buffer must not alter frames
    frames += decoder.feed(frame(b"two")[3:])
    assert frames == [b"one", b"two"]
    assert all(type(f) is bytes for f in frames)


def test_max_frames_leaves_the_rest_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(STREAM, max_frames=1) == PAYLOADS[:1]
    assert decoder.feed(max_frames=2) == PAYLOADS[1:3]
    assert decoder.feed() == PAYLOADS[3:]


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    assert decoder.feed(frame(b"x" * 10)) == [b"x" * 10]


def test_oversize_length_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameError, match="11 bytes exceeds the limit of 10"):
        decoder.feed(b"\x00\x00\x00\x0b")  # no payload needed to refuse


def test_frames_before_a_violation_are_returned_with_the_error() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameError) as info:
        decoder.feed(frame(b"ok") + frame(b"y" * 50))
    assert info.value.frames == [b"ok"]


def test_decoder_is_dead_after_a_violation() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameError):
        decoder.feed(b"\xff\xff\xff\xff")
    with pytest.raises(FrameError, match="unusable"):
        decoder.feed(frame(b"fine"))


def test_limit_may_be_raised_between_feeds() -> None:
    decoder = FrameDecoder(max_frame_size=4)
    big = frame(b"x" * 100)
    assert decoder.feed(frame(b"hi") + big, max_frames=1) == [b"hi"]
    decoder.max_frame_size = 1000
    assert decoder.feed() == [b"x" * 100]


def test_large_frame_arriving_in_many_chunks_is_linear() -> None:
    payload = bytes(5 * 2**20)
    stream = frame(payload)
    decoder = FrameDecoder()
    frames = []
    for i in range(0, len(stream), 4096):
        frames += decoder.feed(stream[i : i + 4096])
    assert frames == [payload]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30), st.lists(st.integers(0, 2000), max_size=10))
def test_property_any_chunking_gives_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = FrameDecoder()
    frames = []
    for start, stop in itertools.pairwise(points):
        frames += decoder.feed(stream[start:stop])
    assert frames == payloads
    assert decoder.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_property_garbage_raises_only_frame_error(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_size=64)
    try:
        frames = decoder.feed(data)
    except FrameError:
        return
    assert all(len(f) <= 64 for f in frames)
