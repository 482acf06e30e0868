"""Group commit's reply ordering, as a pure state machine: which replies wait for which log records.

An acceptor's reply may go out only once what it depends on is durable: the
record it made, else a record of its key still pending (an earlier vote on
the key, which the reply reports or relies on), else a pending promise floor
(which covers the promise the reply makes). Records of a node's log are
synced in batches (one fsync for every key: group commit); a reply that
depends on nothing pending goes out at once, whatever else is being synced.

`ReplyOrder` keeps, per slot (a ``(bucket, key)``, `FLOOR` or `MEMBER`),
the list of what waits for its latest pending record. The driver logs the
record and, once the log says it is durable, calls `durable` and delivers
what it returns, in order. It knows nothing of what waits (replies, notices,
callbacks: the driver's), nor of files or clocks. Two drivers use it: the
node's `paxtor.paxos.local_acceptor.LocalAcceptor` and the simulator's node.
"""

from __future__ import annotations

from typing import Any

from paxtor.paxos.acceptor import MemberState, PromiseFloor

__all__ = ["FLOOR", "MEMBER", "ReplyOrder"]

#: the slot of `PromiseFloor` records: no ``(bucket, key)`` equals it
FLOOR: tuple[str, Any] = ("", ("promise floor",))
#: the slot of `MemberState` records
MEMBER: tuple[str, Any] = ("", ("member",))

Waiting = list[Any]


class ReplyOrder:
    """See the module docstring."""

    def __init__(self) -> None:
        self._tails: dict[Any, tuple[int, Waiting]] = {}  # slot -> (append number, what waits)
        self._appends = 0

    @staticmethod
    def slot_of(record: Any, key_slot: Any) -> Any:
        """The slot a record is ordered under: its key's, or the floor's, or the membership's."""
        cls = record.__class__
        if cls is PromiseFloor:
            return FLOOR
        if cls is MemberState:
            return MEMBER
        return key_slot

    def waiting_for(self, slot: Any, record: Any) -> Waiting | None:
        """Where a reply about ``slot`` goes: a new list if it made ``record`` (log it with
        `appended`), the list of the later of its key's and the floor's pending records,
        or None: nothing pending, it goes out now."""
        if record is not None:
            return []
        key_tail = self._tails.get(slot)
        floor_tail = self._tails.get(FLOOR)
        if key_tail is None or (floor_tail is not None and floor_tail[0] > key_tail[0]):
            key_tail = floor_tail
        return None if key_tail is None else key_tail[1]

    def appended(self, slot: Any, waiting: Waiting) -> int:
        """A record of ``slot`` was appended; ``waiting`` goes once it is durable. Its number."""
        self._appends += 1
        self._tails[slot] = (self._appends, waiting)
        return self._appends

    def after(self, slot: Any) -> Waiting | None:
        """What waits for ``slot``'s latest pending record (None: none is pending)."""
        tail = self._tails.get(slot)
        return None if tail is None else tail[1]

    def latest(self, slots: Any) -> Waiting | None:
        """What waits for the latest pending record of any of ``slots`` (None: none is pending)."""
        best: tuple[int, Waiting] | None = None
        for slot in slots:
            tail = self._tails.get(slot)
            if tail is not None and (best is None or tail[0] > best[0]):
                best = tail
        return None if best is None else best[1]

    def pending(self, slot: Any) -> bool:
        """Whether a record of ``slot`` is not durable yet."""
        return slot in self._tails

    def durable(self, slot: Any, waiting: Waiting) -> Waiting:
        """The record ``waiting`` was appended with is durable: what to deliver now, in order."""
        tail = self._tails.get(slot)
        if tail is not None and tail[1] is waiting:
            del self._tails[slot]
        return waiting

    def clear(self) -> None:
        """The pending records will never be durable (the log failed): nothing waits any more."""
        self._tails.clear()

    @property
    def appends(self) -> int:
        return self._appends
