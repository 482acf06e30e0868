"""The receive a call ends with: the Reply or Down tagged with the call's
ref, passing over what was queued before the call (Erlang's ref receive),
and leaving every other message where it was."""

from __future__ import annotations

import gevent
import pytest
from gevent.hub import get_hub

from paxtor.actors import GenServer, ReceiveTimeout, call, receive, self_pid, send
from paxtor.actors.ids import Ref
from paxtor.actors.mailbox import Mailbox
from paxtor.actors.messages import Down, Reply


class Peeking:
    """A message that records whether anyone looked at its class."""

    looked = 0

    @property  # type: ignore[misc]
    def __class__(self):  # the receive looks at m.__class__ first
        Peeking.looked += 1
        return Peeking


def mailbox() -> Mailbox:
    return Mailbox(gevent.getcurrent(), get_hub())


REF, OTHER = Ref("n", 1, 7), Ref("n", 1, 8)


def test_the_answer_is_taken_and_everything_else_keeps_its_order() -> None:
    box = mailbox()
    for msg in ("a", Reply(OTHER, 0), Down(OTHER, None, "x"), "b"):
        box.put(msg)
    box.put(Reply(Ref("n", 1, 7), "answer"))  # an equal ref, not the same object: it matches
    box.put("c")
    assert box.receive_answer(REF, timeout=0) == Reply(REF, "answer")
    assert list(box) == ["a", Reply(OTHER, 0), Down(OTHER, None, "x"), "b", "c"]


def test_a_down_for_the_ref_is_an_answer_too() -> None:
    box = mailbox()
    box.put("a")
    box.put(Down(REF, None, "noproc"))
    assert box.receive_answer(REF, timeout=0) == Down(REF, None, "noproc")
    assert list(box) == ["a"]


def test_messages_queued_before_the_mark_are_not_looked_at() -> None:
    box = mailbox()
    Peeking.looked = 0
    older = [Peeking() for _ in range(5)]
    for msg in older:
        box.put(msg)
    box.put(Reply(REF, "stale"))  # queued before the mark: not the answer, even with the ref
    mark = box.mark()
    box.put(Reply(REF, "fresh"))
    assert box.receive_answer(REF, timeout=0, after=mark) == Reply(REF, "fresh")
    assert Peeking.looked == 0
    assert list(box) == [*older, Reply(REF, "stale")]


def test_a_timeout_leaves_the_mailbox_as_it_was() -> None:
    box = mailbox()
    box.put("a")
    box.put(Reply(OTHER, 1))
    with pytest.raises(ReceiveTimeout):
        box.receive_answer(REF, timeout=0.01)
    assert list(box) == ["a", Reply(OTHER, 1)]


class Echo(GenServer):
    def handle_call(self, request, caller):
        return request


def test_a_call_made_with_a_full_mailbox_gets_its_reply_and_keeps_the_rest() -> None:
    server = Echo.start()
    me = self_pid()
    for i in range(100):
        send(me, ("queued", i))
    assert call(server, "hello") == "hello"
    assert [receive(timeout=0) for _ in range(100)] == [("queued", i) for i in range(100)]
