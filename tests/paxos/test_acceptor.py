"""The pure acceptor: promises, accepts, durability records, the promise floor, the lease veto, 1-RTT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxtor.actors.ids import Pid
from paxtor.actors.wire import decode, encode
from paxtor.paxos.acceptor import (
    FLOOR_STRIDE,
    NACK_BALLOT,
    NACK_LEASE_VETO,
    Accept,
    Accepted,
    Acceptor,
    Collected,
    KeyRecord,
    Nack,
    Prepare,
    Promise,
    PromiseFloor,
)
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import Heartbeat, SilenceTracker, silence_threshold
from paxtor.paxos.register import Binding, LeaseFence, Register

B, K = "default", "key"
A1, A2, A3 = (Ballot(1, ("n1", 1)), Ballot(2, ("n2", 1)), Ballot(3, ("n1", 1)))
THRESHOLD = silence_threshold(1.0, 1.0, 0.25)  # 4.25, exact in binary
OWNER = Pid("n2", 4, 7)
FENCED = Register(epoch=1, lease_fences=(LeaseFence(1, Binding(pid=OWNER)),))


def acceptor(now: float = 0.0, records: list[KeyRecord | PromiseFloor] | None = None) -> Acceptor:
    return Acceptor(("n1", 1), SilenceTracker(THRESHOLD, started_at=now), records or [], voting=True)


@pytest.mark.parametrize(
    ("promised_first", "then", "reply_type", "raises_floor"),
    [
        (None, A1, Promise, True),  # the acceptor's first promise: the floor rises above it
        (A1, A2, Promise, False),  # higher ballot, below the floor: promised in memory
        (A2, A2, Promise, False),  # the same ballot again (a duplicate)
        (A2, A1, Nack, False),  # lower ballot refused
    ],
)
def test_prepare(promised_first: Ballot | None, then: Ballot, reply_type: type, raises_floor: bool) -> None:
    acc = acceptor()
    if promised_first is not None:
        acc.on_prepare(Prepare(B, K, promised_first))
    reply, record = acc.on_prepare(Prepare(B, K, then))
    assert type(reply) is reply_type
    assert record == (PromiseFloor(then.counter + FLOOR_STRIDE) if raises_floor else None)
    if isinstance(reply, Nack):
        assert reply.promised == promised_first and reply.reason == NACK_BALLOT
        assert acc.state(B, K).promised == promised_first  # a refusal changes nothing


def test_promise_reports_the_last_accepted_value() -> None:
    acc = acceptor()
    v = Register.empty().claim("v")
    acc.on_prepare(Prepare(B, K, A1))
    acc.on_accept(Accept(B, K, A1, v), now=0.0)
    reply, _ = acc.on_prepare(Prepare(B, K, A2))
    assert reply == Promise(B, K, A2, A1, v)


@pytest.mark.parametrize(
    ("promised", "accept_at", "ok"),
    [
        (None, A1, True),
        (A1, A1, True),  # the ballot it promised
        (A1, A2, True),  # a higher one, without phase 1 here (another quorum promised)
        (A2, A1, False),
    ],
)
def test_accept(promised: Ballot | None, accept_at: Ballot, ok: bool) -> None:
    acc = acceptor()
    if promised is not None:
        acc.on_prepare(Prepare(B, K, promised))
    v = Register.empty().claim("v")
    reply, record = acc.on_accept(Accept(B, K, accept_at, v), now=0.0)
    if ok:
        assert reply == Accepted(B, K, accept_at, False)
        assert record == KeyRecord(B, K, accept_at, accept_at, v)
    else:
        assert isinstance(reply, Nack) and record is None
        assert acc.state(B, K).accepted == Register.empty()


def test_duplicate_accept_is_idempotent_and_a_second_value_is_refused() -> None:
    acc = acceptor()
    v = Register.empty().claim("v")
    acc.on_accept(Accept(B, K, A1, v), now=0.0)
    reply, record = acc.on_accept(Accept(B, K, A1, v), now=0.0)
    assert isinstance(reply, Accepted) and record is None
    other = Register.empty().claim("w")
    reply, record = acc.on_accept(Accept(B, K, A1, other), now=0.0)
    assert isinstance(reply, Nack) and record is None
    assert acc.state(B, K).accepted == v


def test_accept_can_carry_the_promise_of_the_next_ballot() -> None:
    """CASPaxos 1-RTT: the proposer's next ballot is promised in the same step."""
    acc = acceptor()
    v = Register.empty().claim("v")
    reply, record = acc.on_accept(Accept(B, K, A1, v, next_ballot=A3), now=0.0)
    assert reply == Accepted(B, K, A1, True)
    assert record is not None and record.promised == A3 == acc.promised(B, K)
    # a ballot between the two is now refused: no one can sneak in before A3
    assert isinstance(acc.on_prepare(Prepare(B, K, A2))[0], Nack)
    # the proposer skips phase 1 with A3
    reply, _ = acc.on_accept(Accept(B, K, A3, v.with_value("w")), now=0.0)
    assert isinstance(reply, Accepted)


