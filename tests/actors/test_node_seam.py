"""The distribution seam of LocalNode, driven by a loopback transport that
plays the distribution layer between nodes of this OS process: signals
across nodes, node-down bookkeeping, and what "not distributed" means."""

from __future__ import annotations

from collections import deque

import gevent
import pytest

from paxtor.actors import (
    Down,
    Exit,
    GenServer,
    Pid,
    ReceiveTimeout,
    Ref,
    call,
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
)
from paxtor.actors.messages import ProcessExit
from paxtor.actors.node import LocalNode, get_node


class Loopback:
    """A toy distribution layer: queues every signal and delivers it from the
    hub in order, only between connected nodes."""

    def __init__(self, *nodes):
        self.queue = deque()
        self.flush_scheduled = False
        self.up = set()
        for node in nodes:
            node.remote = _Port(self, node.name)
        for a in nodes:
            for b in nodes:
                if a is not b:
                    self.up.add((a.name, b.name))

    def connected(self, a, b):
        return (a, b) in self.up

    def post(self, frm, to_node, method, *args):
        if not self.connected(frm, to_node):
            return False
        self.queue.append((frm, to_node, method, args))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            gevent.get_hub().loop.run_callback(self.flush)
        return True

    def flush(self):
        self.flush_scheduled = False
        while self.queue:
            frm, to_node, method, args = self.queue.popleft()
            node = get_node(to_node)
            if node is not None and self.connected(frm, to_node):
                getattr(node, method)(*args)

    def disconnect(self, a, b):
        self.up.discard((a.name, b.name))
        self.up.discard((b.name, a.name))
        a.on_node_down(b.name)
        b.on_node_down(a.name)


class _Port:
    def __init__(self, net, name):
        self.net = net
        self.name = name

    def send(self, to, msg):
        return self.net.post(self.name, to.node, "deliver_message", to, msg)

    def send_named(self, name, node_name, msg):
        return self.net.post(self.name, node_name, "deliver_named", name, node_name, msg)

    def link(self, frm, to):
        return self.net.post(self.name, to.node, "deliver_link", frm, to)

    def unlink(self, frm, to):
        return self.net.post(self.name, to.node, "deliver_unlink", frm, to)

    def exit(self, frm, to, reason, via_link):
        return self.net.post(self.name, to.node, "deliver_exit", frm, to, reason, via_link)

    def monitor(self, watcher, target, ref):
        node = target.node if isinstance(target, Pid) else target[1]
        return self.net.post(self.name, node, "deliver_monitor", watcher, target, ref)

    def demonitor(self, watcher, target, ref):
        node = target.node if isinstance(target, Pid) else target[1]
        return self.net.post(self.name, node, "deliver_demonitor", watcher, target, ref)

    def down(self, watcher, ref, target, reason):
        return self.net.post(self.name, watcher.node, "deliver_down", watcher, ref, target, reason)

    def spawn(self, node_name, fn, args, kwargs, link, monitor):
        raise AssertionError("co-resident nodes are spawned on directly")


@pytest.fixture
def two_nodes():
    n1 = LocalNode.start("n1")
    n2 = LocalNode.start("n2")
    net = Loopback(n1, n2)
    return n1, n2, net


def down_of(ref, timeout=5):
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def waiter():
    receive()


def echo():
    while True:
        frm, msg = receive()
        send(frm, msg)


def barrier(node_name="n2"):
    """Return once every signal this process sent to `node_name` has been
    applied there, and every signal sent back before the echo has arrived
    (the loopback keeps order)."""
    pid = spawn(echo, node=node_name)
    token = ("barrier", pid)
    send(pid, (self_pid(), token))
    receive(lambda m: m == token, timeout=5)
    exit(pid, "kill")


# -- signals across nodes ---------------------------------------------------------------------


def test_messages_cross_nodes_in_order(two_nodes):
    assert self_pid().node == "n1"
    pid = spawn(echo, node="n2")
    for i in range(20):
        send(pid, (self_pid(), i))
    assert [receive(timeout=5) for _ in range(20)] == list(range(20))


def test_send_to_a_name_on_another_node(two_nodes):
    pid = spawn(echo, node="n2")
    register("echo", pid)
    send(("echo", "n2"), (self_pid(), "hi"))
    assert receive(timeout=5) == "hi"


