"""The wire codec: what round-trips, what the sender refuses, what the receiver rejects."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import math
import sys
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxtor.actors.ids import Pid, Ref
from paxtor.actors.wire import (
    RemoteError,
    WireError,
    decode,
    encode,
    registered_fields,
    registered_name,
    type_name_of,
    wire_type,
)


def roundtrip(value: Any) -> Any:
    return decode(encode(value))


def same(a: Any, b: Any) -> bool:
    """Equal AND of the same types all the way down (1 == 1.0 == True otherwise)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same(k, k2) and same(v, b[k2]) for k2 in b if k2 == k) for k, v in a.items()
        )
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


@wire_type(name="test.Ballot")
@dataclasses.dataclass(frozen=True)
class Ballot:
    counter: int
    node: str


@wire_type(name="test.Prepare")
@dataclasses.dataclass
class Prepare:
    key: Any
    ballot: Ballot
    voters: frozenset = frozenset()
    cached: int = dataclasses.field(default=7, init=False)


@wire_type(name="test:KwOnly")
@dataclasses.dataclass(kw_only=True)
class KwOnly:
    a: int
    b: tuple = ()


@wire_type(name="test.Validated")
@dataclasses.dataclass
class Validated:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


@dataclasses.dataclass
class NotRegistered:
    x: int


class AppError(Exception):
    pass


class Color(enum.IntEnum):
    RED = 1


class Mode(str, enum.Enum):  # noqa: UP042 - the str mixin is what this test sends
    FAST = "fast"


class Point(NamedTuple):
    x: int
    y: int


# --------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        2**64 - 1,
        -(2**63),
        2**64,
        -(2**63) - 1,
        2**200,
        -(2**200),
        1.5,
        -0.0,
        float("inf"),
        "",
        "héllo",
        b"",
        b"\x00\xff",
        [],
        (),
        (1,),
        [1, [2, (3, [4, ()])]],
        ((), ((),)),
        {"a": 1},
        {1: "int key", (1, "a"): "tuple key", None: 0, 2.5: "float", b"k": "bytes key"},
        {frozenset({1, 2}): {3}},
        {Pid("n1", 1, 2): Ref("n1", 1, 3)},
        set(),
        {1, "a", (2, 3)},
        frozenset({frozenset({1}), (1, 2)}),
        Pid("node1", 1700000000123456789, 42),
        Ref("nonode@nohost", 0, 0),
        ("$gen_call", (Pid("a", 1, 2), Ref("a", 1, 9)), ("put", "k", {"v": [1, 2]})),
        Ballot(3, "node2"),
        Prepare(("bucket", "key"), Ballot(1, "n"), frozenset({"n1", "n2"})),
        KwOnly(a=1, b=(2, 3)),
        [Ballot(1, "a"), {Ballot(2, "b"): (Ballot(3, "c"),)}],
        datetime.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC),
    ],
    ids=repr,
)
def test_round_trip_keeps_value_and_types(value: Any) -> None:
    assert same(roundtrip(value), value)


def test_nan_round_trips() -> None:
    assert math.isnan(roundtrip(float("nan")))


def test_aware_datetime_comes_back_in_utc_as_the_same_instant() -> None:
    paris = datetime.timezone(datetime.timedelta(hours=2))
    value = datetime.datetime(2024, 5, 1, 14, 0, tzinfo=paris)
    back = roundtrip(value)
    assert back == value and back.utcoffset() == datetime.timedelta(0)


def test_registered_dataclass_fields_with_init_false_are_rebuilt_locally() -> None:
    value = Prepare("k", Ballot(1, "n"))
    value.cached = 99
    assert roundtrip(value).cached == 7


def test_registry_names() -> None:
    assert registered_name(Ballot) == "test.Ballot"
    assert registered_name(KwOnly) == "test:KwOnly"
    assert registered_name(NotRegistered) is None


def test_registered_fields_are_the_ones_that_travel() -> None:
    assert registered_fields(Prepare) == ("key", "ballot", "voters")  # not ``cached`` (init=False)
    assert registered_fields(NotRegistered) is None


def test_registering_a_name_twice_for_another_class_fails() -> None:
    with pytest.raises(ValueError, match="already used"):

        @wire_type(name="test:KwOnly")
        @dataclasses.dataclass
        class Other:
            a: int


def test_reregistering_the_same_class_is_harmless() -> None:
    assert wire_type(Ballot, name="test.Ballot") is Ballot
    assert roundtrip(Ballot(1, "x")) == Ballot(1, "x")


