"""The examples and `python -m paxtor demo`, run as a user runs them, checked for their evidence.

Each runs as its own OS process (`sys.executable`, a timeout) and must exit 0
AND print what shows the guarantee: runs of five equal digits under the lock,
counters that count every value once, N locked increments through two app
nodes giving exactly N, a singleton that comes back on another node.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paxtor.demo import runs_of
from paxtor.testing import LocalCluster, NodeExited, NodeProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
#: Generous: each takes 1..15 s on an idle machine; this only stops a hang.
TIMEOUT = 120


def run(*argv: str) -> str:
    """Run `python *argv` from the repository root; its stdout (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=dict(os.environ), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr[-3000:]}"
    return done.stdout


def digits_after(label: str, output: str) -> str:
    match = re.search(re.escape(label) + r"\s*([0-9]{50})\b", output)
    assert match, f"no 50 digits after {label!r} in:\n{output}"
    return match.group(1)


def assert_runs_of_five(digits: str) -> None:
    runs = runs_of(digits)
    assert [count for _, count in runs] == [5] * 10, digits
    assert sorted(digit for digit, _ in runs) == list("0123456789"), digits


# -- pure helpers ----------------------------------------------------------------------------------


def test_runs_of_counts_repeats_in_a_row() -> None:
    assert runs_of("0001100") == [("0", 3), ("1", 2), ("0", 2)]
    assert runs_of([]) == []


def test_a_node_process_that_exits_fails_the_step_with_its_status() -> None:
    with LocalCluster(1, prefix="paxtor-test-") as cluster:
        proc = cluster.start(1, [sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"])
        proc.proc.wait(timeout=30)
        with pytest.raises(NodeExited, match="node1 exited with status 3"):
            cluster.check_running()


def test_close_kills_the_processes_by_pid_and_removes_the_directory() -> None:
    cluster = LocalCluster(2, prefix="paxtor-test-")
    procs: list[NodeProcess] = [
        cluster.start(n, [sys.executable, "-c", "import time; time.sleep(60)"]) for n in (1, 2)
    ]
    workdir = cluster.workdir
    assert workdir.is_dir() and all(p.alive() for p in procs)
    cluster.close()
    assert not workdir.exists()
    assert [p.alive() for p in procs] == [False, False]


# -- the examples ----------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_lock_digits_prints_runs_of_five() -> None:
    output = run(str(EXAMPLES / "lock_digits.py"))
    assert_runs_of_five(digits_after("with the lock:", output))
    tokens = sorted(int(t) for t in re.findall(r"\b\d:(\d+)\b", output.split("fencing tokens", 1)[1]))
    assert len(tokens) == 10 and tokens == list(range(tokens[0], tokens[0] + 10)), output  # one new token per holder


@pytest.mark.subprocess
def test_counters_count_every_value_once_from_every_node() -> None:
    output = run(str(EXAMPLES / "counters.py"))
    for key in ("apple", "banana"):
        per_node = re.findall(rf"^node\d: .*inc\({key}\) -> ([0-9 ]+)", output, re.M)
        assert len(per_node) == 3, output
        values = [int(n) for line in per_node for n in line.split()]
        assert sorted(values) == list(range(1, 13)), output
    assert "every node saw the same pids: True" in output
    assert re.search(r"after killing it: inc\(apple\) -> 1, a new process", output), output


@pytest.mark.subprocess
def test_wsgi_increments_through_two_app_nodes_lose_nothing() -> None:
    output = run(str(EXAMPLES / "wsgi_increment.py"))
    found = re.findall(
        r"with the lock:\s+(\d+) increments of '(\w+)' \((\d+) via node1, (\d+) via node2\) -> counter (\d+)", output
    )
    assert len(found) == 2, output
    for sent, _key, via1, via2, counter in found:
        assert int(via1) > 0 and int(via2) > 0, output  # both app nodes served
        assert int(counter) == int(sent) == int(via1) + int(via2), output
    assert output.rstrip().endswith("OK"), output


@pytest.mark.subprocess
def test_supervised_app_brings_the_singleton_tree_back_elsewhere() -> None:
    output = run(str(EXAMPLES / "supervised_app.py"))
    stopped = re.search(r"4\. stop (node\d)", output)
    back = re.search(r"started billing again on (node\d)", output)
    assert stopped and back and stopped.group(1) != back.group(1), output
    assert "billing_sup still" in output and output.rstrip().endswith("OK"), output


@pytest.mark.subprocess
def test_job_queue_runs_each_queue_on_one_worker() -> None:
    output = run(str(EXAMPLES / "job_queue.py"))
    lines = re.findall(r"^\s+(emails|invoices|reports)\s+(\d+) jobs .* ran by <(node\d)[^>]*> on node\d; "
                       r"overlapping jobs: (\d+); each producer's order kept: (\w+)", output, re.M)  # fmt: skip
    assert len(lines) >= 3, output
    assert all(overlaps == "0" and kept == "True" for *_, overlaps, kept in lines), output
    assert output.rstrip().endswith("OK"), output


@pytest.mark.subprocess
def test_the_demo_shows_quorum_lock_counters_and_failover() -> None:
    output = run("-m", "paxtor", "demo")
    assert "Quorum reached. [cluster:2/3]" in output
    assert_runs_of_five(digits_after("with the lock:", output))
    assert "each counter counted 1..12 once" in output
    passed = re.search(r"the lock passed to \S+ on (node\d) with token (\d+) > (\d+)", output)
    assert passed and int(passed.group(2)) > int(passed.group(3)), output
    killed = re.search(r"kill -9 \d+ \((node\d)\)", output)
    back = re.search(r'"apple" is back: <(node\d)\.', output)
    assert killed and back and back.group(1) != killed.group(1), output
    done = re.search(r"demo done in ([0-9.]+) s", output)
    assert done and float(done.group(1)) < 60, output
