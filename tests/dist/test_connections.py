"""The mesh itself, over real TCP in one OS process: forming it (one
connection per node pair, even when both dial at once), refusing a wrong
cookie, partitions (heartbeat, "noconnection" exactly once, healing),
restarted nodes (a new incarnation is a new node), TLS, stopping."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.queue
import pytest
from structlog.testing import capture_logs

from paxtor.actors import (
    Down,
    Exit,
    ReceiveTimeout,
    call,
    link,
    monitor,
    receive,
    self_pid,
    send,
    spawn,
    trap_exits,
)
from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ConnectionConfig
from paxtor.actors.cookie import resolve_cookie
from paxtor.actors.distribution import (
    NodeDown,
    NodeUp,
    all_distributed,
    connect,
    monitor_nodes,
    nodes,
    start_distributed,
)
from paxtor.actors.faults import FaultInjector
from paxtor.actors.ids import Pid
from paxtor.actors.messages import CallError

from . import remote_helpers as rh
from .conftest import COOKIE, WAIT, free_port_block

FAST = dict(cookie=COOKIE, heartbeat_interval=0.1, heartbeat_timeout=0.6, handshake_timeout=0.5,
            reconnect_min=0.05, reconnect_max=0.3)


def seed(dist: Any) -> str:
    return f"127.0.0.1:{dist.port}"


def next_node_event(timeout: float = WAIT) -> NodeUp | NodeDown:
    return receive(lambda m: isinstance(m, (NodeUp, NodeDown)), timeout=timeout)


def no_more(kinds: tuple[type, ...]) -> bool:
    try:
        receive(lambda m: isinstance(m, kinds), timeout=0)
    except ReceiveTimeout:
        return True
    return False


def poll_until(condition: Any, timeout: float = WAIT) -> None:
    """Only for what nothing can signal (a log line of another node)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.02)


# -- forming the mesh -------------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_three_numbered_nodes_form_a_full_mesh_with_one_connection_per_pair(round_):
    base = free_port_block(3)
    with capture_logs() as logs:
        # started in one loop turn: every node dials every other at once
        dists = [start_distributed(f"node{i}", base_port=base, cluster_size=3, **FAST) for i in (1, 2, 3)]
        for dist in dists:
            assert dist.wait_for_nodes(["node1", "node2", "node3"], WAIT)
        # a losing duplicate may still be finishing its refused handshake
        poll_until(lambda: all(len(d.peers.connections()) == 2 for d in dists))
    names = {d.name for d in dists}
    for dist in dists:
        assert dist.nodes() == sorted(names - {dist.name})
        assert dist.port == base + int(dist.name[4:])
        live = dist.peers.connections()
        assert len(live) == 2 and all(c.is_up for c in live), live
    for a in dists:
        for b in dists:
            if a.name < b.name:
                ab, ba = a.peers.up[b.name], b.peers.up[a.name]
                assert {ab.role, ba.role} == {"initiator", "acceptor"}  # the two ends of ONE connection
                assert ab.peer.incarnation == b.incarnation and ba.peer.incarnation == a.incarnation
    events = [e["event"] for e in logs]
    assert events.count("node_up") == 6  # once per node per peer: no flapping
    assert "node_down" not in events


@pytest.mark.parametrize("round_", range(3))
def test_two_nodes_that_know_each_other_only_as_seeds_connect_once_without_flapping(round_):
    # Each dials the other before it knows its name: an accepted peer may be the seed
    # being dialled, so the simultaneous-connect rule must apply to it too.
    base = free_port_block(2)
    with capture_logs() as logs:
        alpha = start_distributed("alpha", port=base + 1, seeds=[f"127.0.0.1:{base + 2}"], **FAST)
        beta = start_distributed("beta", port=base + 2, seeds=[f"127.0.0.1:{base + 1}"], **FAST)
        assert alpha.wait_for_nodes(["beta"], WAIT) and beta.wait_for_nodes(["alpha"], WAIT)
        # the refused duplicate may still be finishing; then nothing is in flight
        poll_until(lambda: all(len(d.peers.connections()) == 1 and not d.peers._attempts for d in (alpha, beta)))
    ab, ba = alpha.peers.up["beta"], beta.peers.up["alpha"]
    assert {ab.role, ba.role} == {"initiator", "acceptor"}  # the two ends of ONE connection
    events = [e["event"] for e in logs]
    assert events.count("node_up") == 2 and "node_down" not in events


