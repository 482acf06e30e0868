"""The flat frames of Paxos requests and replies survive the wire, and malformed ones are refused."""

from __future__ import annotations

import pytest

from paxtor.actors.ids import Pid
from paxtor.actors.wire import decode, encode
from paxtor.paxos.acceptor import Accept, Accepted, Nack, Prepare, Promise
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Binding, LeaseFence, Register
from paxtor.paxos.wire_format import pack_reply, pack_request, unpack_reply, unpack_request

SENDER = Pid("node1", 3, 42)
BALLOT = Ballot(7, ("node1", 3))
FENCE = LeaseFence(4, Binding(pid=Pid("node2", 1, 9)))
FENCED = Register(4, False, None, None, (FENCE,), (("node1", 3, 17), ("node2", 1, 5)))


def through_the_wire(flat: tuple) -> tuple:
    return decode(encode(flat))


@pytest.mark.parametrize(
    "msg",
    [
        Prepare("locks", ("k", 1), BALLOT),
        Prepare("locks", "k", BALLOT, FENCE),
        Accept("locks", "k", BALLOT, Register(1, True, {"v": [1]}, Binding(node="node2")), None),
        Accept("locks", "k", BALLOT, FENCED, Ballot(8, ("node1", 3))),
    ],
    ids=["prepare", "fenced-prepare", "accept", "accept-1rtt-fenced"],
)
def test_requests_round_trip(msg) -> None:
    assert unpack_request(through_the_wire(pack_request(SENDER, msg))) == (SENDER, msg)


@pytest.mark.parametrize(
    "msg",
    [
        Promise("b", "k", BALLOT, Ballot(2, ("node2", 1)), FENCED),
        Accepted("b", "k", BALLOT, True),
        Nack("b", "k", BALLOT, Ballot(9, ("node3", 1)), "lease_veto"),
    ],
)
def test_replies_round_trip(msg) -> None:
    assert unpack_reply(through_the_wire(pack_reply("node2", msg))) == ("node2", msg)


def test_a_prepare_with_something_else_than_a_fence_is_refused() -> None:
    flat = pack_request(SENDER, Prepare("b", "k", BALLOT)) + ("not a fence",)
    with pytest.raises(ValueError, match="malformed"):
        unpack_request(flat)


def test_op_marks_must_be_name_incarnation_op() -> None:
    flat = list(pack_reply("node2", Promise("b", "k", BALLOT, BALLOT, FENCED)))
    flat[-1] = (("node1", "3", 17),)
    with pytest.raises(ValueError, match="op marks"):
        unpack_reply(tuple(flat))