def test_a_link_across_nodes_carries_the_exit_reason(two_nodes):
    n1, n2, _ = two_nodes
    trap_exits(True)
    pid = spawn(waiter, node="n2")
    link(pid)
    barrier()
    exit(pid, "boom")
    assert receive(timeout=5) == Exit(pid, "boom")
    assert n1.peer_edges("n2") == (0, 0, 0)
    assert n2.peer_edges("n1") == (0, 0, 0)


def test_a_crash_across_nodes_keeps_the_exception_as_reason(two_nodes):
    error = RuntimeError("remote crash")

    def crash():
        receive()
        raise error

    pid = spawn(crash, node="n2")
    ref = monitor(pid)
    send(pid, "go")
    assert down_of(ref).reason is error


def test_spawn_link_across_nodes_is_installed_on_both_sides(two_nodes):
    n1, n2, _ = two_nodes
    trap_exits(True)
    pid = spawn_link(exit, "instant", node="n2")
    assert pid.node == "n2"
    assert receive(timeout=5) == Exit(pid, "instant")
    assert n1.peer_edges("n2") == (0, 0, 0)


def test_spawn_monitor_across_nodes(two_nodes):
    pid, ref = spawn_monitor(exit, "gone", node="n2")
    assert down_of(ref) == Down(ref, pid, "gone")


def test_linking_to_a_dead_remote_pid_gives_noproc(two_nodes):
    pid, ref = spawn_monitor(lambda: None, node="n2")
    down_of(ref)
    trap_exits(True)
    link(pid)
    assert receive(timeout=5) == Exit(pid, "noproc")


def test_monitoring_a_dead_remote_pid_and_a_missing_remote_name_gives_noproc(two_nodes):
    pid, ref = spawn_monitor(lambda: None, node="n2")
    down_of(ref)
    ref2 = monitor(pid)
    assert down_of(ref2) == Down(ref2, pid, "noproc")
    ref3 = monitor(("nobody", "n2"))
    assert down_of(ref3) == Down(ref3, ("nobody", "n2"), "noproc")


def test_monitor_by_name_across_nodes_reports_the_name(two_nodes):
    pid = spawn(waiter, node="n2")
    register("w", pid)
    ref = monitor(("w", "n2"))
    send(pid, "go")
    assert down_of(ref) == Down(ref, ("w", "n2"), "normal")


def test_demonitor_across_nodes_prevents_the_down_and_clears_bookkeeping(two_nodes):
    n1, n2, _ = two_nodes
    pid = spawn(waiter, node="n2")
    ref = monitor(pid)
    barrier()
    assert n1.peer_edges("n2") == (0, 1, 0) and n2.peer_edges("n1") == (0, 0, 1)
    demonitor(ref)
    barrier()
    assert n1.peer_edges("n2") == (0, 0, 0) and n2.peer_edges("n1") == (0, 0, 0)
    send(pid, "go")
    down_of(monitor(pid))  # pid is gone now
    with pytest.raises(ReceiveTimeout):
        down_of(ref, timeout=0)


def test_call_across_nodes(two_nodes):
    class Doubler(GenServer):
        def handle_call(self, request, caller):
            return request * 2

    result = {}

    def starter():
        result["pid"] = Doubler.start()

    _, ref = spawn_monitor(starter, node="n2")
    down_of(ref)
    assert call(result["pid"], 21) == 42


def test_stopping_a_node_signals_its_remote_links_with_shutdown(two_nodes):
    n1, n2, _ = two_nodes
    trap_exits(True)
    pid = spawn(waiter, node="n2")
    link(pid)
    ref = monitor(pid)
    barrier()
    n2.stop()
    assert receive(lambda m: isinstance(m, Exit), timeout=5) == Exit(pid, "shutdown")
    assert down_of(ref).reason == "shutdown"


# -- losing a node --------------------------------------------------------------------------------


