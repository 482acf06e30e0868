"""The singleton register protocol as pure functions: claim before start,
handoff to the child, no effect once the claim is gone."""

from __future__ import annotations

from typing import Any

import pytest

from paxtor.actors.ids import Pid
from paxtor.paxos.register import (
    Binding,
    ChangeRejected,
    EndedBinding,
    Register,
    check_transition,
    empty_released,
    release_if_bound,
)
from paxtor.singletons.register import (
    RUNNING,
    STARTED,
    STARTING,
    bind_child,
    claim_for_start,
    ended_binding,
    register_pid,
    running_pid,
    starting_keeper,
    state_of,
)

K1, K2 = Pid("n1", 1, 1), Pid("n2", 1, 2)  # keepers
CHILD = Pid("n1", 1, 3)
FREE = Register.empty()


def step(register: Register, change: Any, ended: EndedBinding | None = None) -> Register:
    new = change(register)
    check_transition(register, new, ended)
    return new


def test_claim_then_handoff_to_the_child() -> None:
    r = step(FREE, claim_for_start(K1, "n1"))
    assert (state_of(r), starting_keeper(r), running_pid(r), r.epoch) == (STARTING, K1, None, 1)
    assert r.binding == Binding(pid=K1)
    # a second claimant (another keeper, another node) finds it taken: nothing changes
    assert step(r, claim_for_start(K2, "n2")) == r
    ended = ended_binding(1, K1, STARTED)
    r = step(r, bind_child(1, K1, CHILD, "n1"), ended)
    assert (state_of(r), running_pid(r), starting_keeper(r), r.epoch) == (RUNNING, CHILD, None, 2)
    assert r.binding == Binding(pid=CHILD)


def test_a_handoff_without_the_claim_does_nothing() -> None:
    r = step(FREE, claim_for_start(K1, "n1"))
    gone = ended_binding(1, K1, "killed")
    r = step(r, release_if_bound(gone, empty_released), gone)  # the keeper died
    assert r.is_empty and r.epoch == 1
    assert step(r, bind_child(1, K1, CHILD, "n1"), ended_binding(1, K1, STARTED)) == r
    r2 = step(r, claim_for_start(K2, "n2"))  # the next claim has a larger token
    assert (starting_keeper(r2), r2.epoch) == (K2, 2)
    # a late handoff of the first claim does not touch the second one
    assert step(r2, bind_child(1, K1, CHILD, "n1"), ended_binding(1, K1, STARTED)) == r2


def test_the_handoff_needs_the_keepers_ended_binding() -> None:
    r = step(FREE, claim_for_start(K1, "n1"))
    with pytest.raises(ChangeRejected):
        step(r, bind_child(1, K1, CHILD, "n1"), None)
    with pytest.raises(ChangeRejected):
        step(r, bind_child(1, K1, CHILD, "n1"), ended_binding(1, K2, STARTED))


def test_register_a_running_process() -> None:
    r = step(FREE, register_pid(CHILD, "n1"))
    assert (state_of(r), running_pid(r), r.epoch) == (RUNNING, CHILD, 1)
    assert step(r, register_pid(K2, "n2")) == r


def test_states_of_foreign_values() -> None:
    assert state_of(FREE) is None and running_pid(FREE) is None and starting_keeper(FREE) is None
    assert state_of(FREE.claim("x")) is None
    assert state_of(FREE.claim(("elsewhere", "n1"))) is None
