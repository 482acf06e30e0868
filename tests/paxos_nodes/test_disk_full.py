"""A voter whose disk fills up and then frees, on real nodes in this OS process: it stops
voting while its log cannot write (fail-stop), resumes by itself once writes succeed, and a
restart from its directory finds every vote it answered."""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from typing import Any

import gevent
import pytest
from structlog.testing import capture_logs

from paxtor import paxos

from .conftest import WAIT, Cluster


class Disk:
    """Stands in for node3's disk: full (every write and fsync fails with ENOSPC) or not."""

    def __init__(self) -> None:
        self.full = False

    def write(self, fd: int, data: Any) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        os.fsync(fd)


def wait_for_event(logs: list[dict[str, Any]], event: str, timeout: float = WAIT) -> dict[str, Any]:
    """Only the log says when a retry ran (it is on a timer of node3's): polled."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in logs if e["event"] == event]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {event} in time"
        gevent.sleep(0.02)


def test_a_voter_stops_voting_on_a_full_disk_and_resumes_once_it_frees(cluster: Cluster, monkeypatch: Any) -> None:
    nodes = cluster.start_all(durability="fsync")
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)
    assert nodes[0].run(paxos.put, "before", 1) == 1
    disk = Disk()
    node3_log = cluster["node3"].paxos.log
    monkeypatch.setattr(node3_log, "_disk", dataclasses.replace(node3_log._disk, write=disk.write, fsync=disk.fsync))
    cluster.stop("node2")  # node1 and node3 are the quorum now: node3 must vote
    with capture_logs() as logs:
        disk.full = True
        with pytest.raises(paxos.NoQuorum):
            nodes[0].run(lambda: paxos.put("during", 2, timeout=1.0))
        stopped = wait_for_event(logs, "acceptor_stopped_voting")
        assert "free space" in stopped["action"]
        wait_for_event(logs, "acceptor_resume_later")  # tried while full: still not voting
        disk.full = False
        assert nodes[0].run(lambda: paxos.put("after", 3, timeout=15.0)) == 3  # node3 votes again
    assert [e["node"] for e in logs if e["event"] == "acceptor_resumed_voting"] == ["node3"]
    cluster.stop("node3")
    restarted = cluster.start(3, durability="fsync")
    restarted.run(paxos.wait_for_quorum, WAIT)
    assert restarted.run(paxos.get, "after", stale=True) == 3  # its own vote, replayed from its log
    assert restarted.run(paxos.get, "before") == 1
