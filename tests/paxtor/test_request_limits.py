"""Large keys and values on real nodes: requests over `max_request_bytes` are refused
in the caller before anything is sent, requests under it run while a lock holder on
the same node keeps its lease, and nothing a caller passes crashes the proposer.

The lease is checked on voters that are OS processes of their own, as deployed: nodes
sharing one OS process share one loop, so any work in it (this test's included) would
hold up the heartbeats of all of them at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import pytest
from paxtor_cluster import WAIT, Cluster
from paxtor_helpers import large_then_too_large, lock_and_park, put_sized, try_lock_and_report

import paxtor
from paxtor import paxos
from paxtor.actors import Down, receive, self_pid, spawn, spawn_monitor, whereis
from paxtor.paxos.config import MAX_REQUEST_BYTES, PaxosConfig
from paxtor.paxos.wire_format import MAX_ENCODED_SIZE
from paxtor.testing import LocalCluster, free_base_port, wait_for_nodes, wait_for_quorum

LIMIT = MAX_REQUEST_BYTES
TOO_LARGE = "max_request_bytes=1572864"
HERE = Path(__file__).resolve().parent
PROCESS_WAIT = 30.0
FLAGS = ["--durability", "fsync", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "2", "--reconnect-max", "0.5"]
#: The tests' short lease (`paxtor.testing.TEST_LEASE`), renewed every lease / 4: a node's loop
#: stalled for 0.375 s costs its owners their lease (the default 3 s lease allows 2.25 s).
LEASE = ["--lease", "0.5", "--lease-margin", "0.15"]


def test_the_default_limit_is_etcds() -> None:
    assert LIMIT == 1_572_864  # etcd's --max-request-bytes: 1.5 MiB
    assert PaxosConfig(voters=("node1",), durability="memory").max_request_bytes == LIMIT
    for bad in (0, 10, MAX_ENCODED_SIZE + 1, 2.5, True, "1"):
        with pytest.raises(ValueError, match="max_request_bytes"):
            PaxosConfig(voters=("node1",), durability="memory", max_request_bytes=bad)


@pytest.fixture
def voters(tmp_path: Path) -> Iterator[LocalCluster]:
    """node1..node3 as durable `python -m paxtor node` OS processes (the deployment's shape:
    one loop per node), and this process as a client node to drive them."""
    with LocalCluster(3, flags=[*FLAGS, *LEASE], pythonpath=[HERE], workdir=tmp_path) as cluster:
        cluster.start_all()
        tester = cluster.join("tester", durability="memory", singletons=False, paxos=dict(lease=1.0, margin=0.25))
        wait_for_nodes(tester, cluster.voters, PROCESS_WAIT)
        wait_for_quorum([tester], PROCESS_WAIT)
        yield cluster


@pytest.mark.subprocess
def test_large_requests_run_and_too_large_ones_are_refused_while_a_holder_keeps_its_lease(voters: LocalCluster) -> None:
    node1 = voters.processes["node1"]

    def drive() -> tuple[Any, Any, int]:
        me = self_pid()
        holder = spawn(lock_and_park, "held on node1", me, node="node1")
        receive(lambda m: isinstance(m, tuple) and m[:2] == ("locked", holder), timeout=PROCESS_WAIT)
        losses = len(node1.events("lease_lost"))
        worker, worker_ref = spawn_monitor(large_then_too_large, me, holder, node="node1")
        done = receive(
            lambda m: (isinstance(m, tuple) and m[:2] == ("large_done", worker))
            or (isinstance(m, Down) and m.ref == worker_ref),
            timeout=PROCESS_WAIT,
        )
        checker, checker_ref = spawn_monitor(try_lock_and_report, "held on node1", me, node="node2")
        held = receive(
            lambda m: (isinstance(m, tuple) and m[:2] == ("try_lock", checker))
            or (isinstance(m, Down) and m.ref == checker_ref),
            timeout=PROCESS_WAIT,
        )
        return done, held, len(node1.events("lease_lost")) - losses

    done, held, losses = voters.node.run(drive)
    assert done[0] == "large_done", f"the requests on node1 failed: {done}"
    _, _, refused, term_before, term_after, holder_alive, stall = done
    assert len(refused) == 5 and all(TOO_LARGE in why for why in refused), refused
    kept = f"node1's loop stalled for {stall:.3f} s at most"
    assert term_before is not None and term_after == term_before, f"node1's lease lapsed: {kept}"
    assert losses == 0 and holder_alive, kept
    assert held[0] == "try_lock" and held[2] is None, held  # the holder still holds, seen from node2


def test_too_large_is_refused_before_anything_is_sent(tmp_path: Any) -> None:
    # A node alone cannot run a round: a request that were sent would wait for a quorum.
    node = paxtor.start_node(
        "node1", cluster_size=3, base_port=free_base_port(), cookie="limits", durability="memory",
        paxos={"max_request_bytes": 4096},
    )
    try:
        with pytest.raises(ValueError, match="max_request_bytes=4096"):
            node.run(lambda: paxos.put("k", b"x" * 5000, timeout=30))
        with pytest.raises(paxos.NoQuorum):
            node.run(lambda: paxos.put("k", b"x" * 3000, timeout=0.2))  # under it: sent, no quorum
    finally:
        node.stop()


def test_a_change_over_the_limit_fails_its_caller_and_the_proposer_serves_on(cluster: Cluster) -> None:
    node = cluster["node1"]
    proposer = node.run(whereis, "paxos_proposer")
    unrelated = gevent.spawn(node.run, paxos.put, "unrelated", "small")

    def grow(register: Any) -> Any:
        return register.claim(b"x" * (LIMIT - 10))  # with the key, over the limit

    with pytest.raises(ValueError, match=TOO_LARGE):
        node.run(paxos.propose, "k" * 100, grow)
    assert unrelated.get(timeout=WAIT) == "small"
    assert node.run(whereis, "paxos_proposer") == proposer  # not crashed and restarted
    assert cluster["node2"].run(paxos.epoch_of, "k" * 100) == 0  # nothing was written


def _put_on(node: str, key: str, size: int) -> str | None:
    """Run a put of `size` bytes on `node`; None if it went through, else the ValueError's text."""
    me = self_pid()
    spawn(put_sized, key, size, me, node=node)
    return receive(lambda m: isinstance(m, tuple) and m[:3] == ("put", key, node), timeout=WAIT)[3]


