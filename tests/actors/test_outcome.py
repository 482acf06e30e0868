"""`Ok` / `Err`: matched, unwrapped, and sent over the wire as themselves."""

from __future__ import annotations

import pytest

from paxtor.actors import Err, Ok, Outcome
from paxtor.actors.outcome import OutcomeError
from paxtor.actors.wire import decode, encode


def describe(outcome: Outcome[int, str]) -> str:
    match outcome:
        case Ok(value):
            return f"value {value}"
        case Err("not_found"):
            return "missing"
        case Err(reason):
            return f"refused: {reason}"
    raise AssertionError(outcome)


def test_outcomes_match_by_kind_and_content() -> None:
    assert describe(Ok(3)) == "value 3"
    assert describe(Err("not_found")) == "missing"
    assert describe(Err("full")) == "refused: full"
    assert Ok(1).ok and not Err(1).ok
    assert Ok(1) != Err(1)


def test_unwrap_gives_the_value_or_raises_the_reason() -> None:
    assert Ok("x").unwrap() == "x"
    with pytest.raises(KeyError):
        Err(KeyError("k")).unwrap()
    with pytest.raises(OutcomeError) as info:
        Err(("start_failed", 3)).unwrap()
    assert info.value.reason == ("start_failed", 3)


def test_outcomes_cross_the_wire_as_themselves() -> None:
    for outcome in (Ok(None), Ok((1, "a")), Err("not_found")):
        assert decode(encode(outcome)) == outcome
        assert type(decode(encode(outcome))) is type(outcome)
