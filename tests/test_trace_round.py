"""`benchmarks.trace_round`'s report: the steps of the most common cycle of marks, merged
across processes by time."""

from __future__ import annotations

from benchmarks.trace_round import critical_path


def _cycle(t0: int, remote_fsync_us: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """One lock's marks on node1 and node2, starting at ``t0`` ns."""
    us = 1000
    node1 = [(t0, "lock"), (t0 + 20 * us, "submit"), (t0 + 60 * us, "send"), (t0 + 400 * us, "locked")]
    node2 = [(t0 + 70 * us, "recv"), (t0 + 100 * us, "fsync"), (t0 + (100 + remote_fsync_us) * us, "fsynced")]
    return node1, node2


def test_the_steps_of_the_most_common_cycle_are_medians_across_processes():
    # each process keeps only its last marks: the timeline starts where every one has some
    node1: list[tuple[int, str]] = [(200_000, "unlocked")]
    node2: list[tuple[int, str]] = [(500_000, "recv")]
    for i, fsync_us in enumerate((150, 160, 170)):
        a, b = _cycle((i + 1) * 1_000_000, fsync_us)
        node1 += a
        node2 += b
    node1.append((4_000_000, "lock"))  # the start of a fourth cycle closes the third
    result = critical_path({"node1": node1, "node2": node2})
    assert result["cycles"] == 3 and result["this_sequence"] == 3
    steps = [(s["from"], s["to"], s["us"]) for s in result["steps"]]
    assert steps[:5] == [
        ("node1:lock", "node1:submit", 20.0),
        ("node1:submit", "node1:send", 40.0),
        ("node1:send", "node2:recv", 10.0),
        ("node2:recv", "node2:fsync", 30.0),
        ("node2:fsync", "node2:fsynced", 160.0),  # the median of 150, 160, 170
    ]
    assert result["steps"][-1]["to"] == "node1:lock"