def test_a_spawn_is_answered_only_by_the_node_asked():
    # A peer may not speak for a third node: node3's reply to a spawn asked of node2 is ignored.
    faults = FaultInjector()
    n1 = start_distributed("node1", port=0, faults=faults, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], faults=faults, **FAST)
    n3 = start_distributed("node3", port=0, seeds=[seed(n1)], **FAST)
    assert n1.wait_for_nodes(["node2", "node3"], WAIT)
    faults.delay("node2", "node1", 0.3)  # node2's own answer comes late (within the heartbeat timeout)
    spawned = gevent.spawn(n1.transport.spawn, "node2", rh.waiter, (), {}, None, None)
    poll_until(lambda: len(n1.transport._spawns) == 1)
    (request,) = n1.transport._spawns
    forged = Pid("node3", n3.incarnation, 1)
    n1.transport.spawn_replied("node3", request, forged, None)  # as node3's frame would
    n1.transport.spawn_replied("node2", request, forged, None)  # node2 naming a pid elsewhere
    assert request in n1.transport._spawns  # still waiting for node2 itself
    pid = spawned.get(timeout=WAIT)
    assert pid.node == "node2"


def test_nodes_connect_and_disconnect_on_request():
    base = free_port_block(4)
    n1 = start_distributed("node1", base_port=base, cluster_size=1, **FAST)  # dials no one
    n4 = start_distributed("node4", base_port=base, cluster_size=1, **FAST)  # dials node1
    assert n1.wait_for_nodes(["node4"], WAIT)
    assert nodes() == ["node4"]  # the test body is node1's process
    n2 = start_distributed("node2", base_port=base, cluster_size=0, **FAST)  # dials no one
    assert "node2" not in n1.nodes()
    assert connect("node2")  # found by number
    assert n1.nodes() == ["node2", "node4"]
    assert connect("node1")  # itself
    assert not connect("elsewhere", timeout=0.5)  # no number, no seed: nowhere to look
    monitor_nodes()
    assert n1.disconnect("node4")
    assert next_node_event() == NodeDown("node4", "disconnected")
    # node4 dials node1 (its numbered peer) again by itself
    assert next_node_event() == NodeUp("node4", n4.incarnation)
    assert n2.nodes() == ["node1"]


def test_monitor_nodes_counts_subscriptions_and_refuses_a_non_bool():
    # net_kernel:monitor_nodes: each `true` is one more subscription, `false` ends them all.
    n1 = start_distributed("node1", port=0, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT)
    with pytest.raises(TypeError):
        monitor_nodes("yes")
    monitor_nodes(True)
    monitor_nodes(True)
    assert n1.disconnect("node2")
    assert [next_node_event(), next_node_event()] == [NodeDown("node2", "disconnected")] * 2
    assert [next_node_event(), next_node_event()] == [NodeUp("node2", n2.incarnation)] * 2  # it dials back
    monitor_nodes(False)
    assert n1.disconnect("node2")
    assert n1.wait_for_nodes(["node2"], WAIT)
    assert no_more((NodeUp, NodeDown))


def test_a_wrong_cookie_is_refused_and_logged_and_the_node_serves_others():
    n1 = start_distributed("node1", port=0, **FAST)
    with capture_logs() as logs:
        intruder = start_distributed("intruder", port=0, seeds=[seed(n1)], **{**FAST, "cookie": "not-the-cookie"})
        n2 = start_distributed("node2", port=0, seeds=[seed(n1)], **FAST)
        assert n2.wait_for_nodes(["node1"], WAIT)
        # both sides log the refusal, each in its own time: wait for both
        poll_until(lambda: any(e.get("reason", "").startswith("bad_cookie") and e.get("local") == "node1"
                               for e in logs)
                   and any(e["event"] == "handshake_failed" and e.get("local") == "intruder" for e in logs))
    refused = [e for e in logs if e["event"] == "handshake_failed" and e["local"] == "node1"]
    # a loaded machine may also time a redial's handshake out; no refusal is ever anything else
    assert refused and all(e["reason"].startswith(("bad_cookie", "handshake_timeout")) for e in refused)
    assert any(e["reason"].startswith("bad_cookie") for e in refused)
    assert n1.nodes() == ["node2"] and intruder.nodes() == []
    pid = n2.run(rh.start_echo_server)
    assert call(pid, "served") == ("echo", "served")


