"""Which pending handshakes a newcomer evicts, and the rate-limited failure log (pure)."""

from __future__ import annotations

from paxtor.actors.handshake_slots import FailureTally, Pending, choose_evictions, failure_kind


def pending(*specs: tuple[str, bool]) -> list[Pending]:
    """Pending handshakes in arrival order: (source, greeted); keys are their positions."""
    return [Pending(i, source, i, greeted) for i, (source, greeted) in enumerate(specs)]


def test_nothing_is_evicted_below_the_limits() -> None:
    assert choose_evictions(pending(("a", False), ("b", True)), "a", max_pending=4, max_per_source=2) == []


def test_a_source_at_its_limit_gives_up_its_silent_then_oldest() -> None:
    slots = pending(("a", True), ("a", False), ("b", False), ("a", False))
    assert choose_evictions(slots, "a", max_pending=10, max_per_source=3) == [1]  # silent before greeted
    greeted = pending(("a", True), ("a", True), ("b", False))
    assert choose_evictions(greeted, "a", max_pending=10, max_per_source=2) == [0]  # then the oldest


def test_when_all_slots_are_taken_the_largest_source_gives_one_up() -> None:
    slots = pending(("legit", True), ("flood", False), ("flood", False), ("other", False))
    assert choose_evictions(slots, "newcomer", max_pending=4, max_per_source=4) == [1]
    # a flood never evicts a source that holds fewer than it does
    many = pending(("legit", False), *[("flood", True)] * 6)
    victims = choose_evictions(many, "flood", max_pending=4, max_per_source=10)
    assert 0 not in victims and len(many) - len(victims) == 3


def test_the_first_failure_of_a_kind_per_source_is_logged_the_rest_summed_up() -> None:
    tally = FailureTally(interval=10.0)
    assert tally.record("x", "bad_cookie: no", 0.0) == (True, None)
    assert tally.record("x", "bad_cookie: no", 1.0) == (False, None)
    assert tally.record("x", "handshake_timeout: 5s", 1.0) == (True, None)  # another kind
    assert tally.record("y", "bad_cookie: no", 2.0) == (True, None)  # another source
    assert tally.record("x", "bad_cookie: again", 3.0) == (False, None)
    assert tally.flush(9.0) == []
    full, summary = tally.record("x", "bad_cookie: later", 10.5)  # a new window: logged, the old one summed
    assert full and (summary.source, summary.kind, summary.count, summary.last_reason) == ("x", "bad_cookie", 2,
                                                                                           "bad_cookie: again")
    assert [(s.source, s.kind) for s in tally.flush(30.0)] == []  # nothing was held back since
    assert tally.drain() == []


def test_the_tally_is_bounded_however_many_sources() -> None:
    tally = FailureTally(interval=10.0, max_sources=2)
    for i in range(100):
        tally.record(f"10.0.0.{i}", "malformed: x", 0.0)
    summaries = tally.drain()
    assert [(s.source, s.count) for s in summaries] == [("other", 97)]


def test_failure_kind() -> None:
    assert failure_kind("bad_cookie: peer's proof does not match") == "bad_cookie"
    assert failure_kind("peer_closed") == "peer_closed"
