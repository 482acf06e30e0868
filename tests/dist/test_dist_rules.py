"""The pure parts of distribution: numbered discovery, the one-connection
rule, backoff, and function references for remote spawn."""

from __future__ import annotations

import random

import pytest

from paxtor.actors import dist_protocol as proto
from paxtor.actors.discovery import Target, dial_targets, listen_port, node_number, numbered_name, parse_seed
from paxtor.actors.function_ref import FunctionRefError, function_ref, resolve_function_ref
from paxtor.actors.gen_server import Call, Caller, Cast, GenServer
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.messages import Reply
from paxtor.actors.wire import RemoteError, decode, encode
from paxtor.actors.peer_rules import Backoff, ConnectionInfo, admission, keeps_new

from . import remote_helpers


# -- discovery -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, number", [("node1", 1), ("node42", 42), ("node0", None), ("node01", None),
                                          ("nodeX", None), ("alice", None), ("node1a", None)])
def test_node_numbers(name, number):
    assert node_number(name) == number


def test_listen_ports():
    assert listen_port("node3", 4370) == 4373
    assert listen_port("node3", 4370, port=9000) == 9000
    assert listen_port("client", 4370) == 0
    with pytest.raises(ValueError, match="base_port"):
        listen_port("node1", 70000)
    with pytest.raises(ValueError):
        numbered_name(0)


@pytest.mark.parametrize("seed, address", [("10.0.0.1:4371", ("10.0.0.1", 4371)), (" h:1 ", ("h", 1)),
                                           ("[::1]:4372", ("::1", 4372)), (("h", 5), ("h", 5))])
def test_seeds_parse(seed, address):
    assert parse_seed(seed) == address


@pytest.mark.parametrize("seed", ["host", "host:", ":4371", "host:port", "host:99999", 4371, ("h",)])
def test_bad_seeds_are_refused_clearly(seed):
    with pytest.raises(ValueError, match="seed"):
        parse_seed(seed)


def test_dial_targets_are_the_numbered_peers_then_the_seeds_without_self_or_duplicates():
    targets = dial_targets(
        "node2", ("127.0.0.1", 4372), host="127.0.0.1", base_port=4370, cluster_size=3,
        seeds=["127.0.0.1:4371", "127.0.0.1:4372", "10.0.0.9:5000", "10.0.0.9:5000"],
    )
    assert targets == [
        Target("127.0.0.1", 4371, "node1"),
        Target("127.0.0.1", 4373, "node3"),
        Target("10.0.0.9", 5000, None, seed=True),
    ]
    assert dial_targets("x", None, host="h", base_port=1, cluster_size=0) == []


# -- one connection per pair ----------------------------------------------------------------------------


def test_admission_refuses_a_duplicate_and_admits_a_restarted_peer():
    base = dict(local_name="node2", peer_name="node1", peer_incarnation=5, dialing=False)
    assert admission(**base, up_incarnation=None) == (True, None)
    assert admission(**base, up_incarnation=5) == (False, "already_connected")
    assert admission(**base, up_incarnation=7) == (False, "stale_incarnation")
    admit, why = admission(**base, up_incarnation=4)
    assert admit and why.startswith("peer_restarted")


def test_admission_on_a_simultaneous_connect_keeps_the_smaller_names_connection():
    # we are node1, dialing node2, and node2's connection arrives: ours wins
    assert admission(local_name="node1", peer_name="node2", peer_incarnation=1, up_incarnation=None,
                     dialing=True) == (False, "simultaneous_connect")
    # we are node2, dialing node1, and node1's connection arrives: theirs wins
    assert admission(local_name="node2", peer_name="node1", peer_incarnation=1, up_incarnation=None,
                     dialing=True) == (True, None)


