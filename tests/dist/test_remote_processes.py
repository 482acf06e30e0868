"""Processes on two distributed nodes in one OS process, talking over real
TCP on 127.0.0.1: every primitive works on remote pids and (name, node)
destinations as it does locally. The test body is a process of node1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import gevent
import pytest
from structlog.testing import capture_logs

import paxtor.actors.primitives as primitives
from paxtor.actors import (
    Down,
    Exit,
    ReceiveTimeout,
    call,
    cast,
    demonitor,
    exit,
    link,
    monitor,
    receive,
    register,
    self_pid,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exits,
    unlink,
)
from paxtor.actors.distribution import DistributedNode, NodeDown, NodeUnreachable, NodeUp, monitor_nodes, start_distributed
from paxtor.actors.function_ref import FunctionRefError
from paxtor.actors.ids import Pid
from paxtor.actors.messages import CallError, CallTimeout, Reply
from paxtor.actors.wire import RemoteError

from . import remote_helpers as rh
from .conftest import PAIR_SETTINGS as FAST
from .conftest import WAIT

@pytest.fixture
def as_if_remote(monkeypatch: pytest.MonkeyPatch, pair: tuple[DistributedNode, DistributedNode]) -> Iterator[None]:
    """spawn(..., node="node2") as if node2 lived in another OS process: it
    goes through the distribution (a SpawnRequest on the wire), not the
    direct co-resident spawn."""
    monkeypatch.setattr(primitives, "get_node", lambda name: None)
    yield


def wait_down(ref: object, timeout: float = WAIT) -> Down:
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def wait_exit(pid: Pid, timeout: float = WAIT) -> Exit:
    return receive(lambda m: isinstance(m, Exit) and m.pid == pid, timeout=timeout)


def nothing_left(kind: type) -> bool:
    try:
        receive(lambda m: isinstance(m, kind), timeout=0)
    except ReceiveTimeout:
        return True
    return False


def sync_with(n2: DistributedNode) -> None:
    """Every signal node1 sent node2 so far has been applied there and
    every answer sent back before it has arrived (order per pair)."""
    pid = spawn(rh.echo_loop, node="node2")
    send(pid, (self_pid(), ("synced", pid)))
    receive(lambda m: m == ("synced", pid), timeout=WAIT)
    exit(pid, "kill")


# -- messages -------------------------------------------------------------------------------


def test_send_to_a_remote_pid_and_to_a_registered_name(pair):
    n1, n2 = pair
    frames_before = n1.peers.up["node2"].stats.frames_sent
    echo = spawn(rh.echo_loop, node="node2")
    send(echo, (self_pid(), "by pid"))
    assert receive(timeout=WAIT) == "by pid"
    register("echo", echo)
    send(("echo", "node2"), (self_pid(), "by name"))
    assert receive(timeout=WAIT) == "by name"
    send(("nobody", "node2"), (self_pid(), "lost"))  # dropped, as in Erlang
    assert n1.peers.up["node2"].stats.frames_sent >= frames_before + 3  # it did cross the wire


def test_messages_between_a_pair_keep_their_order_under_load(pair):
    senders, per_sender = 4, 1500
    collector = spawn(rh.collect, self_pid(), senders * per_sender, node="node2")
    for sender in range(senders):  # concurrent local senders to one remote process
        spawn(rh.send_sequence, collector, sender, per_sender)
    kind, counts, in_order = receive(timeout=60)
    assert kind == "collected"
    assert counts == {sender: per_sender for sender in range(senders)}
    assert in_order


def test_an_unencodable_message_raises_in_the_sender_and_the_link_survives(pair):
    n1, _ = pair
    echo = spawn(rh.echo_loop, node="node2")
    with pytest.raises(TypeError, match="cannot encode"):
        send(echo, (self_pid(), object()))
    send(echo, (self_pid(), "still fine"))
    assert receive(timeout=WAIT) == "still fine"
    assert n1.nodes() == ["node2"]


# -- GenServer across nodes ------------------------------------------------------------------------


def test_call_and_cast_to_a_remote_server_by_pid_and_by_name(pair):
    _, n2 = pair
    pid = n2.run(rh.start_echo_server, "echo")
    assert pid.node == "node2"
    assert call(pid, 1) == ("echo", 1)
    assert call(("echo", "node2"), (2, "two")) == ("echo", (2, "two"))
    cast(("echo", "node2"), ("remember", {"k": frozenset({1})}))
    assert call(pid, "recall") == {"k": frozenset({1})}
    assert call(pid, "pid_and_node") == (pid, "node2")


def test_a_remote_call_is_one_frame_each_way_and_leaves_no_monitor_behind(pair):
    n1, n2 = pair
    pid = n2.run(rh.start_echo_server, "echo")
    call(pid, "warm up")
    out, back = n1.peers.up["node2"].stats, n2.peers.up["node1"].stats
    sent, answered = out.frames_sent, back.frames_sent
    for i in range(20):
        assert call(pid, i) == ("echo", i)
        assert call(("echo", "node2"), i) == ("echo", i)
    assert out.frames_sent - sent == 40 and back.frames_sent - answered == 40
    me = n1.local.lookup(self_pid())
    assert me.monitors == {}
    assert n2.local.lookup(pid).monitored_by == {}
    assert n1.local.peer_edges("node2") == n2.local.peer_edges("node1") == (0, 0, 0)


def test_a_reply_from_another_process_and_a_plain_monitor_still_work(pair):
    n1, n2 = pair
    pid = n2.run(rh.start_echo_server)
    assert call(pid, ("delegate", "from a helper")) == "from a helper"
    ref = monitor(pid)  # a monitor alone, held back to the end of the loop turn, still goes
    assert call(pid, "then a call") == ("echo", "then a call")
    sync_with(n2)
    assert n2.local.lookup(pid).monitored_by.keys() == {ref}
    assert n1.local.peer_edges("node2") == (0, 1, 0) and n2.local.peer_edges("node1") == (0, 0, 1)
    exit(pid, "kill")
    assert wait_down(ref).reason == "killed"
    assert n1.local.peer_edges("node2") == n2.local.peer_edges("node1") == (0, 0, 0)


def test_signals_sent_while_the_connection_is_being_made_arrive_in_order():
    n1 = start_distributed("node1", port=0, **FAST)
    me = self_pid()
    n2 = start_distributed("node2", port=0, seeds=[f"127.0.0.1:{n1.port}"], **FAST)

    def early_sender() -> None:  # runs before node2's connection to node1 is up
        assert "node1" not in n2.nodes() and n2.peers.reaching("node1")
        for i in range(5):
            send(me, ("early", i))

    n2.run(early_sender)
    assert [receive(timeout=WAIT) for _ in range(5)] == [("early", i) for i in range(5)]


def test_a_link_made_while_a_connection_attempt_fails_gets_noconnection():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (in the kernel), never answers the handshake
    try:
        n1 = start_distributed("node1", port=0, seeds=[f"127.0.0.1:{silent.getsockname()[1]}"],
                               **{**FAST, "handshake_timeout": 0.3})
        deadline = gevent.Timeout(WAIT)
        with deadline:
            while not n1.peers.reaching("ghost"):  # a seed of unknown name may be any node
                gevent.sleep(0.01)
        trap_exits(True)
        ghost = Pid("ghost", 1, 1)
        link(ghost)
        ref = monitor(ghost)
        assert nothing_left(Exit)  # held, waiting for the attempt
        assert wait_exit(ghost) == Exit(ghost, "noconnection")
        assert wait_down(ref) == Down(ref, ghost, "noconnection")
        assert n1.local.peer_edges("ghost") == (0, 0, 0)
    finally:
        silent.close()


def test_a_call_to_a_dead_or_missing_remote_server_raises(pair):
    _, n2 = pair
    pid = n2.run(rh.start_echo_server)
    ref = monitor(pid)
    exit(pid, "kill")
    assert wait_down(ref).reason == "killed"
    with pytest.raises(CallError) as info:
        call(pid, "anyone?")
    assert info.value.reason == "noproc"
    with pytest.raises(CallError) as info:
        call(("nobody", "node2"), "anyone?")
    assert info.value.reason == "noproc"


def test_a_server_crash_during_a_call_raises_in_the_caller_with_a_remote_error(pair):
    _, n2 = pair
    pid = n2.run(rh.start_echo_server)
    with pytest.raises(CallError) as info:
        call(pid, "crash")
    reason = info.value.reason
    assert isinstance(reason, RemoteError)
    assert reason.matches(RuntimeError) and reason.message == "server crashed on purpose"
    assert "handle_call" in reason.traceback


def test_a_late_reply_never_lands(pair):
    _, n2 = pair
    pid = n2.run(rh.start_echo_server)
    with pytest.raises(CallTimeout):
        call(pid, ("sleep", 0.3, "too late"), timeout=0.05)
    # The server answers the late call, then this one, in order on one
    # connection: once this reply is here, the late one came and was dropped.
    assert call(pid, "after") == ("echo", "after")
    assert nothing_left(Reply)


def test_a_call_in_flight_when_the_connection_drops_raises_noconnection(pair):
    n1, n2 = pair
    pid = n2.run(rh.start_echo_server)
    me = self_pid()

    def caller() -> None:
        try:
            call(pid, ("notify_then_hang", me), timeout=None)
        except CallError as exc:
            send(me, ("call_failed", exc.reason))

    spawn(caller)
    assert receive(timeout=WAIT)[0] == "hanging"  # the call is in the server now
    assert n1.disconnect("node2")
    assert receive(timeout=WAIT) == ("call_failed", "noconnection")


# -- links, monitors, exits -------------------------------------------------------------------------


def test_a_remote_crash_crosses_as_remote_error_through_links_and_monitors(pair):
    trap_exits(True)
    pid = spawn(rh.crash_on_message, node="node2")
    link(pid)
    ref = monitor(pid)
    send(pid, "now")
    down = wait_down(ref)
    exit_msg = wait_exit(pid)
    for reason in (down.reason, exit_msg.reason):
        assert isinstance(reason, RemoteError)
        assert reason.matches(ValueError) and reason.message == "boom: now"
    assert down.reason == exit_msg.reason


def test_a_remote_link_kills_a_non_trapping_local_process(pair):
    remote = spawn(rh.waiter, node="node2")
    me = self_pid()

    def victim() -> None:
        link(remote)
        send(me, "linked")
        receive()

    local, ref = spawn_monitor(victim)
    assert receive(timeout=WAIT) == "linked"
    exit(remote, "boom")
    assert wait_down(ref).reason == "boom"


def test_exit_signals_to_remote_pids(pair):
    n1, n2 = pair
    trap_exits(True)
    pid = spawn(rh.waiter, node="node2")
    link(pid)
    ref = monitor(pid)
    exit(pid, "kill")
    assert wait_down(ref).reason == "killed"
    assert wait_exit(pid).reason == "killed"
    # a trapping remote process gets exit/2 as a message
    echo = spawn(rh.echo_loop, node="node2")
    ref = monitor(echo)
    exit(echo, "normal")  # ignored by a non-trapping process
    send(echo, (self_pid(), "alive"))
    assert receive(lambda m: m == "alive", timeout=WAIT) == "alive"
    exit(echo, "shutdown")
    assert wait_down(ref).reason == "shutdown"
    sync_with(n2)
    assert n1.local.peer_edges("node2") == (0, 0, 0)
    assert n2.local.peer_edges("node1") == (0, 0, 0)


def test_unlink_across_nodes(pair):
    n1, n2 = pair
    trap_exits(True)
    pid = spawn(rh.waiter, node="node2")
    link(pid)
    sync_with(n2)
    assert n2.local.peer_edges("node1") == (1, 0, 0)
    unlink(pid)
    sync_with(n2)
    assert n1.local.peer_edges("node2") == n2.local.peer_edges("node1") == (0, 0, 0)
    ref = monitor(pid)
    exit(pid, "boom")
    assert wait_down(ref).reason == "boom"
    assert nothing_left(Exit)


def test_monitors_by_pid_and_by_name_and_demonitor(pair):
    _, n2 = pair
    pid = spawn(rh.waiter, node="node2")
    register("w", pid)
    by_name = monitor(("w", "node2"))
    by_pid = monitor(pid)
    dropped = monitor(pid)
    assert demonitor(dropped)
    send(pid, "go")
    assert wait_down(by_name) == Down(by_name, ("w", "node2"), "normal")
    assert wait_down(by_pid) == Down(by_pid, pid, "normal")
    sync_with(n2)
    assert nothing_left(Down)
    missing = monitor(("nobody", "node2"))
    assert wait_down(missing) == Down(missing, ("nobody", "node2"), "noproc")


def test_link_and_monitor_to_a_dead_remote_pid_give_noproc(pair):
    pid, ref = spawn_monitor(rh.exit_with, "done", node="node2")
    assert wait_down(ref).reason == "done"
    ref = monitor(pid)
    assert wait_down(ref) == Down(ref, pid, "noproc")
    trap_exits(True)
    link(pid)
    assert wait_exit(pid) == Exit(pid, "noproc")


def test_an_unencodable_exit_reason_still_reaches_the_other_side(pair):
    trap_exits(True)
    me = self_pid()

    def remote_watcher() -> None:
        trap_exits(True)
        local = receive()
        link(local)
        send(me, "linked")
        send(me, ("got", receive(lambda m: isinstance(m, Exit), timeout=WAIT)))

    watcher = spawn(remote_watcher, node="node2")
    local = spawn(lambda: exit(("odd", object())) if receive() else None)
    send(watcher, local)
    assert receive(timeout=WAIT) == "linked"
    with capture_logs() as logs:
        send(local, "go")
        kind, exit_msg = receive(lambda m: isinstance(m, tuple) and m[0] == "got", timeout=WAIT)
    assert isinstance(exit_msg.reason, RemoteError)
    assert exit_msg.reason.type_name == "paxtor.actors.distribution.UnencodableReason"
    assert "odd" in exit_msg.reason.message
    assert any(entry["event"] == "unencodable_exit_reason" for entry in logs)


def test_a_frame_that_is_not_one_of_ours_closes_that_connection_then_it_comes_back(pair):
    n1, n2 = pair
    monitor_nodes()
    with capture_logs() as logs:
        n2.peers.up["node1"].send(("not", "a frame"))
        down = receive(lambda m: isinstance(m, NodeDown), timeout=WAIT)
        assert down.node == "node2" and "ProtocolError" in down.reason
        assert receive(lambda m: isinstance(m, NodeUp), timeout=WAIT) == NodeUp("node2", n2.incarnation)
    assert any(e["event"] == "on_message_failed" and e["local"] == "node1" for e in logs)


# -- remote spawn (through the wire) ------------------------------------------------------------------


def test_remote_spawn_runs_the_function_on_the_other_node(as_if_remote, pair):
    n1, n2 = pair
    pid = spawn(rh.report_node, self_pid(), node="node2")
    assert pid.node == "node2" and pid.incarnation == n2.incarnation
    assert receive(timeout=WAIT) == ("ran_on", "node2", pid)


def test_remote_spawn_link_gets_the_exit_even_when_the_process_ends_at_once(as_if_remote, pair):
    n1, _ = pair
    trap_exits(True)
    for reason in ("bye", "normal"):
        pid = spawn_link(rh.exit_with, reason, node="node2")
        assert wait_exit(pid) == Exit(pid, reason)
    assert n1.local.peer_edges("node2") == (0, 0, 0)


def test_remote_spawn_monitor_gets_the_down_even_when_the_process_ends_at_once(as_if_remote, pair):
    pid, ref = spawn_monitor(rh.exit_with, "gone", node="node2")
    assert pid.node == "node2"
    assert wait_down(ref) == Down(ref, pid, "gone")
    pid, ref = spawn_monitor(rh.waiter, node="node2")
    send(pid, "go")
    assert wait_down(ref) == Down(ref, pid, "normal")


def test_remote_spawn_refuses_what_cannot_travel_in_the_caller(as_if_remote, pair):
    n1, _ = pair
    sent = n1.peers.up["node2"].stats.frames_sent
    with pytest.raises(FunctionRefError, match="top level"):
        spawn(lambda: None, node="node2")

    def nested() -> None:
        pass

    with pytest.raises(FunctionRefError, match="top level"):
        spawn(nested, node="node2")
    with pytest.raises(TypeError, match="cannot encode"):
        spawn(rh.report_node, object(), node="node2")
    assert n1.peers.up["node2"].stats.frames_sent == sent  # nothing was sent
    with pytest.raises(NodeUnreachable):
        spawn(rh.waiter, node="nowhere")


def test_a_gen_server_started_remotely_by_spawn(as_if_remote, pair):
    pid = spawn(rh.start_echo_server_and_report, self_pid(), "remote_echo", node="node2")
    kind, server = receive(timeout=WAIT)
    assert kind == "server" and server.node == "node2"
    assert call(("remote_echo", "node2"), "hello") == ("echo", "hello")
    exit(pid, "kill")
