"""`python -m paxtor node --allow-modules`: a node process that runs only what its
allow-list names, asked by a node of this OS process over TCP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paxtor.actors import receive, self_pid, spawn
from paxtor.actors.distribution import start_distributed
from paxtor.actors.transport import RemoteSpawnError
from paxtor.testing import LocalCluster

from . import remote_helpers as rh
from .conftest import WAIT

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--cluster-size", "1", "--durability", "memory", "--allow-modules", "dist.remote_helpers,paxtor.demo"]


def test_a_node_refuses_spawns_outside_its_allow_list_and_logs_them(tmp_path: Path) -> None:
    with LocalCluster(1, flags=FLAGS, pythonpath=[REPO / "tests"], workdir=tmp_path) as one:
        node1 = one.start(1)
        node1.wait_started()
        asker = start_distributed("asker", port=0, base_port=one.base_port, cluster_size=1, cookie=one.cookie)
        assert asker.wait_for_nodes(["node1"], WAIT)
        spawn(rh.report_node, self_pid(), node="node1")  # allowed: it runs there
        assert receive(lambda m: m[0] == "ran_on", timeout=WAIT)[1] == "node1"
        with pytest.raises(RemoteSpawnError, match="allowed_modules") as info:
            spawn(os.getpid, node="node1")
        assert "dist.remote_helpers, paxtor.demo" in info.value.reason
        refused = node1.wait_for_log("remote_spawn_refused")
        assert refused["function"] == "posix:getpid" and refused["peer"] == "asker"