@pytest.mark.subprocess
def test_the_max_request_bytes_flag_bounds_the_requests_of_a_node_process(tmp_path: Path) -> None:
    """``python -m paxtor node ... --max-request-bytes 4096``: a put on that node over the
    limit is refused with ValueError, one under it is chosen; a client that set the same
    limit refuses the same puts itself; a limit out of range is a one-line error, exit 2."""
    flags = ["--durability", "memory", "--max-request-bytes", "4096"]
    with LocalCluster(3, workdir=tmp_path, pythonpath=[HERE], flags=flags) as voters:
        for proc in voters.start_all():
            proc.wait_for_log("quorum_reached", WAIT)
        client = voters.join("tester", durability="memory", paxos={"max_request_bytes": 4096})
        wait_for_nodes(client, voters.voters, WAIT)
        wait_for_quorum([client], WAIT)

        refused = _put_on("node1", "big", 5000)  # on the node process that took the flag
        assert refused is not None and "max_request_bytes=4096" in refused
        assert _put_on("node1", "small", 3000) is None
        assert len(client.run(paxos.get, "small")) == 3000
        assert client.run(paxos.get, "big", default=None) is None  # nothing was written
        with pytest.raises(ValueError, match="max_request_bytes=4096"):
            client.run(paxos.put, "big", b"x" * 5000)
        with pytest.raises(ValueError, match="max_request_bytes=4096"):
            client.run(paxtor.lock, b"L" * 5000)

        for bad, error in (("100", "must be from 4096 to 66060288 bytes, got '100'"),
                           ("lots", "not a whole number of bytes: 'lots'")):  # fmt: skip
            done = gevent.subprocess.run(
                voters.node_argv(5, "--client", "--max-request-bytes", bad), env=voters.env,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            lines = done.stderr.strip().splitlines()
            # refused by the parser: before, a value out of range started the node's listener first
            assert done.returncode == 2 and lines == [f"paxtor node: error: argument --max-request-bytes: {error}"]
