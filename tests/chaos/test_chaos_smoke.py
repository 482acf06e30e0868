"""The bounded chaos smoke for `make test`: two short real-cluster runs with faults.

Each run: voter OS processes (five in one run, three in the other) and a
client node process, lock-set, register and singleton workloads on the
console and the client node, a partition and a kill -9 with restart, then a
heal and a quiet period. No matplotlib, iptables or faketime needed. The
runs must show zero violations (no lost acked add, no token granted twice, no
stale token accepted, every register key linearizable -- "unknown" fails
too) and progress of every workload after the final heal. `make chaos` runs
the longer swarm schedules.
"""

from __future__ import annotations

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