def test_wire_type_refuses_a_non_dataclass() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        wire_type(AppError, name="test.AppError")


def test_wire_type_needs_a_name_the_protocol_pins() -> None:
    with pytest.raises(TypeError, match="name"):
        wire_type(Ballot)  # type: ignore[call-overload]


def test_builtin_subclasses_travel_as_their_base_type() -> None:
    assert same(roundtrip(Color.RED), 1)
    assert same(roundtrip(Mode.FAST), "fast")
    assert same(roundtrip(Point(1, 2)), (1, 2))
    assert same(roundtrip(collections.OrderedDict(a=1)), {"a": 1})
    assert same(roundtrip(collections.defaultdict(list, a=[1])), {"a": [1]})
    assert same(roundtrip(bytearray(b"ab")), b"ab")


# ---------------------------------------------------------------- exceptions


def test_exception_becomes_remote_error_with_type_path_and_message() -> None:
    back = roundtrip(ValueError("bad value"))
    assert isinstance(back, RemoteError) and isinstance(back, Exception)
    assert back.type_name == "builtins.ValueError"
    assert back.message == "bad value"
    assert back.traceback is None
    assert str(back) == "builtins.ValueError: bad value"
    assert back == RemoteError("builtins.ValueError", "bad value")
    assert back != RemoteError("builtins.KeyError", "bad value")
    assert back.matches(ValueError) and back.matches("builtins.ValueError")
    assert not back.matches(KeyError)


def test_exception_carries_its_formatted_traceback() -> None:
    try:
        raise AppError("boom")
    except AppError as exc:
        back = roundtrip(exc)
    assert back.type_name == f"{__name__}.AppError"
    assert "Traceback (most recent call last)" in back.traceback
    assert "test_exception_carries_its_formatted_traceback" in back.traceback
    assert type_name_of(back) == type_name_of(AppError()) == f"{__name__}.AppError"


def test_exit_reason_tuple_with_exception_inside() -> None:
    back = roundtrip(("shutdown", KeyError("k"), [RuntimeError()]))
    assert back[0] == "shutdown"
    assert back[1] == RemoteError("builtins.KeyError", "'k'")
    assert back[2] == [RemoteError("builtins.RuntimeError", "")]
    assert str(back[2][0]) == "builtins.RuntimeError"


def test_remote_error_forwarded_again_keeps_original_type() -> None:
    once = roundtrip(ValueError("x"))
    twice = roundtrip(once)
    assert twice == once and twice.type_name == "builtins.ValueError"
    assert RemoteError.from_exception(once) is once


def test_base_exceptions_and_broken_str_still_encode() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    assert roundtrip(KeyboardInterrupt()).type_name == "builtins.KeyboardInterrupt"
    back = roundtrip(Broken())
    assert back.type_name.endswith("Broken") and "unprintable" in back.message
    assert {roundtrip(ValueError("a")), RemoteError("builtins.ValueError", "a")} == {
        RemoteError("builtins.ValueError", "a")
    }


# ------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("value", "type_name", "where"),
    [
        (object(), "builtins.object", "value"),
        ({"a": [1, {2: object()}]}, "builtins.object", "value['a'][1][2]"),
        ((1, lambda: 0), "builtins.function", "value[1]"),
        (NotRegistered(1), "NotRegistered", "value"),
        ([Ballot(1, object())], "builtins.object", "value[0].node"),
        ({(1, object()): 1}, "builtins.object", "key"),
        ({1, 2, object()}, "builtins.object", "item"),
    ],
)
def test_unencodable_value_raises_type_error_naming_type_and_place(value: Any, type_name: str, where: str) -> None:
    with pytest.raises(TypeError) as info:
        encode(value)
    assert type_name in str(info.value)
    assert where in str(info.value)


