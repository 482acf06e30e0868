"""Register state, epoch rules and the standard change functions."""

from __future__ import annotations

import pytest

from paxtor.actors.ids import Pid
from paxtor.actors.wire import decode, encode
from paxtor.paxos.register import (
    Binding,
    ChangeRejected,
    EndedBinding,
    LeaseFence,
    Register,
    check_transition,
    empty_released,
    identity,
    marks_with,
    put_if_empty,
    release_if_bound,
)

P = Pid("n1", 1, 10)
Q = Pid("n2", 1, 20)
EMPTY = Register.empty()
HELD_P = EMPTY.claim("v", pid=P)  # epoch 1, bound to P
BY_P = Binding(pid=P)


def test_empty_register() -> None:
    assert EMPTY.is_empty and not EMPTY.filled
    assert EMPTY.epoch == 0 and EMPTY.value is None and EMPTY.binding is None


@pytest.mark.parametrize(
    ("make", "epoch", "filled", "binding"),
    [
        (lambda: EMPTY.claim("v"), 1, True, None),
        (lambda: HELD_P, 1, True, BY_P),
        (lambda: HELD_P.release(), 1, False, None),  # a tombstone keeps its epoch
        (lambda: HELD_P.release().claim("w"), 2, True, None),  # next tenure: larger token
        (lambda: HELD_P.handoff("w", pid=Q), 2, True, Binding(pid=Q)),  # handoff: +1
        (lambda: HELD_P.with_value("w"), 1, True, BY_P),  # same tenure
        (lambda: Register.empty(7).claim("v", node="n3"), 8, True, Binding(node="n3")),
    ],
)
def test_helpers_get_epochs_right(make, epoch: int, filled: bool, binding) -> None:  # type: ignore[no-untyped-def]
    reg = make()
    assert (reg.epoch, reg.filled, reg.binding) == (epoch, filled, binding)


@pytest.mark.parametrize(
    "misuse",
    [
        lambda: HELD_P.claim("again"),
        lambda: EMPTY.release(),
        lambda: EMPTY.handoff("v", pid=Q),
        lambda: EMPTY.with_value("v"),
    ],
)
def test_helpers_refuse_misuse(misuse) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ChangeRejected):
        misuse()


ENDED_P = EndedBinding(1, BY_P, "normal")


@pytest.mark.parametrize(
    ("old", "new", "ended"),
    [
        (EMPTY, EMPTY, None),
        (EMPTY, EMPTY.claim("v"), None),
        (HELD_P, HELD_P, None),
        (HELD_P, HELD_P.with_value("w"), None),
        (HELD_P, HELD_P.release(), ENDED_P),
        (HELD_P, HELD_P.handoff("w", pid=Q), ENDED_P),
        (EMPTY.claim("v"), EMPTY.claim("v").release(), None),  # unbound: no justification needed
        (EMPTY.claim("v"), EMPTY.claim("v").handoff("w"), None),
    ],
)
def test_valid_transitions(old: Register, new: Register, ended: EndedBinding | None) -> None:
    check_transition(old, new, ended)


@pytest.mark.parametrize(
    ("old", "new", "ended", "why"),
    [
        (HELD_P, "not a register", None, "must return a Register"),
        (Register.empty(5), Register.empty(4), None, "backwards"),
        (Register.empty(5), Register.empty(6), None, "empty register changed its epoch"),
        (Register.empty(5), Register(epoch=5, filled=True, value="v"), None, "claim must take epoch 6"),
        (Register.empty(5), Register(epoch=7, filled=True, value="v"), None, "claim must take epoch 6"),
        (HELD_P, Register(epoch=2), ENDED_P, "release must keep epoch 1"),
        (HELD_P, Register(epoch=1, filled=True, value="v", binding=Binding(pid=Q)), ENDED_P, "without a new epoch"),
        (
            HELD_P,
            Register(epoch=3, filled=True, value="v", binding=Binding(pid=Q)),
            ENDED_P,
            "handoff must take epoch 2",
        ),
        (HELD_P, HELD_P.release(), None, "without a matching EndedBinding"),
        (HELD_P, HELD_P.release(), EndedBinding(0, BY_P, "normal"), "without a matching"),
        (HELD_P, HELD_P.release(), EndedBinding(1, Binding(pid=Q), "normal"), "without a matching"),
        (HELD_P, HELD_P.handoff("w", pid=Q), None, "without a matching"),
    ],
)
def test_invalid_transitions(old: Register, new: object, ended: EndedBinding | None, why: str) -> None:
    with pytest.raises(ChangeRejected, match=why):
        check_transition(old, new, ended)


@pytest.mark.parametrize(
    ("before", "after_value", "after_epoch"),
    [
        (EMPTY, "mine", 1),
        (Register.empty(4), "mine", 5),
        (EMPTY.claim("theirs"), "theirs", 1),  # if set, keep
    ],
)
def test_put_if_empty(before: Register, after_value: str, after_epoch: int) -> None:
    after = put_if_empty("mine")(before)
    assert (after.value, after.epoch) == (after_value, after_epoch)
    check_transition(before, after, None)


