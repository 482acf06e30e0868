"""The remote GenServer call's own path (`LocalNode.deliver_call` and
`NodeTransport.call`: the monitor and the Call as one frame): the cases off
the hot path keep the semantics of a monitor followed by a message."""

from __future__ import annotations

import pytest

from paxtor.actors import GenServer, call, self_pid
from paxtor.actors.distribution import start_distributed
from paxtor.actors.messages import CallError, NoProc
from paxtor.actors.primitives import is_alive

from . import remote_helpers as rh
from .conftest import PAIR_SETTINGS as FAST
from .conftest import WAIT

def test_an_unencodable_request_raises_in_the_caller_and_leaves_nothing_behind(pair):
    n1, n2 = pair
    pid = n2.run(rh.start_echo_server)
    with pytest.raises(TypeError, match="cannot encode"):
        call(pid, ("bad", object()))
    with pytest.raises(TypeError, match="cannot encode"):
        call(("nobody", "node2"), object())
    assert call(pid, "fine") == ("echo", "fine")  # the connection is still up and in order
    assert n1.local.lookup(self_pid()).monitors == {}
    assert n1.local.peer_edges("node2") == (0, 0, 0)
    assert n2.local.peer_edges("node1") == (0, 0, 0)  # the lone monitor was dropped again


def test_a_call_to_a_node_that_is_not_connected_raises_noconnection():
    start_distributed("node1", port=0, **FAST)
    with pytest.raises(CallError) as info:
        call(("anyone", "elsewhere"), "hello?")
    assert info.value.reason == "noconnection"


def test_a_call_made_while_the_connection_is_being_made_is_answered():
    n1 = start_distributed("node1", port=0, **FAST)
    n1.run(rh.start_echo_server, "early_echo")
    n2 = start_distributed("node2", port=0, seeds=[f"127.0.0.1:{n1.port}"], **FAST)

    def early_caller() -> object:  # runs before node2's connection to node1 is up
        assert "node1" not in n2.nodes() and n2.peers.reaching("node1")
        return call(("early_echo", "node1"), "first")

    assert n2.run(early_caller, timeout=WAIT) == ("echo", "first")
    assert n2.local.peer_edges("node1") == (0, 0, 0)


def test_genserver_stop_reaches_a_server_on_another_node(pair):
    _, n2 = pair
    n2.run(rh.start_echo_server, "remote_echo")
    pid = call(("remote_echo", "node2"), "pid_and_node")[0]
    GenServer.stop(("remote_echo", "node2"), ("shutdown", "moved"))
    assert n2.run(is_alive, pid) is False
    with pytest.raises(NoProc):
        GenServer.stop(pid)