def test_both_ends_keep_the_same_one_of_two_connections():
    by_a = ConnectionInfo(1, "a")
    by_b = ConnectionInfo(1, "b")
    assert keeps_new(by_b, by_a) and not keeps_new(by_a, by_b)  # whichever came up first
    assert keeps_new(ConnectionInfo(1, "a"), ConnectionInfo(2, "b"))  # a newer incarnation
    assert not keeps_new(ConnectionInfo(2, "b"), ConnectionInfo(1, "a"))
    assert not keeps_new(by_a, ConnectionInfo(1, "a"))  # same initiator: keep the one in use


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets():
    backoff = Backoff(0.1, 0.8, rng=random.Random(3))
    delays = [backoff.next() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(0, 1)


# -- function references -------------------------------------------------------------------------------


class Server(GenServer):
    @classmethod
    def starter(cls) -> None:
        pass


def test_module_level_functions_and_class_attributes_travel():
    assert function_ref(remote_helpers.waiter) == "dist.remote_helpers:waiter"
    assert resolve_function_ref("dist.remote_helpers:waiter") is remote_helpers.waiter
    ref = function_ref(Server.starter)
    assert ref.endswith(":Server.starter")
    assert resolve_function_ref(ref) == Server.starter
    assert resolve_function_ref(function_ref(print)) is print


def test_what_cannot_travel_is_refused_with_a_reason():
    def nested() -> None:
        pass

    for fn, reason in [(lambda: None, "top level"), (nested, "top level"), (object(), "no module")]:
        with pytest.raises(FunctionRefError, match=reason):
            function_ref(fn)  # type: ignore[arg-type]
    main_fn = type(nested)(nested.__code__, {})
    main_fn.__module__, main_fn.__qualname__ = "__main__", "fn"
    with pytest.raises(FunctionRefError, match="__main__"):
        function_ref(main_fn)
    shadow = type(nested)(nested.__code__, {})
    shadow.__qualname__ = "waiter"
    shadow.__module__ = "dist.remote_helpers"
    with pytest.raises(FunctionRefError, match="another object"):
        function_ref(shadow)


@pytest.mark.parametrize("ref, message", [
    ("nope", "malformed"), ("no_such_module_here:f", "cannot import"),
    ("dist.remote_helpers:nothing", "has no 'nothing'"), ("dist.remote_helpers:__doc__", "not callable"),
])
def test_bad_references_are_refused_on_the_receiving_side(ref, message):
    with pytest.raises(FunctionRefError, match=message):
        resolve_function_ref(ref)


# -- frames ---------------------------------------------------------------------------------------

A = "nodeA"  # the sender
B = "nodeB"  # the receiver
a_pid, a_ref = Pid(A, 7, 1), Ref(A, 7, 2)
b_pid, b_ref = Pid(B, 9, 3), Ref(B, 9, 4)


class Recorder:
    """A SignalSink that records the deliver_* calls made on it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        if not name.startswith("deliver_") and name != "end_monitor":
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def through_wire(frame: tuple) -> tuple:
    """What B does with a frame A encoded: the deliver_* call(s) made, or
    the (operation, arguments) handed back."""
    sink = Recorder()
    control = proto.apply_frame(decode(encode(frame)), A, B, sink)
    if control is not None:
        assert sink.calls == []
        return control
    return sink.calls[0] if len(sink.calls) == 1 else tuple(sink.calls)


@pytest.mark.parametrize("frame, expected", [
    (proto.message_frame(A, b_pid, {"any": ("thing",)}), ("deliver_message", (b_pid, {"any": ("thing",)}))),
    (proto.message_frame(A, b_pid, Call(Caller(a_pid, a_ref), "req")),
     ("deliver_message", (b_pid, Call(Caller(a_pid, a_ref), "req")))),
    (proto.message_frame(A, b_pid, Reply(b_ref, [1])), ("deliver_message", (b_pid, Reply(b_ref, [1])))),
    (proto.message_frame(A, b_pid, Cast(("c",))), ("deliver_message", (b_pid, Cast(("c",))))),
    (proto.named_message_frame(A, "srv", Call(Caller(a_pid, a_ref), 1)),
     ("deliver_named", ("srv", B, Call(Caller(a_pid, a_ref), 1)))),
    (proto.named_message_frame(A, "srv", Cast(2)), ("deliver_named", ("srv", B, Cast(2)))),
    (proto.named_message_frame(A, "srv", "hi"), ("deliver_named", ("srv", B, "hi"))),
    (proto.link_frame(A, a_pid, b_pid), ("deliver_link", (a_pid, b_pid))),
    (proto.unlink_frame(A, a_pid, b_pid), ("deliver_unlink", (a_pid, b_pid))),
    (proto.exit_frame(A, a_pid, b_pid, ValueError("x"), True),
     ("deliver_exit", (a_pid, b_pid, RemoteError("builtins.ValueError", "x"), True))),
    (proto.monitor_frame(A, a_pid, b_pid, a_ref), ("deliver_monitor", (a_pid, b_pid, a_ref))),
    (proto.monitor_frame(A, a_pid, ("srv", B), a_ref), ("deliver_monitor", (a_pid, ("srv", B), a_ref))),
    (proto.demonitor_frame(A, a_pid, b_pid, a_ref), ("deliver_demonitor", (a_pid, b_pid, a_ref))),
    (proto.demonitor_frame(A, a_pid, ("srv", B), a_ref), ("deliver_demonitor", (a_pid, ("srv", B), a_ref))),
    (proto.down_frame(A, b_pid, b_ref, a_pid, "gone"), ("deliver_down", (b_pid, b_ref, a_pid, "gone"))),
    (proto.down_frame(A, b_pid, b_ref, ("srv", A), "gone"), ("deliver_down", (b_pid, b_ref, ("srv", A), "gone"))),
    (proto.spawn_frame(A, 5, "m:f", (1,), {"k": 2}, a_pid, a_pid, a_ref),
     ("spawn", (5, "m:f", (1,), {"k": 2}, a_pid, (a_pid, a_ref)))),
    (proto.spawn_frame(A, 6, "m:f", (), {}, None, None, None), ("spawn", (6, "m:f", (), {}, None, None))),
    (proto.spawn_reply_frame(A, 5, a_pid, None), ("spawn_reply", (5, a_pid, None))),
    (proto.spawn_reply_frame(A, 5, None, "no such function"), ("spawn_reply", (5, None, "no such function"))),
    (proto.goodbye_frame("node_stopping"), ("goodbye", ("node_stopping",))),
])
def test_every_frame_decodes_to_the_call_it_stands_for(frame, expected):
    assert through_wire(frame) == expected


def test_a_monitor_and_its_call_in_one_frame():
    call = Call(Caller(a_pid, a_ref), ("get", 1))
    assert through_wire(proto.call_monitor_frame(b_pid, call)) == (
        "deliver_call_monitor", (call.caller, b_pid.incarnation, b_pid.serial, call.request))
    assert through_wire(proto.call_monitor_frame(("srv", B), call)) == (
        ("deliver_monitor", (a_pid, ("srv", B), a_ref)), ("deliver_named", ("srv", B, call)))


def test_a_reply_that_ends_the_callers_monitor():
    assert through_wire(proto.reply_demonitored_frame(A, b_pid, Reply(b_ref, [5]))) == (
        "deliver_reply_demonitored", (b_pid.incarnation, b_pid.serial, b_ref, [5]))
    with pytest.raises(proto.NotFromHere):
        proto.reply_demonitored_frame(A, b_pid, Reply(a_ref, 0))


def test_a_call_or_reply_of_a_third_node_travels_whole():
    third = Pid("nodeC", 1, 1)
    frame = proto.message_frame(A, b_pid, Call(Caller(third, Ref("nodeC", 1, 2)), "req"))
    assert frame[0] == proto.SEND
    assert through_wire(frame) == ("deliver_message", (b_pid, Call(Caller(third, Ref("nodeC", 1, 2)), "req")))
    assert proto.message_frame(A, b_pid, Reply(Ref("nodeC", 1, 2), 0))[0] == proto.SEND


def test_the_sender_side_of_a_signal_must_be_of_this_node():
    with pytest.raises(proto.NotFromHere):
        proto.link_frame(A, b_pid, b_pid)
    with pytest.raises(proto.NotFromHere):
        proto.monitor_frame(A, a_pid, b_pid, b_ref)
    with pytest.raises(proto.NotFromHere):
        proto.down_frame(A, b_pid, b_ref, ("srv", B), "x")


@pytest.mark.parametrize("frame", [
    "text", (), (0,), (99, 1), (-1, "x"), ("1", 2), (True, 1), (1, 2), (8, "7", 1, 9, 3), (8, 7, 1, 9),
    (11, 7, 1, 9, 3, 7, None), (2, 5, "msg"), (17, 1, "m:f", [1], {}, None, None, None, None, None, None),
    (17, 1, "m:f", (), {1: 2}, None, None, None, None, None, None), (18, 1, "3", 4, None),
])
def test_anything_else_is_a_protocol_error(frame):
    with pytest.raises(proto.ProtocolError):
        proto.apply_frame(frame, A, B, Recorder())
