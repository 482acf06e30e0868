"""Properties of the mailbox: selective receive against a list model, and
many senders with random selective receives: per-sender order kept,
nothing lost, nothing duplicated."""

from __future__ import annotations

import gevent
import greenlet
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxtor.actors import ReceiveTimeout, receive, self_pid, send, spawn
from paxtor.actors.mailbox import Mailbox

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- the Mailbox alone against a model -----------------------------------------------------------

PREDICATES = {
    "any": None,
    "even": lambda m: m % 2 == 0,
    "odd": lambda m: m % 2 == 1,
    "big": lambda m: m >= 50,
    "none": lambda m: False,
}

operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 99)),
        st.tuples(st.just("receive"), st.sampled_from(sorted(PREDICATES))),
    ),
    max_size=60,
)


@SETTINGS
@given(operations)
def test_mailbox_matches_a_list_model(ops):
    box = Mailbox(greenlet.getcurrent(), gevent.get_hub())
    model: list[int] = []
    for op, arg in ops:
        if op == "put":
            box.put(arg)
            model.append(arg)
            continue
        pred = PREDICATES[arg]
        expected = next((m for m in model if pred is None or pred(m)), None)
        if expected is None:
            with pytest.raises(ReceiveTimeout):
                box.receive(pred, timeout=0)
        else:
            assert box.receive(pred, timeout=0) == expected
            model.remove(expected)  # removes the first occurrence: the one taken
        assert list(box) == model
        assert len(box) == len(model)


def test_remove_if_keeps_the_order_of_the_rest():
    box = Mailbox(greenlet.getcurrent(), gevent.get_hub())
    for m in range(10):
        box.put(m)
    assert box.remove_if(lambda m: m % 3 == 0) == 4
    assert list(box) == [1, 2, 4, 5, 7, 8]


# -- many senders, random selective receives -------------------------------------------------------


def sender(to, sender_id, tags, yields):
    for seq, (tag, pause) in enumerate(zip(tags, yields, strict=True)):
        send(to, (sender_id, seq, tag))
        if pause:
            gevent.sleep(0)  # interleave with the other senders


plans = st.lists(
    st.one_of(
        st.just(("any",)),
        st.tuples(st.just("sender"), st.integers(0, 3)),
        st.tuples(st.just("tag"), st.integers(0, 2)),
    ),
    max_size=40,
)


@SETTINGS
@given(
    st.lists(st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=12), min_size=1, max_size=4),
    plans,
)
def test_selective_receives_from_many_senders_keep_order_and_lose_nothing(streams, plan):
    me = self_pid()
    sent = {(s, seq, tag) for s, stream in enumerate(streams) for seq, (tag, _) in enumerate(stream)}
    for s, stream in enumerate(streams):
        spawn(sender, me, s, [t for t, _ in stream], [p for _, p in stream])

    received: list[tuple[int, int, int]] = []
    remaining = set(sent)

    def take(kind):
        if kind[0] == "sender":
            pred = lambda m: m[0] == kind[1]  # noqa: E731
        elif kind[0] == "tag":
            pred = lambda m: m[2] == kind[1]  # noqa: E731
        else:
            pred = lambda m: True  # noqa: E731
        if not any(pred(m) for m in remaining):
            return  # nothing left that could match: it would wait forever
        m = receive(pred, timeout=5)
        # the first match in arrival order: no earlier message of the same
        # sender that also matches may still be waiting
        assert not any(o[0] == m[0] and o[1] < m[1] and pred(o) for o in remaining)
        remaining.discard(m)
        received.append(m)

    for kind in plan:
        take(kind)
    while remaining:
        take(("any",))

    assert len(received) == len(sent)  # no duplicates
    assert set(received) == sent  # nothing lost
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0)
