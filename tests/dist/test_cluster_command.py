"""Voters as an operator meets them, on `python -m paxtor node` OS processes: a wiped
voter started again with its usual command catches up by itself, a directory copied
from another node is refused, and `python -m paxtor cluster` lists and adds voters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paxtor.testing import LocalCluster

pytestmark = pytest.mark.subprocess

WAIT = 30.0


@pytest.fixture
def voters(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(3, workdir=tmp_path, flags=["--lease", "1", "--heartbeat-timeout", "2"]) as cluster:
        for proc in cluster.start_all():
            proc.wait_for_log("quorum_reached", WAIT)
        yield cluster


def _cli(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    seed = f"127.0.0.1:{cluster.base_port + 1}"  # one seed: the command finds every voter
    done = subprocess.run(
        [sys.executable, "-m", "paxtor", "cluster", *args, "--seeds", seed],
        env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_a_wiped_voter_started_with_its_usual_command_catches_up(voters: LocalCluster):
    node2 = voters.processes["node2"]
    node2.kill()  # kill -9
    shutil.rmtree(voters.workdir / "data" / "node2")
    again = voters.start(2)
    learner = again.wait_for_log("voter_is_learner", WAIT)
    assert "lost its state" in learner["detail"]
    done = again.wait_for_log("catch_up_done", WAIT)
    assert "votes again" in done["message"]


def test_a_directory_copied_from_another_node_is_refused(voters: LocalCluster):
    voters.processes["node1"].stop()
    data = voters.workdir / "data"
    shutil.rmtree(data / "node1")
    shutil.copytree(data / "node2", data / "node1", ignore=shutil.ignore_patterns("LOCK"))
    done = subprocess.run(voters.node_argv(1), env=voters.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("paxtor node: error:") and "node 'node2'" in lines[-1]


def test_the_cluster_command_lists_and_adds_voters(voters: LocalCluster):
    status, out = _cli(voters, "voters")
    assert status == 0, out
    assert "voters: node1 node2 node3" in out
    node4 = voters.start(4, extra=["--voter"])
    node4.wait_for_log("voter_config_installed", WAIT)
    assert node4.events("acceptor_joined") and not node4.events("voter_is_learner")  # new: it lost nothing
    status, out = _cli(voters, "add", "node4")
    assert status == 0, out
    assert "voters: node1 node2 node3 node4" in out
    node4.wait_for_log(lambda e: e.get("event") == "voter_config_installed" and e.get("role") == "voter", WAIT)
    status, out = _cli(voters, "add", "node9")
    assert status == 1 and "not connected" in out


def test_a_command_with_several_names_changes_all_or_nothing(voters: LocalCluster):
    status, out = _cli(voters, "remove", "node1", "node2", "node3")
    assert status == 1 and out.strip().splitlines() == ["paxtor cluster remove: the last voter cannot be removed"]
    status, out = _cli(voters, "add", "node9", "nodeX")  # neither runs
    assert status == 1 and "not connected" in out and len(out.strip().splitlines()) == 1
    status, out = _cli(voters, "voters")
    assert status == 0 and "voters: node1 node2 node3 " in out


def test_the_cluster_command_says_what_is_wrong():
    done = subprocess.run(
        [sys.executable, "-m", "paxtor", "cluster", "replace", "node1", "--seeds", "127.0.0.1:1"],
        env=dict(os.environ, PAXTOR_COOKIE="x"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "wrong number of names" in done.stderr
