"""Group commit's reply ordering: a reply waits for its own record, else for the later of its
key's and the promise floor's pending records, else goes out at once."""

from __future__ import annotations

from paxtor.paxos.acceptor import KeyRecord, MemberState, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Register
from paxtor.paxos.reply_order import FLOOR, MEMBER, ReplyOrder
from paxtor.paxos.voter_config import VoterConfig

K, J = ("b", "k"), ("b", "j")


def key_record(key: str) -> KeyRecord:
    return KeyRecord("b", key, Ballot(1, ("n", 1)), Ballot(1, ("n", 1)), Register.empty().claim(1))


def test_a_reply_with_nothing_pending_goes_at_once_and_one_with_a_record_waits_for_it():
    order = ReplyOrder()
    assert order.waiting_for(K, None) is None
    record = key_record("k")
    waiting = order.waiting_for(K, record)
    assert waiting == []
    waiting.append("promise k")
    order.appended(order.slot_of(record, K), waiting)
    assert order.pending(K) and not order.pending(J)
    assert order.waiting_for(J, None) is None  # another key does not wait
    later = order.waiting_for(K, None)
    assert later is waiting  # a later reply on the key queues behind its record
    later.append("accepted k")
    assert order.durable(K, waiting) == ["promise k", "accepted k"]
    assert not order.pending(K) and order.waiting_for(K, None) is None


def test_a_reply_waits_for_the_later_of_its_keys_record_and_the_floor():
    order = ReplyOrder()
    on_key: list[str] = []
    order.appended(K, on_key)
    floor = PromiseFloor(1 << 32)
    assert order.slot_of(floor, J) == FLOOR
    on_floor: list[str] = []
    order.appended(FLOOR, on_floor)
    assert order.waiting_for(K, None) is on_floor  # appended after the key's record
    assert order.waiting_for(J, None) is on_floor  # every promise may depend on the floor
    order.durable(FLOOR, on_floor)
    assert order.waiting_for(K, None) is on_key
    assert order.latest([K, FLOOR]) is on_key


def test_a_superseded_tail_stays_until_the_latest_record_of_its_slot_is_durable():
    order = ReplyOrder()
    first: list[str] = []
    second: list[str] = []
    order.appended(K, first)
    order.appended(K, second)
    order.durable(K, first)  # the older record: the key still has one pending
    assert order.pending(K) and order.after(K) is second
    order.durable(K, second)
    assert not order.pending(K) and order.after(K) is None
    member = MemberState("c", VoterConfig.initial(("n",)), True)
    assert order.slot_of(member, K) == MEMBER
    order.appended(MEMBER, [])
    order.clear()
    assert not order.pending(MEMBER)
