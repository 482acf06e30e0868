"""The size check of a request (`paxtor.paxos.request_size`): a lower bound from lengths
that never refuses a request that fits, and that refuses one over the limit without
encoding or hashing it, whatever its size (the node's loop runs the caller)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxtor.actors.wire import encode
from paxtor.paxos import request_size
from paxtor.paxos.config import MAX_REQUEST_BYTES
from paxtor.paxos.register import Binding, Register
from paxtor.paxos.request_size import check_length, encode_within, size_at_least

LIMIT = MAX_REQUEST_BYTES
BLOB = b"x" * (40 * 2**20)  # the 40 MiB, made once for the module

hashable_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)  # any code point: up to 4 bytes each in UTF-8
    | st.binary(max_size=30)
)
scalars = hashable_scalars | st.binary(max_size=30).map(bytearray)
hashables = st.recursive(
    hashable_scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4), max_leaves=8
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.lists(inner, max_size=6).map(tuple)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.builds(
            Register, st.integers(0, 99), st.just(True), inner, st.none() | st.builds(Binding, node=st.text(max_size=8))
        )
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.sampled_from([0, 1, 3, 256]))
def test_the_bound_never_exceeds_the_encoding(value: Any, walk_items: int) -> None:
    saved = request_size.WALK_ITEMS
    request_size.WALK_ITEMS = walk_items  # a small budget: the items not looked into count too
    try:
        bound = size_at_least(value, 2**62)
    finally:
        request_size.WALK_ITEMS = saved
    assert 1 <= bound <= len(encode(value))


def test_a_value_that_fits_is_encoded_once_and_returned() -> None:
    value = {"k": [b"v" * 1000, ("t", 1.5)], 2: Register(3, True, b"r" * 100)}
    assert encode_within(value, LIMIT, "the value", already=10) == encode(value)
    with pytest.raises(ValueError, match=f"takes {LIMIT - 150 + 303} bytes encoded, over .*max_request_bytes={LIMIT}"):
        encode_within([1000] * 100, LIMIT, "the value", already=LIMIT - 150)  # over only once encoded


@pytest.mark.parametrize(
    "make",
    [
        lambda: ("k", BLOB),  # a key: a tuple of two, its length alone says nothing
        lambda: [1, 2, {"nested": [BLOB]}],
        lambda: {BLOB: 1},
        lambda: Register(1, True, ("payload", BLOB)),  # what a change function makes
        lambda: frozenset([1, BLOB]),
        lambda: [memoryview(BLOB)],
        lambda: ["é" * LIMIT],  # a character takes a byte at least (this one two)
    ],
)
def test_too_large_by_its_lengths_is_refused_without_encoding_it(make: Callable[[], Any]) -> None:
    value = make()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"takes at least \\d+ bytes encoded, over .*max_request_bytes={LIMIT}"):
            encode_within(value, LIMIT, "the key and value")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # encoding it would take its size again (40 MiB), and more


class HashProbe:
    """Counts how often it is hashed."""

    hashed = 0

    def __hash__(self) -> int:
        HashProbe.hashed += 1
        return 0


def test_the_lengths_are_looked_at_before_a_key_is_hashed() -> None:
    # Hashing a key (as PaxosKV checks that it is one) costs as much as encoding it.
    from paxtor.paxos.api import _check_key

    HashProbe.hashed = 0
    with pytest.raises(ValueError, match="the key takes at least"):
        _check_key((HashProbe(), BLOB), LIMIT)
    assert HashProbe.hashed == 0


def test_a_huge_container_is_judged_by_its_length_without_walking_it() -> None:
    many = [0] * (LIMIT + 1)  # every item takes a byte at least
    with pytest.raises(ValueError, match="at least"):
        check_length(many, LIMIT, "the value")
    wide = {i: i for i in range(LIMIT // 2 + 1)}
    with pytest.raises(ValueError, match="at least"):
        check_length(wide, LIMIT, "the value")
    check_length([[0] * 1000] * 1000, LIMIT, "the value")  # 1 MB of items: may fit, left to the encoding