def test_records_rebuild_the_same_acceptor() -> None:
    """What a restarted acceptor replays from its log (last record per key wins)."""
    acc = acceptor()
    log: list[KeyRecord | PromiseFloor] = []
    v = Register.empty().claim("v")
    for step in (
        acc.on_prepare(Prepare(B, K, A1)),
        acc.on_accept(Accept(B, K, A1, v), now=0.0),
        acc.on_prepare(Prepare(B, "other", A2)),
        acc.on_prepare(Prepare(B, K, A3)),
    ):
        if step[1] is not None:
            log.append(decode(encode(step[1])))  # records travel as wire bytes
    restarted = acceptor(records=log)
    # promises made in memory only are not in the log: the replayed floor stands for them
    floor = acc.promise_floor
    assert restarted.restart_floor == floor == A1.counter + FLOOR_STRIDE
    above_all = Ballot(floor + 1, ("", 0))  # the lowest ballot above counter `floor`
    assert restarted.state(B, K) == KeyRecord(B, K, above_all, A1, v)
    assert restarted.state(B, "other").promised == above_all
    assert [restarted.promised(B, k) for k in (K, "other", "never seen")] == [above_all] * 3
    for ballot in (A2, A3, Ballot(floor, ("n9", 9))):
        for key in (K, "other", "never seen"):
            reply, _ = restarted.on_prepare(Prepare(B, key, ballot))
            assert reply == Nack(B, key, ballot, above_all)
    above = Ballot(floor + 1, ("n2", 1))
    reply, record = restarted.on_prepare(Prepare(B, K, above))
    assert reply == Promise(B, K, above, A1, v)
    assert record == PromiseFloor(above.counter + FLOOR_STRIDE)
    # a compacted log (the snapshot) rebuilds the same acceptor
    again = acceptor(records=[decode(encode(r)) for r in restarted.snapshot()])
    assert again.records() == restarted.records()
    assert again.restart_floor == restarted.promise_floor


def test_a_restarted_acceptor_never_breaks_a_promise_it_forgot() -> None:
    """Promises below the floor are not synced; after a restart every ballot at or under
    the floor is refused, so the accept of an older round cannot slip in."""
    acc = acceptor()
    _, floor = acc.on_prepare(Prepare(B, K, A1))
    acc.on_prepare(Prepare(B, K, A3))  # promised in memory, then the node crashes
    restarted = acceptor(records=[floor])
    reply, record = restarted.on_accept(Accept(B, K, A2, Register.empty().claim("late")), now=0.0)
    assert isinstance(reply, Nack) and reply.reason == NACK_BALLOT and record is None
    assert reply.promised.counter == floor.counter + 1  # the proposer fast-forwards past it
    # the 1-RTT promise travels with the accept's record: it survives without the floor
    reply, record = acc.on_accept(Accept(B, K, A3, Register.empty().claim("v"), next_ballot=A3.successor()), now=0.0)
    assert isinstance(reply, Accepted) and record.promised == A3.successor()


