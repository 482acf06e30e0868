"""The bounded chaos smoke for `make test`: short real-cluster runs with faults.

Each run: voter OS processes (five in one run, three in the other) and a
client node process, lock-set, register and singleton workloads on the
console and the client node, a partition and a kill -9 with restart, then a
heal and a quiet period. No matplotlib, iptables or faketime needed. The
runs must show zero violations (no lost acked add, no token granted twice, no
stale token accepted, every register key linearizable -- "unknown" fails
too) and progress of every workload after the final heal. A third run wipes
voters' disks and changes the voters under load, with the same verdict; the
fourth is the negative control of the wipe: a wiped voter that votes at once
must be caught losing writes and granting a held lock. `make chaos` runs the
longer swarm schedules.
"""

from __future__ import annotations

import shutil

import pytest

from tests.chaos.report import format_run
from tests.chaos.runner import run_once

pytestmark = pytest.mark.subprocess


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("seed", "kinds"), [(101, ("isolate", "kill")), (202, ("kill", "halves", "client_cut"))])
def test_chaos_run_has_no_violations_and_recovers(seed: int, kinds: tuple[str, ...]) -> None:
    result = run_once(seed, window=8.0, quiet=5.0, kinds=kinds, use_clocks=False)
    report = format_run(result)
    assert result.error is None, report
    assert any(text.startswith("kill -9") for _, text in result.faults_log), report
    assert any(text.startswith("partition") for _, text in result.faults_log), report
    assert result.violations == 0 and not result.unknown, report
    assert result.operations["acked_adds"] > 0 and result.operations["register_ops"] > 0, report
    assert result.operations["register_ops_on_clients"] > 0, report
    assert result.recovery is not None and result.recovery <= 10.0, report


@pytest.mark.timeout(150)
def test_wiped_voters_and_voter_changes_under_load_keep_every_checker_clean() -> None:
    """3 voters: wipe one; wipe one that holds writes a stopped voter missed, then read through
    it and that voter; grow to 5 voters and shrink back to 3 (two of them new)."""
    result = run_once(314, window=9.0, quiet=5.0, kinds=("wipe", "wipe_holder", "reconfigure"), use_clocks=False)
    report = format_run(result)
    assert result.error is None, report
    log = [text for _, text in result.faults_log]
    assert sum("data directory deleted" in text for text in log) == 2, report
    assert sum("caught up" in text for text in log) == 2, report  # each wiped voter, before the next fault
    grown = [text for text in log if text.startswith("... voters now")]
    assert grown and len(grown[0].split(",")) == 5, report
    voters = [text.split("  (")[0] for text in log if text.startswith("voters: ")]
    assert len(voters) == 2 and len(voters[-1].split(",")) == 3, report  # grown, then shrunk back
    assert result.violations == 0 and not result.unknown, report
    probe = next(v for v in result.verdicts if v.name == "cold-probe")  # wipe_holder's and reconfigure's
    assert probe.notes[0].startswith("40 probe writes acked, 40 read back (0 lost)"), report
    assert result.recovery is not None and result.recovery <= 10.0, report


@pytest.mark.timeout(90)
def test_a_wiped_voter_that_votes_at_once_is_caught_losing_writes_and_granting_a_held_lock() -> None:
    """The negative control (`--amnesia`): the checkers must see what the learner rule prevents."""
    result = run_once(4, window=3.0, quiet=3.0, amnesia=True, use_clocks=False)
    if "logs" in result.extra:  # a failing run keeps its node logs: this one must fail
        shutil.rmtree(result.extra["logs"], ignore_errors=True)
    report = format_run(result)
    assert result.error is None, report
    assert any("votes at once, with nothing" in text for _, text in result.faults_log), report
    probe = next(v for v in result.verdicts if v.name == "cold-probe")
    assert any(v.startswith("lost write") for v in probe.violations), report
    assert any(v.startswith("two holders") for v in probe.violations), report
