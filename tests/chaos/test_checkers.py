"""The chaos checkers catch what they claim to catch, on hand-made histories."""

from __future__ import annotations

from paxtor.sim.linearizability import Operation
from tests.chaos.checkers import (
    check_cold_probe,
    check_liveness,
    check_lock_set,
    check_register,
    check_singletons,
)


def write(t: float, key: str, token: int, holder: str, elem: str, outcome: str = "ok") -> tuple:
    return (t, "write", key, token, holder, elem, outcome)


def read(t: float, key: str, token: int, holder: str, outcome: str = "ok") -> tuple:
    return (t, "read", key, token, holder, None, outcome)


def tenure(holder: str, key: str, token: int, start: float, end: float, outcome: str = "ok") -> tuple:
    return ("released", "w", holder, key, token, start, end, outcome)


def test_a_clean_lock_history_passes() -> None:
    log = [read(1, "k", 1, "A"), write(2, "k", 1, "A", "a"), read(3, "k", 2, "B"), write(4, "k", 2, "B", "b"),
           read(5, "k", 1, "A", "stale")]  # fmt: skip
    events = [tenure("A", "k", 1, 0.5, 2.5), tenure("B", "k", 2, 2.6, 4.5)]
    verdict = check_lock_set(log, {"k": ["a", "b"]}, events)
    assert verdict.ok, verdict


def test_a_lost_acked_add_is_a_violation() -> None:
    log = [write(2, "k", 1, "A", "a"), write(4, "k", 2, "B", "b")]
    verdict = check_lock_set(log, {"k": ["b"]}, [])
    assert any("lost add" in v and "'a'" in v for v in verdict.violations)


def test_one_token_for_two_holders_is_a_violation() -> None:
    log = [write(2, "k", 3, "A", "a"), write(4, "k", 3, "B", "b")]
    verdict = check_lock_set(log, {"k": ["a", "b"]}, [])
    assert any("token 3" in v and "2 holders" in v for v in verdict.violations)


def test_an_accepted_stale_token_is_a_violation() -> None:
    log = [write(2, "k", 5, "A", "a"), write(4, "k", 4, "B", "b")]
    verdict = check_lock_set(log, {"k": ["a", "b"]}, [])
    assert any("stale token 4" in v for v in verdict.violations)


def test_a_smaller_token_accepted_after_a_finished_tenure_is_a_violation_and_overlaps_are_notes() -> None:
    events = [tenure("A", "k", 7, 1.0, 2.0), tenure("B", "k", 6, 3.0, 4.0), tenure("C", "k", 8, 3.5, 5.0)]
    verdict = check_lock_set([], {}, events)
    assert any("token 6 believed from 3.000, after tenure 7 ended, and the resource accepted it" in v
               for v in verdict.violations)
    assert any("belief overlap" in n for n in verdict.notes)


def test_a_late_belief_the_resource_refused_is_a_note() -> None:
    """A holder granted token 6, paused before it noticed, resumes after tenure 7 ended: fenced."""
    events = [tenure("A", "k", 7, 1.0, 2.0), tenure("B", "k", 6, 3.0, 3.1, outcome="stale")]
    verdict = check_lock_set([], {}, events)
    assert verdict.ok, verdict.violations
    assert any("late belief" in n and "'stale'" in n for n in verdict.notes)


def op(p: str, inp: tuple, out: object, start: float, end: float | None) -> Operation:
    return Operation(p, "x", inp, out, start, end)


def test_register_history_linearizable_with_a_maybe_increment() -> None:
    history = [op("a", ("incr",), 1, 0, 1), op("b", ("incr",), None, 1.5, None), op("a", ("get",), 3, 5, 6),
               op("c", ("incr",), 2, 2, 3)]  # fmt: skip
    assert check_register(history).ok


def test_register_lost_increment_is_a_violation() -> None:
    history = [op("a", ("incr",), 1, 0, 1), op("b", ("incr",), 2, 2, 3), op("a", ("get",), 1, 4, 5)]
    verdict = check_register(history)
    assert verdict.violations and not verdict.unknown


def test_liveness_needs_progress_after_the_heal_and_free_locks() -> None:
    verdict, recovery = check_liveness(10.0, {"a": [9.0, 12.5], "b": [10.2]}, {"k": 1.0}, lock_bound=3.0)
    assert verdict.ok and recovery == 2.5
    verdict, _ = check_liveness(10.0, {"a": [9.0], "b": [21.0]}, {"k": None}, lock_bound=3.0)
    assert len(verdict.violations) == 3  # no lock progress, register too late, lock not free


def served(key: str, pid: str, epoch: int, at: float) -> tuple:
    return (key, pid, epoch, at, 1, at - 0.01, at + 0.01)


def test_singletons_one_after_another_pass() -> None:
    verdict = check_singletons([served("c", "A", 1, 1.0), served("c", "A", 1, 2.0), served("c", "B", 2, 3.0)])
    assert verdict.ok, verdict


def test_two_singletons_at_once_or_in_one_epoch_are_violations() -> None:
    interleaved = check_singletons([served("c", "A", 1, 1.0), served("c", "B", 2, 2.0), served("c", "A", 1, 3.0)])
    assert any("before" in v for v in interleaved.violations)
    same_epoch = check_singletons([served("c", "A", 1, 1.0), served("c", "B", 1, 2.0)])
    assert any("2 incarnations in epoch 1" in v for v in same_epoch.violations)


def test_liveness_flags_a_workload_that_stalls_after_recovering() -> None:
    progress = {"a": [10.5, 11.0, 19.5], "b": [10.2, 11.0]}  # b stops 1 s after the heal
    verdict, _ = check_liveness(10.0, progress, {}, lock_bound=3.0, workload_end=20.0)
    assert [v for v in verdict.violations if v.startswith("b: stalled")] and len(verdict.violations) == 1


def probe(lost: bool = False, granted: bool = False, holder_lived: bool = True) -> list[tuple]:
    """A wipe probe: two keys written, read back; a lock held from 1.0 to 5.0, tried at 3.0."""
    events = [("probe_put", ("p", 0), 0, 1.0), ("probe_put", ("p", 1), 1, 1.1),
              ("probe_get", ("p", 0), None if lost else 0, 3.0), ("probe_get", ("p", 1), 1, 3.1),
              ("probe_lock_try", "lk", "B", 1 if granted else None, 3.2)]  # fmt: skip
    if holder_lived:
        events.append(("probe_lock_held", "lk", "A", 1, 1.0, 5.0))
    return events


def test_a_clean_cold_probe_passes() -> None:
    verdict = check_cold_probe(probe())
    assert verdict.ok and "2 probe writes acked, 2 read back (0 lost)" in verdict.notes[0]


def test_a_probe_write_read_back_empty_is_a_lost_write() -> None:
    verdict = check_cold_probe(probe(lost=True))
    assert verdict.violations == ["lost write: ('p', 0) = 0 was acked, read back as None"]


def test_the_probe_lock_granted_while_its_holder_lived_is_two_holders() -> None:
    verdict = check_cold_probe(probe(granted=True))
    assert len(verdict.violations) == 1 and verdict.violations[0].startswith("two holders: 'lk' granted to 'B'")


def test_the_probe_lock_granted_after_its_holder_died_proves_nothing() -> None:
    """A holder whose node lost its lease is killed and never reports: the lock was free."""
    assert check_cold_probe(probe(granted=True, holder_lived=False)).ok
