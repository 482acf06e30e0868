"""The chaos suite's tools that touch the machine: libfaketime clocks and iptables chains.

Skipped where the tool is missing (or, for iptables, without root): the suite
itself skips those faults there too.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.chaos import clocks, firewall, nemesis

pytestmark = pytest.mark.subprocess


def test_the_raw_clock_is_the_monotonic_clock_here() -> None:
    import time

    before = time.monotonic()
    raw = clocks.real_monotonic()
    after = time.monotonic()
    assert before <= raw <= after  # this process is not under libfaketime


@pytest.mark.skipif(clocks.libfaketime() is None, reason="libfaketime is not installed")
@pytest.mark.timeout(60)
def test_faketime_fakes_monotonic_and_gevent_timers_only_when_told() -> None:
    fast = clocks.run_probe(2.0, 600.0, fake_monotonic=True, seconds=0.6)["elapsed"]
    # the node's clocks and its gevent timers all run at x2: a 0.6 s sleep lasts about 0.3 s
    assert fast["real_mono"] == pytest.approx(0.3, abs=0.12), fast
    assert fast["time.monotonic"] == pytest.approx(2 * fast["real_mono"], rel=0.1), fast
    wall_only = clocks.run_probe(2.0, 600.0, fake_monotonic=False, seconds=0.6)
    elapsed = wall_only["elapsed"]
    assert elapsed["time.monotonic"] == pytest.approx(elapsed["real_mono"], abs=0.01), wall_only
    assert elapsed["time.time"] == pytest.approx(2 * elapsed["real_mono"], rel=0.1), wall_only
    assert wall_only["offset_time.time_vs_real"] == pytest.approx(600.0, abs=5.0), wall_only


def _chains() -> str:
    return subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, check=False).stdout


@pytest.mark.skipif(firewall.probe() is not None, reason=f"iptables: {firewall.probe()}")
def test_a_firewall_chain_holds_its_rules_and_is_gone_after_close() -> None:
    fw = firewall.Firewall()
    try:
        fw.drop("127.250.1.11", "127.250.1.12")
        assert "-s 127.250.1.11/32 -d 127.250.1.12/32 -j DROP" in fw.listing()
        assert f"-A INPUT -i lo -j {fw.chain}" in _chains()
        fw.heal()
        assert "DROP" not in fw.listing()
    finally:
        fw.close()
    assert fw.chain not in _chains()


def test_iptables_faults_are_in_the_schedule_whether_or_not_iptables_runs() -> None:
    voters = ["node1", "node2", "node3"]
    _, faults = nemesis.schedule(5, voters, 12.0, 1.5, ("ipt_isolate", "ipt_one_way"), clients=["node4"])
    assert {f.kind for f in faults} == {"ipt_isolate", "ipt_one_way"}
    for fault in faults:
        assert set(fault.targets) <= {*voters, "node4"}


def test_without_iptables_an_iptables_fault_is_skipped_with_one_message() -> None:
    class NoCluster:
        voters = ("node1", "node2", "node3")

    nem = nemesis.Nemesis(NoCluster(), t0=0.0, firewall=None, no_firewall="iptables needs root")  # type: ignore[arg-type]
    faults = [
        nemesis.Fault("ipt_isolate", ("node1",), 0.0, 0.0),
        nemesis.Fault("ipt_one_way", ("node1", "node2"), 0.0, 0.0),
    ]
    assert [nem.start(f) for f in faults] == [False, False]
    assert [text for _, text in nem.log] == ["iptables faults skipped: iptables needs root"]
