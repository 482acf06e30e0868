"""Large keys and values on real nodes: requests over `max_request_bytes` are refused
in the caller before anything is sent, requests under it run while a lock holder on
the same node keeps its lease, and nothing a caller passes crashes the proposer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import pytest
from paxtor_cluster import WAIT, Cluster
from paxtor_helpers import lock_and_park, put_sized
from structlog.testing import capture_logs

import paxtor
from paxtor import paxos
from paxtor.actors import Down, ReceiveTimeout, monitor, receive, self_pid, spawn, whereis
from paxtor.paxos.config import MAX_REQUEST_BYTES, PaxosConfig
from paxtor.paxos.wire_format import MAX_ENCODED_SIZE
from paxtor.testing import LocalCluster, free_base_port, wait_for_nodes, wait_for_quorum

HERE = Path(__file__).resolve().parent

LIMIT = MAX_REQUEST_BYTES
TOO_LARGE = "max_request_bytes=1572864"


def test_the_default_limit_is_etcds() -> None:
    assert LIMIT == 1_572_864  # etcd's --max-request-bytes: 1.5 MiB
    assert PaxosConfig(voters=("node1",), durability="memory").max_request_bytes == LIMIT
    for bad in (0, 10, MAX_ENCODED_SIZE + 1, 2.5, True, "1"):
        with pytest.raises(ValueError, match="max_request_bytes"):
            PaxosConfig(voters=("node1",), durability="memory", max_request_bytes=bad)


def test_large_requests_run_and_too_large_ones_are_refused_while_a_holder_keeps_its_lease(cluster: Cluster) -> None:
    holder = spawn(lock_and_park, "held on node1", self_pid(), node="node1")
    receive(lambda m: isinstance(m, tuple) and m[:2] == ("locked", holder), timeout=WAIT)
    ref = monitor(holder)

    def large_then_too_large() -> list[str]:
        refused = []
        for i in range(4):  # large but allowed: about 1.4 MiB each, key and value
            assert paxos.put(("large", i), b"v" * (LIMIT - 100_000)) is not None
            assert len(paxos.get(("large", i))) == LIMIT - 100_000
        for key, value in (
            ("too large", b"v" * (LIMIT + 1)),  # the value alone
            ("k" * (LIMIT + 1), 1),  # the key alone
            (b"k" * (LIMIT // 2), "v" * (LIMIT // 2 + 10)),  # each fits, together they do not
            (("k", b"x" * (40 * 2**20)), 1),  # the 40 MiB key
        ):
            with pytest.raises(ValueError, match=TOO_LARGE) as info:
                paxos.put(key, value)
            refused.append(str(info.value))
        with pytest.raises(ValueError, match=TOO_LARGE):
            paxtor.lock(b"L" * (LIMIT + 1))
        return refused

    with capture_logs() as logs:
        refused = cluster["node1"].run(large_then_too_large)
    assert len(refused) == 4
    assert [e for e in logs if e["event"] == "lease_lost"] == []
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=0)  # the holder is alive
    assert cluster["node2"].run(paxtor.try_lock, "held on node1") is None  # and still holds


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
