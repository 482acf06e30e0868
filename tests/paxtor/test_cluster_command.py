"""`python -m paxtor cluster ...` against real `python -m paxtor node` processes.

The command joins through one seed, as the README's Operations show it; the
change it runs needs every voter and the node it adds, not just the seed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paxtor.testing import WAIT, LocalCluster

pytestmark = pytest.mark.subprocess


def _cluster_command(local: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "paxtor", "cluster", *args, "--base-port", str(local.base_port), "--timeout", "30"]
    return subprocess.run(argv, env=local.env, cwd=local.workdir, capture_output=True, text=True, timeout=90)


def test_a_voter_is_added_and_seen_through_one_seed(tmp_path: Path) -> None:
    with LocalCluster(3, workdir=tmp_path, spare=2) as local:
        local.start_all()
        node4 = local.start(4, extra=["--voter"])
        node4.wait_for_log("voter_config_installed", timeout=30)  # it met the cluster
        only_node1 = f"127.0.0.1:{local.base_port + 1}"
        added = _cluster_command(local, "add", "node4", "--seeds", only_node1)
        assert added.returncode == 0, added.stderr[-2000:]
        assert added.stdout.startswith("voters: node1 node2 node3 node4 "), added.stdout
        node4.wait_for_log(lambda e: e.get("event") == "voter_config_installed" and e.get("role") == "voter", WAIT)
        seen = _cluster_command(local, "voters", "--seeds", f"127.0.0.1:{local.base_port + 4}")
        assert seen.returncode == 0 and seen.stdout.startswith("voters: node1 node2 node3 node4 "), seen.stderr[-2000:]