def test_node_down_fires_every_link_and_monitor_once_with_noconnection(two_nodes):
    n1, n2, net = two_nodes
    trap_exits(True)
    remote = [spawn(waiter, node="n2") for _ in range(3)]
    for pid in remote[:2]:
        link(pid)
    refs = [monitor(pid) for pid in remote[1:]]
    by_name = spawn(waiter, node="n2")
    register("named", by_name)
    name_ref = monitor(("named", "n2"))

    # and a process on n2 monitoring and linked to a local one
    local = spawn(waiter)

    def remote_watcher(parent):
        monitor(local)
        link(local)
        send(parent, "watching")  # arrives after the link and monitor did
        receive()

    watcher = spawn(remote_watcher, self_pid(), node="n2")
    assert receive(timeout=5) == "watching"
    barrier()
    assert n1.peer_edges("n2") == (3, 3, 1)

    bystander = spawn(waiter)  # linked to nothing remote: untouched
    local_ref = monitor(local)
    net.disconnect(n1, n2)

    exits = [receive(lambda m: isinstance(m, Exit), timeout=5) for _ in range(2)]
    assert sorted(exits, key=lambda e: e.pid) == [Exit(p, "noconnection") for p in sorted(remote[:2])]
    downs = [down_of(r) for r in refs]
    assert [(d.pid, d.reason) for d in downs] == [(p, "noconnection") for p in remote[1:]]
    assert down_of(name_ref) == Down(name_ref, ("named", "n2"), "noconnection")
    # the local process linked from n2 died of noconnection
    assert down_of(local_ref).reason == "noconnection"
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, (Exit, Down)), timeout=0)
    assert n1.peer_edges("n2") == (0, 0, 0)
    assert n2.peer_edges("n1") == (0, 0, 0)
    assert n1.lookup(bystander) is not None
    # n2's side fired too: the watcher died of noconnection
    watcher_proc = n2.lookup(watcher)
    assert watcher_proc is None or watcher_proc.killed
    # firing again does nothing
    n1.on_node_down("n2")
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, (Exit, Down)), timeout=0)


def test_a_disconnected_node_is_unreachable(two_nodes):
    n1, n2, net = two_nodes
    pid = spawn(echo, node="n2")
    net.disconnect(n1, n2)
    send(pid, (self_pid(), "lost"))  # dropped
    ref = monitor(pid)
    assert down_of(ref) == Down(ref, pid, "noconnection")
    trap_exits(True)
    link(pid)
    assert receive(timeout=0) == Exit(pid, "noconnection")
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0)


# -- not distributed ---------------------------------------------------------------------------------


def test_without_distribution_another_node_is_unreachable():
    LocalNode.start("n1")
    far = Pid("far", 1, 1)
    send(far, "dropped")
    ref = monitor(far)
    assert receive(timeout=0) == Down(ref, far, "noconnection")
    trap_exits(True)
    link(far)
    assert receive(timeout=0) == Exit(far, "noconnection")


def test_without_distribution_a_link_to_another_node_ends_a_non_trapping_caller():
    LocalNode.start("n1")
    with pytest.raises(ProcessExit) as info:
        link(Pid("far", 1, 1))
    assert info.value.reason == "noconnection"


# -- remote spawn is delegated -------------------------------------------------------------------------


class RecordingRemote:
    def __init__(self):
        self.calls = []

    def spawn(self, node_name, fn, args, kwargs, link, monitor):
        self.calls.append((node_name, fn, args, kwargs, link, monitor))
        return Pid(node_name, 5, 77)

    def __getattr__(self, name):
        def accept(*args):
            self.calls.append((name, *args))
            return True

        return accept


def test_spawn_on_a_remote_node_goes_to_the_distribution_layer():
    node = LocalNode.start("n1")
    remote = node.remote = RecordingRemote()
    trap_exits(True)
    pid = spawn_link(print, "x", node="far", end="")
    assert pid == Pid("far", 5, 77)
    node_name, fn, args, kwargs, link_to, watch = remote.calls[0]
    assert (node_name, fn, args, kwargs, link_to, watch) == ("far", print, ("x",), {"end": ""}, self_pid(), None)
    assert node.peer_edges("far") == (1, 0, 0)
    pid2, ref = spawn_monitor(print, node="far")
    assert isinstance(ref, Ref) and remote.calls[1][5] == (self_pid(), ref)
    assert node.peer_edges("far") == (1, 1, 0)
    node.on_node_down("far")
    assert receive(timeout=0) == Exit(pid, "noconnection")
    assert receive(timeout=0) == Down(ref, pid2, "noconnection")
    assert node.peer_edges("far") == (0, 0, 0)