# -- partitions ------------------------------------------------------------------------------------


def test_a_partition_fires_noconnection_once_on_both_sides_then_heals():
    faults = FaultInjector(seed=1)
    n1 = start_distributed("node1", port=0, faults=faults, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], faults=faults, **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT) and n2.wait_for_nodes(["node1"], WAIT)
    me = self_pid()
    trap_exits(True)
    monitor_nodes()

    # node1's side: this process links to and monitors a process on node2
    remote = spawn(rh.waiter, node="node2")
    link(remote)
    remote_ref = monitor(remote)
    # node2's side: a watcher links to and monitors a process on node1, and
    # reports what it sees through a queue (nothing crosses during the cut)
    local = spawn(rh.waiter)
    local_ref = monitor(local)
    seen_on_node2: gevent.queue.Queue[Any] = gevent.queue.Queue()

    def watcher() -> None:
        trap_exits(True)
        monitor_nodes()
        link(local)
        ref = monitor(local)
        send(me, "watching")
        while True:
            msg = receive()
            if isinstance(msg, Down):
                assert msg.ref == ref
            seen_on_node2.put(msg)

    spawn(watcher, node="node2")
    assert receive(lambda m: m == "watching", timeout=WAIT)

    faults.partition("node1", "node2")
    down = next_node_event()
    assert isinstance(down, NodeDown) and down.node == "node2"
    assert receive(lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(remote, "noconnection")
    assert receive(lambda m: isinstance(m, Down) and m.ref == remote_ref, timeout=WAIT).reason == "noconnection"
    # the node1 end of node2's link got the noconnection too: it did not trap
    assert receive(lambda m: isinstance(m, Down) and m.ref == local_ref, timeout=WAIT).reason == "noconnection"
    on_node2 = [seen_on_node2.get(timeout=WAIT) for _ in range(3)]
    assert sorted(type(m).__name__ for m in on_node2) == ["Down", "Exit", "NodeDown"]
    for msg in on_node2:
        if isinstance(msg, NodeDown):
            assert msg.node == "node1"
            # TCP stayed open: the heartbeat declared the peer down (then
            # closed the socket, so the other side may have seen that first)
            assert msg.reason.startswith("heartbeat_timeout") or down.reason.startswith("heartbeat_timeout")
            assert {msg.reason.split(":")[0], down.reason.split(":")[0]} <= {"heartbeat_timeout", "peer_closed"}
        else:
            assert msg.reason == "noconnection" and msg.pid == local

    faults.heal()
    assert next_node_event() == NodeUp("node2", n2.incarnation)
    assert seen_on_node2.get(timeout=WAIT) == NodeUp("node1", n1.incarnation)
    # exactly once: nothing more fired, on either side
    assert no_more((Exit, Down, NodeDown))
    assert seen_on_node2.empty()


def test_a_one_way_block_takes_the_link_down_on_both_sides():
    faults = FaultInjector(seed=2)
    n1 = start_distributed("node1", port=0, faults=faults, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], faults=faults, **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT)
    monitor_nodes()
    faults.block("node2", "node1")
    down = next_node_event()
    assert isinstance(down, NodeDown) and down.node == "node2"
    faults.heal()
    assert next_node_event() == NodeUp("node2", n2.incarnation)


# -- restarts ---------------------------------------------------------------------------------------


