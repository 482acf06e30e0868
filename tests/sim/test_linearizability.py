"""The WGL checker accepts exactly the histories some sequential order explains."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxtor.sim.linearizability import CheckResult, Operation, check_history

IMPOSSIBLE = "impossible-output"


class RegisterModel:
    """A read/write register that starts empty (None)."""

    def init(self):
        return None

    def step(self, state, input):
        kind = input[0]
        if kind == "write":
            return input[1], "ok"
        if kind == "read":
            return state, state
        raise ValueError(f"unknown input {input!r}")


class CasRegisterModel(RegisterModel):
    """A register with compare-and-set: ("cas", expected, new) -> True/False."""

    def step(self, state, input):
        if input[0] == "cas":
            _, expected, new = input
            return (new, True) if state == expected else (state, False)
        return super().step(state, input)


class HintedCasRegisterModel(CasRegisterModel):
    """The same register, declaring its read-only operations to the checker."""

    def is_read_only(self, input, output):
        return input[0] == "read" or (input[0] == "cas" and output is False)


MODELS = [CasRegisterModel(), HintedCasRegisterModel()]


def op(process, input, output, invoke, complete, key="k"):
    return Operation(process=process, key=key, input=input, output=output, invoke=invoke, complete=complete)


def w(process, value, invoke, complete, key="k"):
    return op(process, ("write", value), "ok", invoke, complete, key)


def r(process, value, invoke, complete, key="k"):
    return op(process, ("read",), value, invoke, complete, key)


def cas(process, expected, new, result, invoke, complete, key="k"):
    return op(process, ("cas", expected, new), result, invoke, complete, key)


@pytest.fixture(params=MODELS, ids=["plain", "read-only-hints"])
def model(request):
    """Every test runs with and without the read-only hints (greedy placement must stay sound)."""
    return request.param


def check(history, model, **kw) -> CheckResult:
    return check_history(history, model, **kw)


# --- plain registers -------------------------------------------------------


def test_empty_history_is_linearizable(model):
    result = check([], model)
    assert result.ok and result.key is None and not result.unknown


def test_sequential_writes_and_reads_are_linearizable(model):
    history = [w("a", 1, 0, 1), r("b", 1, 2, 3), w("a", 2, 4, 5), r("b", 2, 6, 7)]
    assert check(history, model).ok


def test_read_of_a_value_never_written_is_rejected(model):
    history = [w("a", 1, 0, 1), r("b", 7, 2, 3)]
    result = check(history, model)
    assert not result.ok and not result.unknown
    assert result.key == "k"
    assert "7" in result.message and "not linearizable" in result.message
    assert "the model expects 1 here" in result.message


def test_stale_read_after_a_completed_write_is_rejected(model):
    history = [w("a", 1, 0, 1), w("a", 2, 2, 3), r("b", 1, 4, 5)]
    result = check(history, model)
    assert not result.ok
    # The two writes linearize; the stale read is what cannot follow them.
    assert "Longest linearizable prefix found: 2 operations" in result.message


def test_read_concurrent_with_a_write_may_see_either_value(model):
    for seen in (None, 1):
        assert check([w("a", 1, 0, 10), r("b", seen, 2, 3)], model).ok


def test_concurrent_writes_may_take_effect_in_either_order(model):
    for last in (1, 2):
        history = [w("a", 1, 0, 10), w("b", 2, 1, 9), r("c", last, 11, 12)]
        assert check(history, model).ok


def test_concurrent_writes_cannot_be_seen_in_both_orders(model):
    history = [
        w("a", 1, 0, 10),
        w("b", 2, 1, 9),
        r("c", 1, 11, 12),
        r("c", 2, 13, 14),
    ]
    assert not check(history, model).ok


def test_once_a_new_value_is_read_no_later_read_sees_the_old_one(model):
    history = [w("a", 1, 0, 1), w("a", 2, 2, 20), r("b", 2, 3, 4), r("c", 1, 5, 6)]
    assert not check(history, model).ok


def test_touching_intervals_count_as_overlapping(model):
    # The read is invoked exactly when the write responds: either order is allowed.
    assert check([w("a", 1, 0, 1), r("b", None, 1, 2)], model).ok


# --- compare-and-set -------------------------------------------------------


def test_cas_history_with_one_winner_is_linearizable(model):
    history = [
        cas("a", None, 1, True, 0, 2),
        cas("b", None, 2, False, 1, 3),
        r("c", 1, 4, 5),
    ]
    assert check(history, model).ok


def test_two_cas_winners_from_the_same_state_are_rejected(model):
    history = [
        cas("a", None, 1, True, 0, 2),
        cas("b", None, 2, True, 1, 3),
    ]
    result = check(history, model)
    assert not result.ok
    assert "the model expects False here" in result.message


def test_cas_chain_must_follow_real_time_order(model):
    ok_history = [
        cas("a", None, 1, True, 0, 1),
        cas("b", 1, 2, True, 2, 3),
        cas("c", 2, 3, True, 4, 5),
        r("d", 3, 6, 7),
    ]
    assert check(ok_history, model).ok
    # The second CAS responded before the first was invoked: it cannot have seen 1.
    bad_history = [
        cas("b", 1, 2, True, 0, 1),
        cas("a", None, 1, True, 2, 3),
    ]
    assert not check(bad_history, model).ok


# --- timed-out (pending) operations ----------------------------------------


def test_pending_write_that_must_have_applied_is_accepted(model):
    history = [w("a", 1, 0, None), r("b", 1, 5, 6)]
    assert check(history, model).ok


def test_pending_write_that_may_never_apply_is_accepted(model):
    history = [w("a", 1, 0, None), r("b", None, 5, 6), r("b", None, 7, 8)]
    assert check(history, model).ok


def test_pending_write_may_apply_late(model):
    history = [w("a", 1, 0, None), r("b", None, 5, 6), r("b", 1, 7, 8)]
    assert check(history, model).ok


def test_pending_write_applies_at_most_once(model):
    # Reading 1 after the write of 2 completed puts the pending write of 1
    # after it; reading 2 later would need a second write of 2.
    history = [w("a", 1, 0, None), w("c", 2, 1, 2), r("b", 1, 5, 6)]
    assert check(history, model).ok
    history.append(r("b", 2, 7, 8))
    assert not check(history, model).ok


def test_pending_operation_cannot_take_effect_before_its_invocation(model):
    history = [r("b", 1, 0, 1), w("a", 1, 2, None)]
    assert not check(history, model).ok


def test_pending_output_is_ignored(model):
    history = [op("a", ("read",), IMPOSSIBLE, 0, None), w("b", 1, 1, 2), r("c", 1, 3, 4)]
    assert check(history, model).ok


def test_pending_cas_decides_a_later_cas(model):
    history = [
        cas("a", None, 1, None, 0, None),
        cas("b", None, 2, False, 1, 2),
        r("c", 1, 3, 4),
    ]
    assert check(history, model).ok
    history[1] = cas("b", None, 2, True, 1, 2)
    assert not check(history, model).ok


# --- keys, bounds, errors --------------------------------------------------


def test_keys_are_checked_independently(model):
    history = [
        w("a", 1, 0, 1, key="x"),
        r("b", None, 2, 3, key="y"),  # y was never written: empty is right
        r("b", 1, 2, 3, key="x"),
    ]
    assert check(history, model).ok


def test_first_bad_key_is_reported(model):
    history = [
        w("a", 1, 0, 1, key="good"),
        r("b", 1, 2, 3, key="good"),
        w("a", 1, 0, 1, key="bad"),
        r("b", 2, 2, 3, key="bad"),
    ]
    result = check(history, model)
    assert not result.ok and result.key == "bad"
    assert "'bad'" in result.message


def _hard_history(n: int, key="hard"):
    """Many concurrent writes of distinct values and one impossible final read."""
    ops = [w(i, i, 0, 100, key=key) for i in range(n)]
    ops.append(r("reader", -1, 101, 102, key=key))
    return ops


def test_search_bound_gives_unknown_not_a_hang(model):
    result = check(_hard_history(18), model, max_states=500)
    assert not result.ok and result.unknown
    assert result.key == "hard"
    assert "unknown" in result.message and "500" in result.message


def test_proven_violation_wins_over_an_unknown_key(model):
    history = _hard_history(18) + [w("a", 1, 0, 1, key="bad"), r("b", 2, 2, 3, key="bad")]
    result = check(history, model, max_states=500)
    assert not result.ok and not result.unknown and result.key == "bad"


def test_invalid_operations_are_refused(model):
    with pytest.raises(ValueError, match="completes before"):
        check([w("a", 1, 5, 4)], model)
    with pytest.raises(ValueError, match="finite"):
        check([w("a", 1, float("nan"), 4)], model)
    with pytest.raises(TypeError):
        check([("not", "an", "operation")], model)
    with pytest.raises(ValueError):
        check([], model, max_states=0)


def test_long_failure_message_shows_the_end_of_the_prefix(model):
    history = [w("a", i, 2 * i, 2 * i + 1) for i in range(40)]
    history.append(r("b", 3, 100, 101))
    result = check(history, model)
    assert not result.ok
    assert "Longest linearizable prefix found: 40 operations" in result.message
    assert "(28 earlier operations)" in result.message
    assert "40. 'a': ('write', 39)" in result.message


# --- property: real sequential executions are always accepted --------------


@st.composite
def sequential_histories(draw):
    """Run random ops sequentially on CAS registers, then blur the real order.

    Each op takes effect at a distinct instant 10*i; its interval is widened
    randomly around that instant (so ops overlap and sometimes touch), and a
    few ops time out, having taken effect or not.
    """
    model = CasRegisterModel()
    n = draw(st.integers(min_value=1, max_value=40))
    keys = draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n))
    states = {}
    history = []
    for i in range(n):
        key = keys[i]
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        value = draw(st.integers(min_value=0, max_value=3))
        if kind == "read":
            input = ("read",)
        elif kind == "write":
            input = ("write", value)
        else:
            input = ("cas", draw(st.one_of(st.none(), st.integers(0, 3))), value)
        point = 10 * i
        invoke = point - draw(st.integers(min_value=0, max_value=35))
        timed_out = draw(st.integers(min_value=0, max_value=9)) == 0
        applied = not timed_out or draw(st.booleans())
        output = None
        if applied:
            states[key], output = model.step(states.get(key, model.init()), input)
        complete = None if timed_out else point + draw(st.integers(min_value=0, max_value=35))
        history.append(op(f"p{i}", input, output, invoke, complete, key=key))
    return history


@pytest.mark.parametrize("model", MODELS, ids=["plain", "read-only-hints"])
@settings(max_examples=200, deadline=None)
@given(history=sequential_histories())
def test_histories_of_real_sequential_executions_are_accepted(model, history):
    result = check(history, model)
    assert result.ok, result.message


@pytest.mark.parametrize("model", MODELS, ids=["plain", "read-only-hints"])
@settings(max_examples=200, deadline=None)
@given(history=sequential_histories(), rnd=st.randoms(use_true_random=False))
def test_one_impossible_output_is_rejected(model, history, rnd):
    completed = [i for i, o in enumerate(history) if o.complete is not None]
    if not completed:
        return
    victim = rnd.choice(completed)
    o = history[victim]
    history[victim] = Operation(o.process, o.key, o.input, IMPOSSIBLE, o.invoke, o.complete)
    result = check(history, model)
    assert not result.ok and not result.unknown
    assert result.key == o.key
    # The explanation names the stuck point (the longest linearizable prefix and the
    # candidates for the next step); the mutated operation is among them only when it
    # could be next, so only the verdict and the key are certain here.
    assert f"key {o.key!r} is not linearizable" in result.message


def client_history(rng, key, n, clients, timeout_rate=0.01):
    """A history as clients produce it: each client waits for (or gives up on)
    its op before the next; each op takes effect at a random instant of its
    interval; writes use distinct values, as a Jepsen-style test would."""
    model = CasRegisterModel()
    free_at = [rng.random() for _ in range(clients)]
    planned = []
    for i in range(n):
        client = min(range(clients), key=free_at.__getitem__)
        invoke = free_at[client]
        latency = rng.expovariate(1.0)
        timed_out = rng.random() < timeout_rate
        input = rng.choice([("read",), ("write", i), ("cas", rng.choice([None, i - 1, i - 2]), i)])
        planned.append((invoke + rng.random() * latency, timed_out, client, input, invoke, invoke + latency))
        free_at[client] = invoke + latency + (5.0 if timed_out else 0.0)
    state = model.init()
    history = []
    for _, timed_out, client, input, invoke, complete in sorted(planned):
        output = None
        if not timed_out or rng.random() < 0.5:
            state, output = model.step(state, input)
        history.append(op(f"c{client}", input, output, invoke, None if timed_out else complete, key))
    return history


def test_large_concurrent_history_is_accepted(model):
    """Thousands of ops on several keys, 6 clients each: it must be proven within the
    default bound (a smoke test for the search's pruning; speed is never asserted)."""
    rng = random.Random(7)
    history = [o for key in ("k1", "k2", "k3") for o in client_history(rng, key, 2000, clients=6)]
    rng.shuffle(history)
    result = check(history, model)
    assert result.ok, result.message
