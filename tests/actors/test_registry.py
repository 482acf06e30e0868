"""Registered names and Via names, with Erlang's registration rules."""

from __future__ import annotations

import pytest

from paxtor.actors import (
    Down,
    Pid,
    Via,
    monitor,
    receive,
    register,
    self_pid,
    send,
    spawn,
    spawn_monitor,
    unregister,
    whereis,
)
from paxtor.actors.messages import NoProc
from paxtor.actors.node import LocalNode, current_node
from paxtor.actors.registry import registered_name, resolve
from paxtor.testing import DictVia


def down_of(ref, timeout=5):
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def waiter():
    receive()


def forwarder(to):
    while True:
        send(to, ("got", receive()))


def test_register_whereis_send_unregister():
    pid = spawn(forwarder, self_pid())
    register("fwd", pid)
    assert whereis("fwd") == pid
    assert registered_name(pid) == "fwd"
    send("fwd", 1)
    assert receive(timeout=5) == ("got", 1)
    unregister("fwd")
    assert whereis("fwd") is None
    assert registered_name(pid) is None


def test_a_name_is_freed_when_its_process_exits():
    pid = spawn(waiter)
    register("w", pid)
    ref = monitor(pid)
    send(pid, "go")
    down_of(ref)
    assert whereis("w") is None
    other = spawn(waiter)
    register("w", other)  # the name can be taken again
    assert whereis("w") == other


def test_a_name_is_held_by_one_process():
    a, b = spawn(waiter), spawn(waiter)
    register("x", a)
    with pytest.raises(ValueError, match="already registered"):
        register("x", b)
    assert whereis("x") == a


def test_a_process_holds_at_most_one_name():
    a = spawn(waiter)
    register("one", a)
    with pytest.raises(ValueError, match="already has the name"):
        register("two", a)
    with pytest.raises(ValueError, match="already registered"):
        register("one", a)
    assert whereis("two") is None


def test_registering_a_dead_process_fails_clearly():
    pid, ref = spawn_monitor(lambda: None)
    down_of(ref)
    with pytest.raises(NoProc):
        register("dead", pid)
    assert whereis("dead") is None


def test_registering_a_process_of_an_unknown_node_fails_clearly():
    with pytest.raises(ValueError, match="not running"):
        register("far", Pid("far", 1, 1))


def test_bad_names_and_unknown_names():
    pid = spawn(waiter)
    with pytest.raises(TypeError):
        register(42, pid)
    with pytest.raises(TypeError):
        register("", pid)
    with pytest.raises(ValueError, match="not registered"):
        unregister("never")


def test_send_to_an_unregistered_local_name_raises_noproc():
    with pytest.raises(NoProc):
        send("nobody", "hi")
    send(("nobody", current_node().name), "hi")  # {Name, Node} ! Msg never fails (erlang:send/2)


def test_send_to_a_name_node_tuple_on_this_node():
    pid = spawn(forwarder, self_pid())
    register("fwd", pid)
    send(("fwd", current_node().name), "tuple")
    assert receive(timeout=5) == ("got", "tuple")


def test_names_are_per_node():
    LocalNode.start("n1")
    n2 = LocalNode.start("n2")
    pid = spawn(waiter, node="n2")
    register("only_on_n2", pid)
    assert whereis("only_on_n2") is None  # the current node is n1
    assert whereis(("only_on_n2", "n2")) == pid
    assert n2.names["only_on_n2"].pid == pid


def test_via_registration_lookup_and_send():
    names = DictVia()
    pid = spawn(forwarder, self_pid())
    via = Via(names, "key")
    assert names.register_name("key", pid)
    assert whereis(via) == pid
    assert resolve(via) == pid
    send(via, "through via")
    assert receive(timeout=5) == ("got", "through via")


def test_via_needs_the_whole_protocol():
    class Incomplete:
        def whereis_name(self, key):
            return None

    with pytest.raises(TypeError, match="register_name"):
        Via(Incomplete(), "k")


def test_resolve_every_kind_of_destination():
    pid = spawn(waiter)
    register("r", pid)
    node = current_node().name
    assert resolve(pid) == pid
    assert resolve("r") == pid
    assert resolve(("r", node)) == pid
    assert resolve(("r", "elsewhere")) == ("r", "elsewhere")
    assert resolve("missing") is None
    with pytest.raises(TypeError):
        resolve(3.14)
    with pytest.raises(TypeError):
        resolve(("too", "many", "parts"))