def test_the_floor_rises_only_when_a_prepare_passes_it() -> None:
    acc = acceptor()
    first = acc.on_prepare(Prepare(B, "a", A1))[1]
    assert first == PromiseFloor(1 + FLOOR_STRIDE)
    high = Ballot(FLOOR_STRIDE, ("n2", 1))
    assert acc.on_prepare(Prepare(B, "b", high))[1] is None
    higher = Ballot(FLOOR_STRIDE + 2, ("n2", 1))
    assert acc.on_prepare(Prepare(B, "c", higher))[1] == PromiseFloor(higher.counter + FLOOR_STRIDE)
    assert acc.promise_floor == higher.counter + FLOOR_STRIDE
    assert acc.restart_floor == 0  # this life refuses nothing on the floor's account


def test_unknown_keys_start_at_the_bucket_epoch_floor() -> None:
    acc = Acceptor(("n1", 1), SilenceTracker(THRESHOLD, 0.0), epoch_floors={"locks": 41}, voting=True)
    assert acc.epoch_floor("locks") == 41 and acc.epoch_floor(B) == 0
    reply, _ = acc.on_prepare(Prepare("locks", "k", A1))
    assert isinstance(reply, Promise) and reply.accepted == Register.empty(41)
    assert reply.accepted_ballot == Ballot.ZERO


# -- tombstone collection ------------------------------------------------------------


def _tombstoned(acc: Acceptor, key: str, epoch_value: str = "v") -> Ballot:
    """Fill ``key`` at A1, empty it at A3 (1-RTT: A3's successor promised); the tombstone's ballot."""
    acc.on_accept(Accept(B, key, A1, Register.empty().claim(epoch_value)), now=0.0)
    filled = acc.state(B, key).accepted
    acc.on_accept(Accept(B, key, A3, filled.release(), next_ballot=A3.successor()), now=0.0)
    return A3


def test_only_tombstones_are_collected_and_only_at_their_ballot() -> None:
    acc = acceptor()
    _tombstoned(acc, "gone")
    acc.on_accept(Accept(B, "value", A1, Register.empty().claim("v")), now=0.0)
    acc.on_prepare(Prepare(B, "promised only", A2))
    assert acc.tombstone(B, "gone") == A3
    assert [acc.tombstone(B, k) for k in ("value", "promised only", "never seen")] == [None] * 3
    assert acc.collect(B, [("gone", A2), ("value", A1), ("never seen", A1)]) is None  # nothing matches
    record = acc.collect(B, [("gone", A3)])
    assert record == Collected(B, ("gone",), A3.successor().counter, 1)
    assert acc.key_count() == 2 and acc.tombstone(B, "gone") is None


def test_a_collected_key_refuses_every_ballot_it_saw_and_reads_empty_at_the_epoch_floor() -> None:
    """A stale accept (delayed from before the tombstone) must not land in the empty key,
    and a new tenure must get a larger fencing token than every collected one."""
    acc = acceptor()
    _tombstoned(acc, "gone")
    acc.collect(B, [("gone", A3)])
    floor = Ballot(A3.successor().counter + 1, ("", 0))
    for ballot in (A1, A2, A3, A3.successor()):
        reply, record = acc.on_accept(Accept(B, "gone", ballot, Register.empty().claim("stale")), now=0.0)
        assert reply == Nack(B, "gone", ballot, floor) and record is None
    assert acc.promised(B, "never seen") == floor  # every key it does not hold
    later = Ballot(floor.counter, ("n2", 1))
    reply, _ = acc.on_prepare(Prepare(B, "gone", later))
    assert reply == Promise(B, "gone", later, Ballot.ZERO, Register.empty(1))
    assert Register.empty(1).claim("new").epoch == 2


