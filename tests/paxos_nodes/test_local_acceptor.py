"""The acceptor's driver duties, with an fsync the test holds: no reply before its
record (or a pending record of its key, or a pending promise floor) is durable;
replies for other keys do not wait; the hub keeps serving while an fsync is in
flight; a failed log stops the voting."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest

from paxtor.actors import ReceiveTimeout, receive, self_pid, send
from paxtor.actors.node import LocalNode
from paxtor.paxos.acceptor import Accept, Acceptor, KeyRecord, MemberState, Prepare
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import SilenceTracker
from paxtor.paxos.local_acceptor import LocalAcceptor
from paxtor.paxos.log_codec import decode_log_record, encode_log_record
from paxtor.paxos.register import Register
from paxtor.paxos.storage import AcceptorLog
from paxtor.paxos.voter_config import VoterConfig
from paxtor.paxos.wire_format import unpack_reply

WAIT = 10.0


class HeldFsync:
    """An fsync that blocks (in the log's worker thread) until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.armed = False  # opening the log (segment headers) syncs freely
        self.fail = False

    def __call__(self, fd: int) -> None:
        if not self.armed:
            return
        self.entered.set()
        if not self.release.wait(WAIT):
            raise OSError("test fsync never released")
        if self.fail:
            raise OSError(5, "EIO (injected)")

    def hold_again(self) -> None:
        """Hold the next fsync too (after the previous one was released)."""
        self.entered = threading.Event()
        self.release = threading.Event()

    def wait_entered(self) -> None:
        """Poll the worker thread (another OS thread: nothing can signal the hub)."""
        deadline = time.monotonic() + WAIT
        while not self.entered.is_set():
            assert time.monotonic() < deadline, "fsync never started"
            gevent.sleep(0.001)


def _acceptor(tmp_path: Path, fsync: HeldFsync, node: LocalNode) -> tuple[LocalAcceptor, AcceptorLog]:
    acceptor_log = AcceptorLog.open(tmp_path / "acceptor", "fsync", fsync=fsync, inline_sync_limit=0.0)
    fsync.armed = True  # the appends from now on
    acceptor = Acceptor(("node1", 1), SilenceTracker(1.0, time.monotonic()), voting=True)
    return LocalAcceptor(acceptor, acceptor_log, node, set()), acceptor_log


def test_replies_wait_for_their_record_and_for_earlier_pending_ones(tmp_path: Path):
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()

    def body() -> list[Any]:
        voting, acceptor_log = _acceptor(tmp_path, fsync, node)
        me = self_pid()
        b5 = Ballot(5, ("node2", 1))
        assert voting.handle(me, Prepare("b", "k1", b5)) is None  # the first promise raises the floor
        fsync.wait_entered()
        # while that fsync is in flight: the hub serves, another key is voted on, but its
        # promise is covered only by the pending floor...
        assert voting.handle(me, Prepare("b", "k2", b5)) is None
        # ...and a refusal that changes nothing still waits behind it
        assert voting.handle(me, Prepare("b", "k1", Ballot(1, ("node3", 1)))) is None
        with pytest.raises(ReceiveTimeout):
            receive(timeout=0.05)  # the fsync is held: nothing may have gone out
        fsync.release.set()
        replies = [unpack_reply(receive(timeout=WAIT)) for _ in range(3)]
        acceptor_log.close()
        return replies

    replies = node.run(body)
    assert [(voter, type(msg).__name__, msg.key) for voter, msg in replies] == [
        ("node1", "Promise", "k1"),
        ("node1", "Promise", "k2"),
        ("node1", "Nack", "k1"),
    ]


def test_a_failed_log_stops_the_voting(tmp_path: Path):
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()
    fsync.fail = True
    fsync.release.set()

    def body() -> tuple[Any, Any]:
        voting, acceptor_log = _acceptor(tmp_path, fsync, node)
        me = self_pid()
        first = voting.handle(me, Prepare("b", "k1", Ballot(5, ("node2", 1))))
        deadline = time.monotonic() + WAIT
        while acceptor_log.failure is None:  # the worker thread fails the batch
            assert time.monotonic() < deadline
            gevent.sleep(0.001)
        second = voting.handle(me, Prepare("b", "k2", Ballot(6, ("node2", 1))))
        try:
            receive(timeout=0.05)
            got = "a reply"
        except ReceiveTimeout:
            got = None
        return (first, second, voting.failed, got)

    first, second, failed, got = node.run(body)
    assert first is None and second is None and failed and got is None


def test_a_failed_acceptor_resumes_with_its_whole_state_once_the_disk_takes_writes(tmp_path: Path):
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()
    fsync.fail = True
    fsync.release.set()

    def body() -> tuple[Any, ...]:
        voting, acceptor_log = _acceptor(tmp_path, fsync, node)
        me = self_pid()
        b5 = Ballot(5, ("node2", 1))
        assert voting.handle(me, Prepare("b", "k1", b5)) is None  # its floor record fails
        deadline = time.monotonic() + WAIT
        while acceptor_log.failure is None:  # the worker thread fails the batch
            assert time.monotonic() < deadline
            gevent.sleep(0.001)
        still_full = voting.resume()  # the disk still refuses: still not voting
        fsync.fail = False
        resumed = voting.resume()
        promise = voting.handle(me, Prepare("b", "k1", Ballot(6, ("node2", 1))))  # covered by the floor now
        try:
            receive(timeout=0.05)
            dropped = "a reply of the failed batch"
        except ReceiveTimeout:
            dropped = None
        acceptor_log.close()
        return still_full, resumed, voting.failed, type(promise).__name__, dropped

    assert node.run(body) == (False, True, False, "Promise", None)
    acceptor_log = AcceptorLog.open(tmp_path / "acceptor", "fsync")
    replayed = Acceptor(
        ("node1", 2), SilenceTracker(1.0, time.monotonic()), [decode_log_record(r) for r in acceptor_log.records()]
    )
    acceptor_log.close()
    assert replayed.restart_floor >= 6  # the promise floor raised before the failure is durable now


def test_a_reply_waits_only_for_records_of_its_own_key(tmp_path: Path):
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()

    def body() -> list[Any]:
        voting, acceptor_log = _acceptor(tmp_path, fsync, node)
        me = self_pid()
        b5 = Ballot(5, ("node2", 1))
        assert voting.handle(me, Prepare("b", "k0", b5)) is None  # the floor rises: synced first
        fsync.wait_entered()
        fsync.release.set()
        assert unpack_reply(receive(timeout=WAIT))[1].key == "k0"
        fsync.hold_again()
        v = Register.empty().claim("v")
        assert voting.handle(me, Accept("b", "k1", b5, v)) is None  # an accept: synced first
        fsync.wait_entered()
        # another key's promise is covered by the durable floor: it goes out at once
        assert type(voting.handle(me, Prepare("b", "k2", b5))).__name__ == "Promise"
        # this key's promise reports the accept still in flight: it waits behind it
        assert voting.handle(me, Prepare("b", "k1", Ballot(6, ("node3", 1)))) is None
        with pytest.raises(ReceiveTimeout):
            receive(timeout=0.05)
        fsync.release.set()
        replies = [unpack_reply(receive(timeout=WAIT))[1] for _ in range(2)]
        acceptor_log.close()
        return replies

    accepted, promise = node.run(body)
    assert type(accepted).__name__ == "Accepted" and accepted.key == "k1"
    assert type(promise).__name__ == "Promise" and promise.key == "k1" and promise.accepted.value == "v"


def test_a_fence_or_an_install_already_covered_waits_for_the_pending_record(tmp_path: Path):
    """A bulk round's promise that a pending floor covers, and the ack of a configuration
    installed a moment ago (a hello) whose record is pending, both wait for that record:
    answered at once, a crash could take back what they vouch for."""
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()
    config = VoterConfig.initial(("node1", "node2", "node3"))

    def body() -> list[Any]:
        voting, acceptor_log = _acceptor(tmp_path, fsync, node)
        me = self_pid()
        assert voting.handle(me, Prepare("b", "k1", Ballot(5, ("node2", 1)))) is None  # the floor rises
        voting.install("c", config)  # as a hello installs it: nothing waits for it
        fsync.wait_entered()
        voting.fence(Ballot(6, ("node3", 1)), lambda: send(me, "fenced"))  # under the pending floor
        voting.install("c", config, lambda: send(me, "installed"))  # an install call: known, pending
        with pytest.raises(ReceiveTimeout):
            receive(timeout=0.05)  # the fsync is held: nothing may have gone out
        fsync.release.set()
        got = [receive(timeout=WAIT) for _ in range(3)]
        acceptor_log.close()
        return got

    promise, *done = node.run(body)
    assert type(unpack_reply(promise)[1]).__name__ == "Promise"
    assert sorted(done) == ["fenced", "installed"]


def test_only_durable_tombstones_are_reported_and_collected_keys_leave_the_log(tmp_path: Path):
    """A tombstone whose accept is still being synced is not reported to a collector: a
    crash could still lose it, and the voters that forget the key would then disagree."""
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()

    def body() -> tuple[Any, ...]:
        voting, acceptor_log = _acceptor(tmp_path, fsync, node)
        me = self_pid()
        b5, b6 = Ballot(5, ("node2", 1)), Ballot(6, ("node2", 1))
        assert voting.handle(me, Accept("b", "k", b5, Register.empty().claim("v"))) is None
        fsync.wait_entered()
        fsync.release.set()
        receive(timeout=WAIT)
        fsync.hold_again()
        tombstone = Register.empty(1)
        assert voting.handle(me, Accept("b", "k", b6, tombstone)) is None
        fsync.wait_entered()
        in_flight = voting.held_tombstones("b", ["k", "other"])
        fsync.release.set()
        receive(timeout=WAIT)
        durable = voting.held_tombstones("b", ["k", "other"])
        due = voting.due_tombstones(0.0, 10)
        dropped = voting.collect("b", durable)
        acceptor_log.close()
        return in_flight, durable, due, dropped, voting.tombstone_count()

    in_flight, durable, due, dropped, left = node.run(body)
    assert in_flight == [] and durable == [("k", Ballot(6, ("node2", 1)))]
    assert due == [("b", "k")] and dropped == 1 and left == 0
    replayed = AcceptorLog.open(tmp_path / "acceptor", "fsync")
    from paxtor.paxos.paxos_node import _decode_record

    records = [_decode_record(raw) for raw in replayed.records()]
    replayed.close()
    assert type(records[-1]).__name__ == "Collected"
    assert Acceptor(("node1", 2), SilenceTracker(1.0, 0.0), records).key_count() == 0


def test_a_learner_logs_what_it_caught_up_at_once_and_votes_only_once_that_is_durable(tmp_path: Path):
    """The records read from the other voters go to the log in one append, as the bytes they
    were read as when those are the very record adopted (else encoded again); the acceptor
    votes once they, then its vote, are durable."""
    node = LocalNode.start("node1", 1)
    fsync = HeldFsync()
    b5 = Ballot(5, ("node2", 1))
    records = [KeyRecord("b", ("k", i), b5, b5, Register.empty().claim(i)) for i in range(50)]
    other = KeyRecord("b", ("k", 0), b5, b5, Register.empty().claim("not what was adopted"))
    encoded = {(r.bucket, r.key): (r, encode_log_record(r)) for r in records}
    encoded[("b", ("k", 0))] = (other, encode_log_record(other))

    def body() -> tuple[Any, ...]:
        acceptor_log = AcceptorLog.open(tmp_path / "acceptor", "fsync", fsync=fsync, inline_sync_limit=0.0)
        fsync.armed = True
        acceptor = Acceptor(("node1", 1), SilenceTracker(1.0, time.monotonic()))  # blank: a learner
        voting = LocalAcceptor(acceptor, acceptor_log, node, set())
        done = gevent.event.Event()
        taken = voting.catch_up(records, 0, done.set, encoded=encoded)
        fsync.wait_entered()
        before = (done.is_set(), acceptor.voting, acceptor_log.fsync_count)
        fsync.release.set()
        assert done.wait(WAIT)
        acceptor_log.close()
        return taken, before, acceptor.voting

    taken, before, voting_after = node.run(body)
    assert taken == 50 and before == (False, False, 0) and voting_after
    replayed = AcceptorLog.open(tmp_path / "acceptor", "fsync")
    logged = [decode_log_record(raw) for raw in replayed.records()]
    replayed.close()
    assert logged[:50] == records  # ("k", 0) as adopted, not as the other record's bytes say
    assert isinstance(logged[-1], MemberState) and logged[-1].voting
