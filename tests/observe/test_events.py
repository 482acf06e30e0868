"""`paxtor.subscribe`: quorum, lease and node events as messages, on real nodes."""

from __future__ import annotations

from pathlib import Path

import gevent.queue
import pytest
from structlog.testing import capture_logs

import paxtor
from paxtor.actors import receive, send, spawn
from paxtor.observe import LeaseGained, LeaseLost, NodeDown, NodeUp, QuorumLost, QuorumReached
from paxtor.testing import WAIT, Cluster, wait_node_down

EVENTS = (QuorumLost, QuorumReached, LeaseLost, LeaseGained, NodeUp, NodeDown)


def _relay(out: gevent.queue.Queue, kinds: tuple[str, ...]) -> None:
    """Subscribe, hand the state and every event to the test; "unsubscribe" and "ping" on request."""
    out.put(paxtor.subscribe(*kinds))
    while True:
        msg = receive(lambda m: isinstance(m, EVENTS) or m in ("unsubscribe", "ping"))
        if msg == "unsubscribe":
            paxtor.unsubscribe()
            out.put("unsubscribed")
        elif msg == "ping":
            out.put("pong")
        else:
            out.put(msg)


def _next(events: gevent.queue.Queue, cls: type) -> object:
    """The next event of `cls` (others of the same subscription may come between)."""
    while True:
        event = events.get(timeout=WAIT)
        if isinstance(event, cls):
            return event


def test_quorum_lease_and_node_events_arrive_in_order(tmp_path: Path) -> None:
    # durable voters: node2 comes back with its state and votes at once (a wiped one would
    # be a learner that cannot catch up while node3 is down)
    with Cluster(3, durability="fsync", data_dir=tmp_path) as cluster:
        _events_in_order(cluster)


def _events_in_order(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    events: gevent.queue.Queue = gevent.queue.Queue()
    spawn(_relay, events, (), node="node1")
    state = events.get(timeout=WAIT)
    assert (state.node, state.quorum, state.lease, state.nodes) == ("node1", True, True, ("node2", "node3"))

    cluster.stop("node2")
    assert _next(events, NodeDown).node == "node2"
    cluster.stop("node3")
    down = _next(events, NodeDown)  # a lease lapse under load may come between: skipped
    assert down.node == "node3"
    lost = _next(events, QuorumLost)  # the node, then what it caused
    assert (lost.node, lost.connected, lost.voters) == ("node1", 1, 3)
    lease_lost = _next(events, LeaseLost)
    assert lease_lost.reason in ("expired", "fenced") and lease_lost.node == "node1"

    cluster.start(2)
    assert _next(events, NodeUp).node == "node2"
    reached = _next(events, QuorumReached)
    assert (reached.connected, reached.voters) == (2, 3)
    assert _next(events, LeaseGained).term > lease_lost.term


def test_only_the_kinds_asked_for_and_none_after_unsubscribe(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    events: gevent.queue.Queue = gevent.queue.Queue()
    relay = spawn(_relay, events, ("nodes",), node="node1")
    events.get(timeout=WAIT)
    cluster.stop("node2")
    cluster.stop("node3")  # quorum and lease are lost too: not asked for
    assert [type(events.get(timeout=WAIT)) for _ in range(2)] == [NodeDown, NodeDown]
    cluster.start(2)
    assert type(events.get(timeout=WAIT)) is NodeUp
    assert cluster["node1"].run(lambda: send(relay, "ping")) is None and events.get(timeout=WAIT) == "pong"

    cluster["node1"].run(lambda: send(relay, "unsubscribe"))
    assert events.get(timeout=WAIT) == "unsubscribed"
    cluster.stop("node2")
    wait_node_down(cluster["node1"], "node2")
    cluster["node1"].run(lambda: paxtor.subscribe("nodes"))  # the server has handled node2's loss by now
    cluster["node1"].run(lambda: send(relay, "ping"))
    assert events.get(timeout=WAIT) == "pong"  # and no NodeDown before it


def test_unknown_kinds_are_refused(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    with pytest.raises(ValueError, match="unknown event kind 'quorom'"):
        cluster["node1"].run(lambda: paxtor.subscribe("quorom"))


def test_a_client_logs_the_voters_it_reaches_not_a_cluster_count(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()
    # Two voters: a client counts a voter once it is connected AND its hello (it votes) is in,
    # and its NodeUp can come well before that hello. With two, its QuorumReached (2/3) says
    # both hellos are in, so the loss of node2 that follows is a single step to 1/3.
    cluster.stop("node3")
    with capture_logs() as logs:
        cluster.start(4, voter=False)
        events: gevent.queue.Queue = gevent.queue.Queue()
        spawn(_relay, events, ("quorum",), node="node4")
        if not events.get(timeout=WAIT).quorum:
            assert _next(events, QuorumReached).connected == 2
        cluster.stop("node2")
        lost = _next(events, QuorumLost)
        assert (lost.node, lost.connected, lost.voters) == ("node4", 1, 3)
    mine = [(e["event"], e["message"]) for e in logs if e.get("node") == "node4" and "message" in e]
    assert mine == [
        ("quorum_reachable", "Quorum reachable. [voters:2/3]"),
        ("quorum_unreachable", "Quorum unreachable. [voters:1/3]"),
    ]


def test_bad_requests_are_answered_and_the_servers_keep_running(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.wait_ready()

    def poke() -> tuple:
        servers = [paxtor.actors.whereis(name) for name in ("paxtor_events", "paxtor_observe")]
        answers = (
            paxtor.actors.call("paxtor_events", ("subscribe", paxtor.actors.Pid("node2", 1, 1), ("nodes",))),
            paxtor.actors.call("paxtor_events", "hello"),
            paxtor.actors.call("paxtor_observe", ("scan_page", 1, 10**9)),
            paxtor.actors.call("paxtor_observe", ("report", "extra")),
        )
        return servers, answers, [paxtor.actors.whereis(name) for name in ("paxtor_events", "paxtor_observe")]

    before, answers, after = cluster["node1"].run(poke)
    assert [answer[0] for answer in answers] == ["bad_request"] * 4
    assert before == after