def test_put_if_empty_with_binding() -> None:
    binding = Binding(pid=P, until=1_700_000_000_000)
    after = put_if_empty("v", binding)(EMPTY)
    assert after.binding == binding and after.epoch == 1


def test_identity_keeps_everything() -> None:
    assert identity(HELD_P) is HELD_P


def test_release_if_bound_releases_only_that_tenure() -> None:
    release = release_if_bound(ENDED_P)
    assert release(HELD_P) == HELD_P.release()
    # a later tenure of the same key is not touched, even by the same pid
    later = HELD_P.release().claim("v", pid=P)
    assert release(later) is later
    assert release(EMPTY) is EMPTY
    handed = HELD_P.handoff("w", pid=Q)
    assert release(handed) is handed


def test_release_policy_can_hand_off_in_the_same_round() -> None:
    def to_next_waiter(reg: Register, ended: EndedBinding) -> Register:
        waiters = reg.value
        return reg.handoff(waiters[1:], pid=waiters[0]) if waiters else reg.release()

    queued = EMPTY.claim((), pid=P).with_value((Q,))
    after = release_if_bound(EndedBinding(1, BY_P, "normal"), to_next_waiter)(queued)
    assert after.binding == Binding(pid=Q) and after.epoch == 2 and after.value == ()
    assert empty_released(HELD_P, ENDED_P) == HELD_P.release()


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"pid": "n1.1.3"}, {"node": 3}, {"until": 1.5}],
)
def test_bad_bindings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Binding(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"epoch": -1}, "epoch"),
        ({"epoch": 1.0}, "epoch"),
        ({"filled": False, "value": "x"}, "empty"),
        ({"filled": False, "binding": BY_P}, "empty"),
    ],
)
def test_bad_registers_are_refused(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Register(**kwargs)  # type: ignore[arg-type]


def test_owner_of_a_binding() -> None:
    assert (BY_P.owner_node, BY_P.owner_incarnation) == ("n1", 1)
    assert (Binding(node="n4").owner_node, Binding(node="n4").owner_incarnation) == ("n4", None)
    assert Binding(parent="k").owner_node is None


def test_fence_matches_only_its_tenure() -> None:
    fence = LeaseFence(1, BY_P)
    assert (fence.node, fence.incarnation) == ("n1", 1)
    assert fence.matches(EndedBinding(1, BY_P, "normal"))
    assert not fence.matches(EndedBinding(2, BY_P, "normal"))
    assert not fence.matches(EndedBinding(1, Binding(pid=Q), "normal"))
    fenced = Register(epoch=1, lease_fences=(fence,))
    assert fenced.visible() == Register.empty(1)
    assert HELD_P.visible() is HELD_P


def test_register_travels_on_the_wire() -> None:
    reg = Register(
        epoch=3,
        filled=True,
        value=("queue", (P, Q)),
        binding=Binding(pid=P, parent=("bucket", "k"), until=123),
        lease_fences=(LeaseFence(2, Binding(pid=Q)),),
    )
    assert decode(encode(reg)) == reg


def test_same_visible_ignores_only_the_cores_bookkeeping() -> None:
    base = Register(3, True, {"v": 1}, None, (), (("n1", 1, 7),))
    assert base.same_visible(Register(3, True, {"v": 1}))  # marks differ: same for clients
    assert not base.same_visible(Register(3, True, {"v": 2}))
    assert not base.same_visible(Register(4, True, {"v": 1}))
    assert base.same_visible(base.visible()) and base.visible().op_marks == ()


def test_bookkeeping_is_replaced_without_touching_the_visible_state() -> None:
    fence = LeaseFence(1, Binding(node="node2"))
    r = Register(2, True, "v", Binding(node="node3"), (fence,), (("node1", 1, 5),))
    assert r.with_bookkeeping(r.lease_fences, r.op_marks) is r  # nothing to change: no copy
    bare = r.with_bookkeeping((), ())
    assert bare == r.visible() and bare.same_visible(r)
    assert r.with_bookkeeping((), r.op_marks) == Register(2, True, "v", Binding(node="node3"), (), r.op_marks)


def test_marks_with_keeps_one_mark_per_node_sorted() -> None:
    assert marks_with((), ("node2", 1, 7)) == (("node2", 1, 7),)
    marks = (("node1", 1, 5), ("node3", 2, 9))
    assert marks_with(marks, ("node2", 1, 7)) == (("node1", 1, 5), ("node2", 1, 7), ("node3", 2, 9))
    assert marks_with(marks, ("node3", 3, 1)) == (("node1", 1, 5), ("node3", 3, 1))
    r = Register(1, True, "v", op_marks=marks)
    assert r.with_op_mark(("node3", 3, 1)).op_marks == marks_with(marks, ("node3", 3, 1))
