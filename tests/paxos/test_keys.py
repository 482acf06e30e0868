"""One key rule for PaxosKV and Paxtor: keys equal in Python are one key, and encode
alike once canonical (`paxtor.paxos.keys`); a NaN anywhere in a key is refused."""

from __future__ import annotations

import enum
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxtor.actors.ids import Pid
from paxtor.actors.wire import encode
from paxtor.paxos.keys import canonical_key


def packed(key: object) -> bytes:
    return encode(canonical_key(key))


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "a, b",
    [
        (1, True),
        (1, 1.0),
        (0, -0.0),
        (0.0, -0.0),
        (False, 0.0),
        (Colour.RED, 1),
        ((1, "a"), (True, "a")),
        ((0.0, (2,)), (-0.0, (2.0,))),
        ([1, 2], [1.0, 2]),
        ({1, 2}, frozenset({2.0, 1})),
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
        ({1: "x"}, {True: "x"}),
        (b"ab", bytearray(b"ab")),
        (Pid("node1", 3, 4), Pid("node1", 3, 4)),
    ],
)
def test_keys_equal_in_python_are_one_key(a: object, b: object) -> None:
    assert a == b  # the rule: Python's equality
    assert packed(a) == packed(b)


@pytest.mark.parametrize(
    "a, b",
    [(1, "1"), (1, 1.5), ((1,), [1]), (1, (1,)), (b"1", "1"), (2**53 + 1, float(2**53)), (math.inf, 10**400)],
)
def test_keys_unequal_in_python_stay_apart(a: object, b: object) -> None:
    assert a != b
    assert packed(a) != packed(b)


@pytest.mark.parametrize(
    "key",
    [math.nan, (1, math.nan), [("a", math.nan)], {"a": math.nan}, {math.nan: 1}, frozenset({math.nan}), -math.nan],
)
def test_a_nan_anywhere_in_a_key_is_refused(key: object) -> None:
    with pytest.raises(ValueError, match="NaN"):
        canonical_key(key)


def test_canonical_numbers_are_plain() -> None:
    assert canonical_key(True).__class__ is int
    assert canonical_key(2.0).__class__ is int
    assert canonical_key(-0.0) == 0 and canonical_key(-0.0).__class__ is int
    assert canonical_key(2.5) == 2.5
    assert canonical_key(math.inf) == math.inf


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=3),
)
keys = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6)


@given(keys, keys)
def test_equal_keys_and_only_they_share_an_encoding(a: object, b: object) -> None:
    assert (a == b) == (packed(a) == packed(b))
