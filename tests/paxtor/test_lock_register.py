"""The fair lock's register protocol as pure functions: enqueue, reentrancy,
handoff order, dead waiters, refused releases. Every step is checked with the
same `check_transition` the proposer applies before sending anything."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxtor.actors.ids import Pid, Ref
from paxtor.actors.wire import decode, encode
from paxtor.locks.register import (
    UNLOCKED,
    acquire,
    ended_binding,
    grant_of,
    hand_to_next,
    is_queued,
    owner_of,
    release,
    tenure_of,
    try_acquire,
    waiters_of,
    withdraw,
)
from paxtor.paxos.register import (
    Binding,
    ChangeRejected,
    EndedBinding,
    Register,
    check_transition,
)

A, B, C = Pid("n1", 1, 1), Pid("n2", 1, 2), Pid("n3", 1, 3)
RA, RB, RC, RB2 = Ref("n1", 1, 11), Ref("n2", 1, 12), Ref("n3", 1, 13), Ref("n2", 1, 14)
FREE = Register.empty()


def step(register: Register, change: Any, ended: EndedBinding | None = None) -> Register:
    """Apply one change as a proposer would: the result must pass check_transition."""
    new = change(register)
    check_transition(register, new, ended)
    return new


def unlock(register: Register, pid: Pid, reason: Any = UNLOCKED) -> Register:
    ended = ended_binding(register.epoch, pid, reason)
    return step(register, release(ended), ended)


def held_by_a_with_b_c_waiting() -> Register:
    r = step(FREE, acquire(A, RA))
    r = step(r, acquire(B, RB))
    return step(r, acquire(C, RC))


@pytest.mark.parametrize(
    ("ops", "owner", "epoch", "grant", "waiters"),
    [
        ([(acquire, A, RA)], A, 1, RA, ()),
        ([(acquire, A, RA), (acquire, B, RB)], A, 1, RA, ((B, RB),)),
        ([(acquire, A, RA), (acquire, B, RB), (acquire, C, RC)], A, 1, RA, ((B, RB), (C, RC))),
        # a retried request (same ref) queues once
        ([(acquire, A, RA), (acquire, B, RB), (acquire, B, RB)], A, 1, RA, ((B, RB),)),
        # reentrant: the owner's second request changes nothing (same token)
        ([(acquire, A, RA), (acquire, B, RB), (acquire, A, Ref("n1", 1, 99))], A, 1, RA, ((B, RB),)),
        # try_acquire takes a free lock, never queues
        ([(try_acquire, A, RA)], A, 1, RA, ()),
        ([(acquire, A, RA), (try_acquire, B, RB)], A, 1, RA, ()),
        ([(try_acquire, A, RA), (try_acquire, A, RB)], A, 1, RA, ()),
        # leaving the queue
        ([(acquire, A, RA), (acquire, B, RB), (acquire, C, RC), (withdraw, B, RB)], A, 1, RA, ((C, RC),)),
        ([(acquire, A, RA), (acquire, B, RB), (withdraw, B, RB2)], A, 1, RA, ((B, RB),)),  # another request
        ([(acquire, A, RA), (acquire, B, RB), (withdraw, B, None)], A, 1, RA, ()),  # all of a dead pid's
        ([(acquire, A, RA), (withdraw, A, RA)], A, 1, RA, ()),  # withdrawing never ends a tenure
        ([(withdraw, A, RA)], None, 0, None, ()),
    ],
)
def test_requests(ops: list, owner: Pid | None, epoch: int, grant: Ref | None, waiters: tuple) -> None:
    r = FREE
    for make, pid, ref in ops:
        r = step(r, make(pid, ref))
    assert (owner_of(r), r.epoch, grant_of(r), waiters_of(r)) == (owner, epoch, grant, waiters)


def test_unlock_hands_the_lock_to_waiters_in_fifo_order_with_growing_tokens() -> None:
    r = held_by_a_with_b_c_waiting()
    r = unlock(r, A)
    assert (owner_of(r), r.epoch, grant_of(r), waiters_of(r)) == (B, 2, RB, ((C, RC),))
    assert r.binding == Binding(pid=B)
    r = unlock(r, B)
    assert (owner_of(r), r.epoch, grant_of(r), waiters_of(r)) == (C, 3, RC, ())
    r = unlock(r, C)
    assert r.is_empty and r.epoch == 3  # the tombstone keeps the token
    r = step(r, acquire(A, RA))
    assert (owner_of(r), r.epoch) == (A, 4)  # the next tenure's token is larger still


def test_a_release_for_an_exit_drops_the_dead_pids_requests_too() -> None:
    r = step(held_by_a_with_b_c_waiting(), acquire(A, RA))
    # B's death arrives as the end of B's tenure once it was handed the lock,
    # while B had (hypothetically) also queued another request
    r = unlock(r, A)
    r = step(r, lambda reg: reg.with_value((grant_of(reg), (*waiters_of(reg), (B, RB2)))))
    r = unlock(r, B, reason="killed")
    assert (owner_of(r), waiters_of(r)) == (C, ())


def test_the_policy_on_its_own() -> None:
    r = held_by_a_with_b_c_waiting()
    ended = ended_binding(1, A, UNLOCKED)
    handed = hand_to_next(r, ended)
    check_transition(r, handed, ended)
    assert (owner_of(handed), handed.epoch) == (B, 2)
    lone = step(FREE, acquire(A, RA))
    freed = hand_to_next(lone, ended)
    check_transition(lone, freed, ended)
    assert freed.is_empty and freed.epoch == 1


def test_unlock_by_a_non_owner_is_refused() -> None:
    r = held_by_a_with_b_c_waiting()
    # through the standard change: a release naming another tenure changes nothing
    not_owner = ended_binding(r.epoch, B, UNLOCKED)
    assert step(r, release(not_owner), not_owner) == r
    # an outdated release (A's tenure 1, after the lock passed to B) changes nothing
    r2 = unlock(r, A)
    stale = ended_binding(1, A, UNLOCKED)
    assert step(r2, release(stale), stale) == r2
    # and a hand-made change that ends A's tenure without A's EndedBinding is rejected
    with pytest.raises(ChangeRejected):
        check_transition(r, hand_to_next(r, not_owner), not_owner)
    with pytest.raises(ChangeRejected):
        check_transition(r, r.release(), None)


def test_helpers_read_the_state() -> None:
    r = held_by_a_with_b_c_waiting()
    assert is_queued(r, B, RB) and not is_queued(r, B, RB2) and not is_queued(r, A, RA)
    assert tenure_of(r, A, "normal") == EndedBinding(1, Binding(pid=A), "normal")
    assert tenure_of(r, B, "normal") is None
    assert owner_of(FREE) is None and grant_of(FREE) is None and waiters_of(FREE) == ()


def test_a_foreign_value_is_rejected_not_misread() -> None:
    foreign = FREE.claim("someone else's value", pid=A)
    with pytest.raises(ChangeRejected):
        acquire(B, RB)(foreign)


def test_the_value_survives_the_wire() -> None:
    r = held_by_a_with_b_c_waiting()
    assert decode(encode(r)) == r


def test_the_queue_is_stored_flat_as_scalars() -> None:
    # the wire codec packs scalars natively: no Pid/Ref/tuple per request to convert
    grant, queue = held_by_a_with_b_c_waiting().value
    assert grant == RA
    assert queue == ("n2", 1, 2, "n2", 1, 12, "n3", 1, 3, "n3", 1, 13)


def test_a_queue_in_the_nested_form_of_earlier_versions_is_still_served() -> None:
    r = step(FREE, acquire(A, RA))
    r = step(r, lambda reg: reg.with_value((RA, ((B, RB), (C, RC)))))
    assert waiters_of(r) == ((B, RB), (C, RC)) and is_queued(r, C, RC)
    r = step(r, acquire(B, RB))  # queued already: no change
    assert waiters_of(r) == ((B, RB), (C, RC))
    r = unlock(r, A)
    assert (owner_of(r), grant_of(r), waiters_of(r)) == (B, RB, ((C, RC),))
    assert r.value[1] == ("n3", 1, 3, "n3", 1, 13)


def test_a_malformed_queue_or_operation_is_refused() -> None:
    from paxtor.locks.register import batch_change

    broken = step(FREE, acquire(A, RA))
    broken = step(broken, lambda reg: reg.with_value((RA, ("n2", 1, 2))))
    with pytest.raises(ChangeRejected, match="lock queue"):
        acquire(B, RB)(broken)
    # what a batch would put in the value must be a Pid and a Ref (so the value can travel)
    for op in [("acquire", "B", RB), ("acquire", B, "RB"), ("try", B, None), ("withdraw", B, 12), ("acquire", B)]:
        with pytest.raises(ValueError, match="malformed"):
            batch_change([op])


# -- property: any interleaving keeps one owner, FIFO service and growing tokens --

_PIDS = [Pid("n1", 1, i) for i in range(1, 5)]
_op = st.tuples(st.sampled_from(["lock", "try", "unlock", "die", "withdraw"]), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=60))
def test_any_interleaving_serves_waiters_in_order(ops: list[tuple[str, int]]) -> None:
    r = FREE
    expected_queue: list[Pid] = []  # the model: FIFO of waiting pids
    owner: Pid | None = None
    serial = 0
    for op, i in ops:
        pid = _PIDS[i]
        serial += 1
        ref = Ref("n1", 1, serial)
        before = r.epoch
        if op == "lock":
            if owner is None:
                owner = pid
            elif owner != pid and pid not in expected_queue:
                expected_queue.append(pid)
            r = step(r, acquire(pid, ref)) if pid not in [w[0] for w in waiters_of(r)] else r
        elif op == "try":
            if owner is None:
                owner = pid
            r = step(r, try_acquire(pid, ref))
        elif op == "withdraw":
            if pid in expected_queue:
                expected_queue.remove(pid)
            r = step(r, withdraw(pid))
        else:  # unlock (owner only) or die (anyone)
            if op == "die":
                r = step(r, withdraw(pid))
                if pid in expected_queue:
                    expected_queue.remove(pid)
            if owner == pid:
                r = unlock(r, pid, UNLOCKED if op == "unlock" else "killed")
                owner = expected_queue.pop(0) if expected_queue else None
                assert r.epoch == (before + 1 if owner is not None else before)
            else:
                ended = ended_binding(r.epoch, pid, UNLOCKED)
                assert step(r, release(ended), ended).epoch == r.epoch
        assert r.epoch >= before
        assert owner_of(r) == owner
        assert [w[0] for w in waiters_of(r)] == expected_queue


# -- batches: several requests in one round ------------------------------------------------


def test_a_batch_applies_its_operations_in_order_with_one_release() -> None:
    from paxtor.locks.register import batch_change, ops_of_pid

    r = step(FREE, acquire(A, RA))
    ops = [("acquire", B, RB), ("release", 1, A, UNLOCKED), ("acquire", C, RC), ("read",)]
    change, ended = batch_change(ops)
    assert ended == ended_binding(1, A, UNLOCKED)
    r2 = step(r, change, ended)
    # B queued first, so the release served B; C queued behind it; one new tenure
    assert (owner_of(r2), r2.epoch, grant_of(r2), waiters_of(r2)) == (B, 2, RB, ((C, RC),))
    assert ops_of_pid(ops, B, RB) and not ops_of_pid(ops, A, RA)
    # a release of an empty queue then a claim in the same round: still one new tenure
    change, ended = batch_change([("release", 1, A, UNLOCKED), ("try", C, RC), ("withdraw", B, None)])
    r3 = step(r, change, ended)
    assert (owner_of(r3), r3.epoch, waiters_of(r3)) == (C, 2, ())


def test_a_batch_ends_at_most_one_tenure_and_knows_its_operations() -> None:
    from paxtor.locks.register import batch_change

    with pytest.raises(ValueError, match="at most one"):
        batch_change([("release", 1, A, UNLOCKED), ("release", 2, B, UNLOCKED)])
    with pytest.raises(ValueError, match="unknown"):
        batch_change([("steal", A)])
    change, ended = batch_change([("read",)])
    assert ended is None and change(FREE) == FREE