def test_ill_typed_pid_is_refused_by_the_sender_not_the_receiver() -> None:
    with pytest.raises(TypeError, match="Pid"):
        encode(("to", Pid(1, 2, 3)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Ref"):
        encode(Ref("n", "1", 3))  # type: ignore[arg-type]


def test_naive_datetime_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match="naive datetime"):
        encode(datetime.datetime(2024, 1, 1))


def test_cycles_and_excessive_nesting_raise_type_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(TypeError):
        encode(cycle)
    deep: Any = ()
    for _ in range(2000):
        deep = (deep,)
    with pytest.raises(TypeError):
        encode(deep)


def test_encoder_is_usable_after_an_error() -> None:
    with pytest.raises(TypeError):
        encode([1, 2, object()])
    assert encode([1, 2]) == msgpack.packb([1, 2])


# ------------------------------------------------------------- decode errors

MARK_TUPLE = msgpack.ExtType(1, b"")
MARK_RECORD = msgpack.ExtType(4, b"")
MARK_PID = msgpack.ExtType(6, b"")


def packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x92\x01",  # array of 2 with one element
        b"\x01\x02",  # trailing data
        b"\xa5ab",  # truncated str
        b"\xc4\x05ab",  # truncated bin
        b"\xa2\xff\xfe",  # invalid utf-8
        b"\xdd\xff\xff\xff\xff",  # array claiming 4G elements
        packed(msgpack.ExtType(42, b"x")),  # unknown ext code
        packed(msgpack.ExtType(16, b"")),  # empty bigint
        packed(MARK_TUPLE),  # a bare marker
        packed([1, MARK_TUPLE]),  # marker not at the head
        packed({"k": MARK_TUPLE}),  # marker as a map value
        packed({MARK_TUPLE: 1}),
        packed([MARK_TUPLE, MARK_TUPLE]),
        packed(msgpack.ExtType(1, b"payload")),  # marker with a payload
        packed([MARK_RECORD]),  # record without a name
        packed([MARK_RECORD, 12]),
        packed([MARK_RECORD, "os:system", "rm -rf /"]),  # unknown name: no import
        packed([MARK_RECORD, f"{__name__}:Ballot", 1]),  # wrong field count
        packed([MARK_RECORD, f"{__name__}:Validated", -1]),  # __post_init__ refuses
        packed([MARK_PID, "n", 1]),
        packed([MARK_PID, 1, 2, 3]),
        packed([MARK_PID, "n", True, 3]),
        packed([msgpack.ExtType(5, b""), "T", "m"]),  # exception with 2 fields
        packed([msgpack.ExtType(5, b""), 1, "m", None]),
        packed([msgpack.ExtType(2, b""), {"unhashable": 1}]),  # set of a dict
        b"\x81\x81\x01\x02\x03",  # map key that is a map (unhashable)
        b"\x91" * 100_000 + b"\x01",  # nested too deeply
    ],
)
def test_malformed_input_raises_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)


def test_unknown_type_name_never_imports_anything() -> None:
    name = "paxtor_module_that_must_not_be_imported"
    with pytest.raises(WireError, match="unknown wire type"):
        decode(packed([MARK_RECORD, f"{name}:Thing"]))
    assert name not in sys.modules


def test_decoder_state_is_clean_after_an_error() -> None:
    with pytest.raises(WireError):
        decode(packed([1, MARK_TUPLE]))
    assert decode(encode((1, (2,)))) == (1, (2,))


# ------------------------------------------------------------ property tests

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
ids_args = (st.text(min_size=1, max_size=10), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
pids = st.builds(Pid, *ids_args)
refs = st.builds(Ref, *ids_args)
ballots = st.builds(Ballot, st.integers(0, 2**32), st.text(max_size=5))
hashables = st.recursive(
    scalars | pids | refs | ballots,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=8,
)
values = st.recursive(
    scalars | pids | refs | ballots,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_property_round_trip(value: Any) -> None:
    assert same(roundtrip(value), value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        decode(data)
    except WireError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_fuzz_mutated_encodings_raise_only_wire_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    try:
        decode(bytes(encoded[:cut]))
    except WireError:
        pass


def test_equal_sets_encode_alike_whatever_their_iteration_order():
    a = frozenset(range(0, 64, 7)) | {"x", ("t", 1)}
    b = frozenset(reversed([*a]))
    built = set()
    for item in sorted(a, key=repr, reverse=True):  # another insertion history
        built.add(item)
    assert encode(a) == encode(b) == encode(frozenset(built))
    assert encode(set(a)) == encode(built)
    assert decode(encode(a)) == a
    assert [*frozenset([1, 9])] != [*frozenset([9, 1])]  # colliding hashes: insertion order shows
    assert encode(frozenset([1, 9])) == encode(frozenset([9, 1]))


def test_a_set_of_strings_encodes_alike_under_every_hash_seed():
    # String hashes (so set order) differ per process; a lock key is its encoding.
    import os
    import subprocess

    code = "from paxtor.actors.wire import encode; print(encode(frozenset('abcdefghij')).hex())"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
