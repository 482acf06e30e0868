"""Reading every key of a bucket from the voters, page by page, and merging what they hold.

Voter side: `ScanCursors` snapshots the keys of one bucket that the local
acceptor has accepted a value for (tombstones included: a voter that missed a
release must not make the lock look held), once, when a scan opens; pages of
``(key, accepted ballot, register or None)`` are then served from that
snapshot. A page is a call, so the reader sets the pace (no unbounded mailbox),
and the snapshot costs one reference per key. Cursors idle for
`CURSOR_IDLE` seconds are dropped.

Reader side: `merge_rows` keeps, per key, the row of the highest ballot among
the voters read. Read from a quorum, that is what the next round on the key
would start from (short of the round itself): a value chosen is on at least
one of them, at a ballot no older value has.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Any

from paxtor.paxos.acceptor import Acceptor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Register

__all__ = ["ScanCursors", "Row", "merge_rows", "CURSOR_IDLE"]

#: (key, accepted ballot, the accepted register if it holds a value, else None)
Row = tuple[Hashable, Ballot, Register | None]

CURSOR_IDLE = 60.0


class ScanCursors:
    """Open scans of one acceptor's buckets (pure: the caller passes ``now``)."""

    def __init__(self) -> None:
        self._cursors: dict[int, tuple[list[Any], int, float]] = {}  # id -> (records, position, last use)
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._cursors)

    def open(self, acceptor: Acceptor, bucket: str, now: float) -> int:
        """Snapshot the bucket's accepted keys; the new cursor's id."""
        zero = Ballot.ZERO
        records = [r for r in acceptor.records() if r.bucket == bucket and r.accepted_ballot != zero]
        cursor = next(self._ids)
        self._cursors[cursor] = (records, 0, now)
        return cursor

    def page(self, cursor: int, size: int, now: float) -> tuple[list[Row], bool] | None:
        """The next `size` rows and whether the scan is over (then the cursor is closed);
        None for an unknown or expired cursor."""
        entry = self._cursors.get(cursor)
        if entry is None:
            return None
        records, position, _ = entry
        chunk = records[position : position + size]
        rows = [(r.key, r.accepted_ballot, r.accepted if r.accepted.filled else None) for r in chunk]
        position += len(chunk)
        done = position >= len(records)
        if done:
            del self._cursors[cursor]
        else:
            self._cursors[cursor] = (records, position, now)
        return rows, done

    def close(self, cursor: int) -> None:
        self._cursors.pop(cursor, None)

    def expire(self, now: float, idle: float = CURSOR_IDLE) -> int:
        """Drop the cursors unused for `idle` seconds; how many were dropped."""
        stale = [c for c, (_, _, used) in self._cursors.items() if now - used > idle]
        for cursor in stale:
            del self._cursors[cursor]
        return len(stale)


def merge_rows(into: dict[Hashable, tuple[Ballot, Register | None]], rows: Iterable[Row]) -> None:
    """Fold one voter's rows into `into`: per key, the row with the highest ballot wins."""
    for key, ballot, register in rows:
        known = into.get(key)
        if known is None or known[0] < ballot:
            into[key] = (ballot, register)