def test_collected_records_and_snapshots_rebuild_the_floors() -> None:
    acc = acceptor()
    _tombstoned(acc, "gone")
    acc.on_accept(Accept(B, "kept", A1, Register.empty().claim("v")), now=0.0)
    log = [decode(encode(r)) for r in (acc.state(B, "gone"), acc.state(B, "kept"), acc.collect(B, [("gone", A3)]))]
    for records in (log, [decode(encode(r)) for r in acceptor(records=log).snapshot()]):
        restarted = acceptor(records=records)
        assert restarted.tombstone(B, "gone") is None and restarted.key_count() == 1
        assert restarted.epoch_floor(B) == 1
        assert restarted.collected_floor == A3.successor().counter
        assert restarted.promised(B, "gone") == acc.promised(B, "gone")
    # a key used again after its collection replays as used again
    reply, record = acc.on_accept(Accept(B, "gone", Ballot(99, ("n2", 1)), Register.empty(1).claim("x")), now=0.0)
    assert isinstance(reply, Accepted)
    assert acceptor(records=[*log, record]).state(B, "gone").accepted.value == "x"


# -- the lease veto ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard_at", "now", "vetoed"),
    [
        (None, 1.0, True),  # never heard since start at 0: the start counts as heard
        (None, THRESHOLD, False),
        (5.0, 5.0 + THRESHOLD - 0.01, True),
        (5.0, 5.0 + THRESHOLD, False),
    ],
)
def test_noconnection_release_waits_for_silence(heard_at: float | None, now: float, vetoed: bool) -> None:
    acc = acceptor(now=0.0)
    if heard_at is not None:
        acc.heard("n2", 4, heard_at)
    reply, record = acc.on_accept(Accept(B, K, A1, FENCED), now=now)
    if vetoed:
        assert reply == Nack(B, K, A1, Ballot.ZERO, NACK_LEASE_VETO) and record is None
        assert acc.silence.fence_generation("n2") == 0
    else:
        assert isinstance(reply, Accepted) and record is not None
        assert acc.silence.fence_generation("n2") == 1  # the owner's next ack will say so


def test_release_of_an_older_incarnation_is_accepted_at_once() -> None:
    acc = acceptor(now=0.0)
    acc.heard("n2", 5, 1.0)  # n2 restarted: incarnation 4 is dead
    reply, _ = acc.on_accept(Accept(B, K, A1, FENCED), now=1.0)
    assert isinstance(reply, Accepted)
    assert acc.silence.fence_generation("n2") == 0  # nothing to fence: the owner is gone


def test_registers_without_fences_are_never_vetoed() -> None:
    acc = acceptor(now=0.0)
    acc.heard("n2", 4, 1.0)
    released = Register.empty(1)  # a release for a real reason carries no fence
    assert isinstance(acc.on_accept(Accept(B, K, A1, released), now=1.0)[0], Accepted)


def test_heartbeat_ack_carries_the_fence_generation() -> None:
    acc = acceptor(now=0.0)
    assert acc.on_heartbeat("n2", 4, Heartbeat(1), now=0.5).fence == 0
    acc.on_accept(Accept(B, K, A1, FENCED), now=0.5 + THRESHOLD)
    ack = acc.on_heartbeat("n2", 4, Heartbeat(2), now=0.6 + THRESHOLD)
    assert (ack.seq, ack.voter, ack.fence) == (2, ("n1", 1), 1)


def test_restarted_acceptor_vetoes_until_the_full_threshold() -> None:
    """Its tracker is volatile: restarting at t=100 counts as having heard everyone at 100."""
    restarted = acceptor(now=100.0)
    assert isinstance(restarted.on_accept(Accept(B, K, A1, FENCED), now=101.0)[0], Nack)
    assert isinstance(restarted.on_accept(Accept(B, K, A1, FENCED), now=100.0 + THRESHOLD)[0], Accepted)


