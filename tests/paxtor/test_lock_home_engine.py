"""The lock home's batching policy, driven by hand: one round per key at a time, requests
that arrive meanwhile go in the next round together, a queue-up behind a held lock waits a
moment for the release, and a release wakes the new owner unless it was in the batch."""

from __future__ import annotations

from typing import Any

from paxtor.actors.ids import Pid, Ref
from paxtor.locks.home_engine import Answer, LockHomeEngine, ProposeBatch, StartDelay, Wake
from paxtor.paxos.errors import NoQuorum
from paxtor.paxos.register import Register

KEY = b"k"
A, B, C = Pid("n1", 1, 1), Pid("n2", 1, 2), Pid("n3", 1, 3)
RA, RB, RC = Ref("n1", 1, 10), Ref("n2", 1, 20), Ref("n3", 1, 30)


def of(effects: list[Any], kind: type) -> list[Any]:
    return [e for e in effects if type(e) is kind]


def run(batch: ProposeBatch, register: Register) -> Register:
    """What the proposer would choose: the batch's change applied to ``register``."""
    return batch.change(register)


def test_requests_during_a_round_go_together_in_the_next_one():
    home = LockHomeEngine(enqueue_delay=0.002)
    first = of(home.request(KEY, "a", ("acquire", A, RA), 1.0), ProposeBatch)
    assert len(first) == 1
    assert home.request(KEY, "b", ("acquire", B, RB), 2.0) == []  # a round is running
    assert home.request(KEY, "c", ("acquire", C, RC), None) == []
    owned = run(first[0], Register.empty())
    effects = home.round_done(KEY, first[0].tag, owned, None)
    assert of(effects, Answer) == [Answer("a", ("ok", owned.visible()))]
    # b and c only queue behind the held lock: they wait a moment for a release to ride in
    assert of(effects, StartDelay) == [StartDelay(KEY, 0.002)] and not of(effects, ProposeBatch)
    second = of(home.deferred(KEY), ProposeBatch)
    assert len(second) == 1 and second[0].timeout == 2.0  # the shortest of the batch
    assert second[0].ops == (("acquire", B, RB), ("acquire", C, RC))  # named in arrival order
    queued = run(second[0], owned)
    done = home.round_done(KEY, second[0].tag, queued, None)
    assert [a.token for a in of(done, Answer)] == ["b", "c"]
    # A's release hands the lock to b, queued in the register by an earlier batch: b is woken
    release = of(home.request(KEY, "a2", ("release", owned.epoch, A, "unlocked"), None), ProposeBatch)[0]
    handed = run(release, queued)
    wakes = of(home.round_done(KEY, release.tag, handed, None), Wake)
    assert [(w.wake.pid, w.wake.ref, w.wake.epoch) for w in wakes] == [(B, RB, owned.epoch + 1)]


def test_a_release_rides_with_the_queue_ups_and_wakes_the_next_owner():
    home = LockHomeEngine(enqueue_delay=0.002)
    first = of(home.request(KEY, "a", ("acquire", A, RA), None), ProposeBatch)[0]
    owned = run(first, Register.empty())
    home.round_done(KEY, first.tag, owned, None)
    assert of(home.request(KEY, "b", ("acquire", B, RB), None), StartDelay)
    effects = home.request(KEY, "a2", ("release", owned.epoch, A, "unlocked"), None)
    batch = of(effects, ProposeBatch)
    assert len(batch) == 1 and batch[0].ended is not None  # at once, with b's queue-up
    assert batch[0].ops == (("acquire", B, RB), ("release", owned.epoch, A, "unlocked"))
    chosen = run(batch[0], owned)
    done = home.round_done(KEY, batch[0].tag, chosen, None)
    assert [a.token for a in of(done, Answer)] == ["b", "a2"]
    assert of(done, Wake) == []  # b's own request was in the batch: its reply tells it
    third = of(home.request(KEY, "c", ("acquire", C, RC), None), StartDelay)
    assert third
    release = of(home.request(KEY, "b2", ("release", chosen.epoch, B, "unlocked"), None), ProposeBatch)[0]
    handed = run(release, chosen)
    done = home.round_done(KEY, release.tag, handed, None)
    assert of(done, Wake) == [] and [a.token for a in of(done, Answer)] == ["c", "b2"]  # c rode along
    assert home.round_done(KEY, release.tag, handed, None) == []  # a late answer: ignored


def test_no_quorum_and_errors_reach_every_caller_of_the_batch():
    home = LockHomeEngine(enqueue_delay=0.002)
    batch = of(home.request(KEY, "a", ("acquire", A, RA), None), ProposeBatch)[0]
    home.request(KEY, "b", ("read",), None)
    effects = home.round_done(KEY, batch.tag, None, NoQuorum("cut off"))
    assert of(effects, Answer) == [Answer("a", ("no_quorum", "cut off"))]
    retry = of(effects, ProposeBatch)  # the next batch starts at once: the lock is not held
    assert len(retry) == 1
    lost = home.proposer_lost(RuntimeError("proposer exited"))
    assert [(a.token, a.result[0]) for a in of(lost, Answer)] == [("b", "error")]
    bad = home.request(b"other", "x", ("nonsense",), None)
    assert [(a.token, a.result[0]) for a in of(bad, Answer)] == [("x", "error")]