def test_a_restarted_node_is_a_new_node_and_pids_of_the_old_one_are_dead():
    n1 = start_distributed("node1", port=0, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT)
    monitor_nodes()
    old_server = n2.run(rh.start_echo_server, "echo")
    trap_exits(True)
    link(old_server)
    assert call(old_server, "linked?") == ("echo", "linked?")  # the link is in place over there
    n2.stop()
    # its processes stopped first ("shutdown" arrives), then it said goodbye
    assert receive(lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(old_server, "shutdown")
    down = receive(lambda m: isinstance(m, NodeDown), timeout=WAIT)
    assert down.node == "node2" and down.reason.startswith("peer_stopping")

    n2b = start_distributed("node2", port=0, seeds=[seed(n1)], **FAST)
    assert n2b.incarnation > n2.incarnation
    up = receive(lambda m: isinstance(m, NodeUp), timeout=WAIT)
    assert up == NodeUp("node2", n2b.incarnation)
    assert n1.peer_incarnation("node2") == n2b.incarnation
    new_server = n2b.run(rh.start_echo_server, "echo")
    assert new_server.serial == old_server.serial  # same serial, other incarnation: another process
    # the old pid is dead: messages dropped, link/monitor/call give "noproc"
    send(old_server, "dropped")
    ref = monitor(old_server)
    assert receive(lambda m: isinstance(m, Down), timeout=WAIT) == Down(ref, old_server, "noproc")
    link(old_server)
    assert receive(lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(old_server, "noproc")
    with pytest.raises(CallError) as info:
        call(old_server, "hello?")
    assert info.value.reason == "noproc"
    assert call(new_server, "recall") is None  # it never got "dropped" either
    assert call(("echo", "node2"), "hi") == ("echo", "hi")


def test_a_new_incarnation_replaces_a_connection_that_still_looks_up():
    """A peer that restarts faster than the heartbeat notices: its new
    incarnation's handshake replaces the old connection (played here by a
    bare Connection claiming node2's next incarnation)."""
    slow = {**FAST, "heartbeat_timeout": 30.0}
    n1 = start_distributed("node1", port=0, **slow)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], **slow)
    assert n1.wait_for_nodes(["node2"], WAIT)
    monitor_nodes()
    trap_exits(True)
    old = spawn(rh.waiter, node="node2")
    link(old)
    reborn = ConnectionConfig("node2", n2.incarnation + 1, resolve_cookie(COOKIE), heartbeat_interval=0.1)
    conn = Connection.connect(reborn, "127.0.0.1", n1.port, expected_peer="node1",
                              on_message=lambda c, m: None, on_close=lambda c, r: None)
    try:
        assert conn.wait_up(WAIT)
        down = receive(lambda m: isinstance(m, NodeDown), timeout=WAIT)
        assert down.node == "node2" and down.reason.startswith("peer_restarted")
        assert receive(lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(old, "noconnection")
        assert receive(lambda m: isinstance(m, NodeUp), timeout=WAIT) == NodeUp("node2", n2.incarnation + 1)
        assert n1.peer_incarnation("node2") == n2.incarnation + 1
    finally:
        conn.close("test_over")


def test_an_older_incarnation_is_refused_while_the_newer_is_up():
    n1 = start_distributed("node1", port=0, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT)
    stale = ConnectionConfig("node2", n2.incarnation - 1, resolve_cookie(COOKIE))
    conn = Connection.connect(stale, "127.0.0.1", n1.port, on_message=lambda c, m: None,
                              on_close=lambda c, r: None)
    assert not conn.wait_up(WAIT)
    assert "stale_incarnation" in conn.close_reason
    assert n1.peer_incarnation("node2") == n2.incarnation


# -- stopping, TLS ---------------------------------------------------------------------------------------


def test_stop_closes_the_listener_and_every_connection():
    n1 = start_distributed("node1", port=0, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT)
    port = n2.port
    n2.stop()
    assert not n2.running and not n2.local.running
    assert n2 not in all_distributed()
    assert n2.peers.connections() == []
    assert n1.peers.wait_until(lambda: not n1.nodes(), WAIT)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # the port is free again
    n2.stop()  # idempotent


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    return server, client


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_nodes_over_tls(tmp_path: Path):
    contexts = _tls_contexts(tmp_path)
    n1 = start_distributed("node1", port=0, ssl_context=contexts, **FAST)
    n2 = start_distributed("node2", port=0, seeds=[seed(n1)], ssl_context=contexts, **FAST)
    plain = start_distributed("plain", port=0, seeds=[seed(n1)], **FAST)
    assert n1.wait_for_nodes(["node2"], WAIT)
    pid = n2.run(rh.start_echo_server)
    assert call(pid, "secret") == ("echo", "secret")
    assert plain.nodes() == [] and "plain" not in n1.nodes()