def test_messages_travel_on_the_wire() -> None:
    for msg in (
        Prepare(B, ("tuple", 1), A1),
        Promise(B, K, A2, A1, Register.empty().claim("v")),
        Accept(B, K, A1, FENCED, A3),
        Accepted(B, K, A1, True),
        Nack(B, K, A1, A2, NACK_LEASE_VETO),
    ):
        assert decode(encode(msg)) == msg


def test_a_fenced_prepare_is_refused_without_a_promise_while_the_owner_is_heard() -> None:
    acc = Acceptor(("a", 1), SilenceTracker(4.0, 0.0), voting=True)
    acc.heard("o", 1, 1.0)
    fence = LeaseFence(1, Binding(pid=Pid("o", 1, 7)))
    reply, record = acc.on_prepare(Prepare(B, K, A1, fence), now=2.0)
    assert isinstance(reply, Nack) and reply.reason == NACK_LEASE_VETO
    assert record is None and acc.state(B, K).promised == Ballot.ZERO
    reply, record = acc.on_prepare(Prepare(B, K, A1, fence), now=5.0)  # silent for 4.0 s
    assert isinstance(reply, Promise) and record == PromiseFloor(1 + FLOOR_STRIDE)
    with pytest.raises(ValueError, match="needs `now`"):
        acc.on_prepare(Prepare(B, K, A2, fence))


# -- property: no acceptor breaks a promise it replied, across crashes -------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("prepare"), st.sampled_from("ab"), st.integers(1, 40), st.sampled_from(("p", "q"))),
        st.tuples(st.just("accept"), st.sampled_from("ab"), st.integers(1, 40), st.sampled_from(("p", "q"))),
        st.tuples(st.just("sync")),
        st.tuples(st.just("crash")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_OPS, st.sampled_from((8, FLOOR_STRIDE)))
def test_replies_never_break_an_earlier_promise_across_crashes(ops: list[tuple], stride: int) -> None:
    """Drive the acceptor as its driver must (a reply waits for its record, or for a pending
    record of its key or floor; a crash loses what was not synced) and check every reply
    sent against every promise sent before it, in any life. A small stride makes the
    floor rise often."""
    import paxtor.paxos.acceptor as acceptor_module

    synced: list[KeyRecord | PromiseFloor] = []
    pending: list[tuple[KeyRecord | PromiseFloor | None, object]] = []
    promised: dict[str, Ballot] = {}  # the highest ballot each key was promised in a sent reply

    def send(reply: object) -> None:
        if isinstance(reply, (Promise, Accepted)):
            assert reply.ballot >= promised.get(reply.key, Ballot.ZERO), (reply, promised)
            promised[reply.key] = max(reply.ballot, promised.get(reply.key, Ballot.ZERO))

    original = acceptor_module.FLOOR_STRIDE
    acceptor_module.FLOOR_STRIDE = stride
    try:
        acc = acceptor()
        for op in ops:
            if op[0] == "sync":
                synced.extend(r for r, _ in pending if r is not None)
                for _, reply in pending:
                    send(reply)
                pending.clear()
            elif op[0] == "crash":
                pending.clear()
                acc = acceptor(records=list(synced))
            else:
                _, key, counter, node = op
                ballot = Ballot(counter, (node, 1))
                if op[0] == "prepare":
                    reply, record = acc.on_prepare(Prepare(B, key, ballot))
                else:
                    reply, record = acc.on_accept(Accept(B, key, ballot, Register.empty().claim(counter)), now=0.0)
                waits = record is not None or any(
                    r is not None and (type(r) is PromiseFloor or r.key == key) for r, _ in pending
                )
                if waits:
                    pending.append((record, reply))
                else:
                    send(reply)
    finally:
        acceptor_module.FLOOR_STRIDE = original
