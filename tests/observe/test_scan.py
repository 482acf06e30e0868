"""The pure parts of a cluster scan: cursors over an acceptor's keys, and the merge."""

from __future__ import annotations

from paxtor.actors.ids import Pid
from paxtor.observe.scan import ScanCursors, merge_rows
from paxtor.paxos.acceptor import Acceptor, KeyRecord
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.lease import SilenceTracker
from paxtor.paxos.register import Register

OWNER = Pid("node1", 1, 7)


def _acceptor(records: list[KeyRecord]) -> Acceptor:
    return Acceptor(("node1", 1), SilenceTracker(1.0, 0.0), records)


def _held(key: bytes, counter: int) -> KeyRecord:
    ballot = Ballot(counter, ("node1", 1))
    return KeyRecord("locks", key, ballot, ballot, Register.empty(0).claim(("g", ()), pid=OWNER))


def test_pages_cover_the_bucket_once_and_close_the_cursor() -> None:
    records = [_held(b"k%d" % i, 1) for i in range(25)]
    other = KeyRecord("names", b"n", Ballot(1, ("node1", 1)), Ballot(1, ("node1", 1)), Register.empty(0))
    never_accepted = KeyRecord("locks", b"promised", Ballot(3, ("node1", 1)), Ballot.ZERO, Register.empty(0))
    cursors = ScanCursors()
    cursor = cursors.open(_acceptor([*records, other, never_accepted]), "locks", now=0.0)
    keys, done, pages = [], False, 0
    while not done:
        page = cursors.page(cursor, 10, now=1.0)
        assert page is not None
        rows, done = page
        keys += [row[0] for row in rows]
        pages += 1
    assert pages == 3
    assert keys == [r.key for r in records]
    assert cursors.page(cursor, 10, now=2.0) is None  # closed once done
    assert len(cursors) == 0


def test_idle_cursors_expire() -> None:
    cursors = ScanCursors()
    acceptor = _acceptor([_held(b"a", 1), _held(b"b", 1)])
    idle = cursors.open(acceptor, "locks", now=0.0)
    busy = cursors.open(acceptor, "locks", now=0.0)
    assert cursors.page(busy, 1, now=50.0) is not None
    assert cursors.expire(now=70.0, idle=60.0) == 1
    assert cursors.page(idle, 1, now=70.0) is None
    assert cursors.page(busy, 1, now=70.0) is not None


def test_the_highest_ballot_wins_so_a_missed_release_does_not_show_as_held() -> None:
    held = Register.empty(0).claim(("g", ()), pid=OWNER)
    stale_voter = [(b"k", Ballot(5, ("node2", 1)), held)]
    released_on_others = [(b"k", Ballot(7, ("node3", 1)), None)]
    merged: dict = {}
    merge_rows(merged, stale_voter)
    merge_rows(merged, released_on_others)
    assert merged[b"k"] == (Ballot(7, ("node3", 1)), None)
    merged = {}
    merge_rows(merged, released_on_others)
    merge_rows(merged, stale_voter)  # order does not matter
    assert merged[b"k"][1] is None
