"""A failing chaos run's report names the seed and the command that replays it."""

from __future__ import annotations

from tests.chaos.checkers import Verdict
from tests.chaos.report import RunResult, format_run, format_summary


def result(seed: int, violations: list[str], unknown: bool = False) -> RunResult:
    verdict = Verdict("lock-set", violations=violations, unknown=unknown)
    log = [(1.0, "partition: isolate node1"), (3.0, "heal links"), (3.0, "final heal (all links)")]
    return RunResult(seed, ("isolate",), log, {"acked_adds": 5}, [verdict], 0.5, 12.0, f"replay --seed {seed}")


def test_a_passing_run_reports_pass_without_replay() -> None:
    text = format_run(result(7, []))
    assert "result: PASS" in text and "replay" not in text
    assert "[  1.00s] partition: isolate node1" in text


def test_a_failing_run_reports_its_seed_and_replay_command() -> None:
    text = format_run(result(8, ["lost add: 'x'"]))
    assert "seed=8" in text and "result: FAIL" in text and "replay --seed 8" in text and "lost add" in text


def test_unknown_is_not_a_pass() -> None:
    bad = result(9, [], unknown=True)
    assert not bad.ok and "result: UNKNOWN" in format_run(bad)
    summary = format_summary([result(7, []), bad])
    assert "1 unknown" in summary and "failing seeds: 9" in summary and "1 faults" not in summary
