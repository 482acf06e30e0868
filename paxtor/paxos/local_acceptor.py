"""This voter's acceptor with its driver duties: the pure `Acceptor`, its log, its replies.

Duties (from `paxtor.paxos.acceptor`'s contract):

- ``heard(N, i)`` for every message from node N before anything else;
- a reply goes out only after its record is durable. Records are appended
  to the node-wide `AcceptorLog` (one fsync per batch for every bucket and
  key: group commit); the replies of a batch, and any reply produced while
  a record of its key (or a promise floor) is pending, wait in append order
  and go out from the log's callback, so the callers keep running while an
  fsync is in flight. Replies for other keys do not wait: a promise covered
  by the floor answers at once, whatever else is being synced;
- if the log fails, the acceptor stops voting (it answers nothing more;
  silence never harms Paxos safety) and tells the acceptor process
  (`LOG_FAILED`), which calls `resume` until the disk takes writes again:
  the state, frozen since (nothing is voted while failed), is made durable
  whole (`AcceptorLog.resume`), and only then does it vote again. Replies
  that waited for the failed records are dropped: their proposers retry.

Two processes use it, in the one hub thread of the node (a call never
yields, so calls never interleave): the acceptor process, for rounds of
other nodes, and this node's own proposer, which votes here without going
through the acceptor process (`handle` answers at once when nothing needs
to be synced), once a round's messages to the other voters are written.
It also tells the binding watcher about durable accepts of bound registers
(or of keys it watches): voters watch every binding cluster-wide.

For tombstone collection (`paxtor.paxos.collector`) it remembers since when
each key it holds has been a tombstone (oldest first), reports only durable
tombstones (``held_tombstones``), and logs what ``collect`` drops; no reply
waits for that record (see `Acceptor.collect`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import structlog

from paxtor.actors.ids import Pid
from paxtor.actors.node import LocalNode
from paxtor.paxos.acceptor import (
    Accept,
    Accepted,
    Acceptor,
    KeyRecord,
    LogRecord,
    Nack,
    Prepare,
    Promise,
    PromiseFloor,
)
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import ACCEPTOR_NAME, BINDINGS_NAME, AcceptedNotice
from paxtor.paxos.log_codec import encode_log_record
from paxtor.paxos.register import Register
from paxtor.paxos.reply_order import FLOOR, MEMBER, ReplyOrder
from paxtor.paxos.storage import AcceptorLog, AcceptorLogError
from paxtor.paxos.voter_config import VoterConfig
from paxtor.paxos.wire_format import pack_reply

__all__ = ["LocalAcceptor", "LOG_FAILED"]

log = structlog.get_logger(__name__)

_COMPACT_CHECK_EVERY = 512

Reply = Promise | Accepted | Nack
Waiting = list[tuple[Any, Any]]  # (pid to reply to | None for the binding watcher | a callback, message)

#: To the acceptor process when the log failed: it starts trying `LocalAcceptor.resume`.
LOG_FAILED = ("paxos_acceptor", "log_failed")


class LocalAcceptor:
    """See the module docstring."""

    def __init__(
        self,
        acceptor: Acceptor,
        acceptor_log: AcceptorLog,
        local: LocalNode,
        watched: set[tuple[str, Hashable]],
        *,
        compact: Callable[[AcceptorLog], bool] | None = None,
    ) -> None:
        self.acceptor = acceptor
        self.name = local.name
        self.durable_log = acceptor_log if acceptor_log.durability == "fsync" else None
        self.failed = acceptor_log.failure is not None
        self._log = acceptor_log
        self._deliver = local.deliver_message
        self._deliver_named = local.deliver_named
        self._watched = watched
        self._should_compact = compact or (lambda lg: lg.should_compact())
        acceptor_log.on_failure = self._log_failed
        self._order = ReplyOrder()  # what waits for which record in flight (group commit)
        self._appends = 0
        # (bucket, key) -> since when (monotonic) it has been a tombstone here, oldest first
        self._tombstones: OrderedDict[tuple[str, Hashable], float] = OrderedDict()
        now = time.monotonic()
        for record in acceptor.records():
            if acceptor.tombstone(record.bucket, record.key) is not None:
                self._tombstones[(record.bucket, record.key)] = now

    def heard(self, node: str, incarnation: int) -> None:
        self.acceptor.heard(node, incarnation, time.monotonic())

    def handle(self, sender: Pid, msg: Prepare | Accept) -> Reply | None:
        """Vote on ``msg`` from proposer ``sender``.

        Returns the reply if it may go out now; otherwise None, and the reply
        is delivered to ``sender`` (flat, `wire_format`) once durable.
        None also when this acceptor no longer votes.
        """
        now = time.monotonic()
        acceptor = self.acceptor
        acceptor.heard(sender.node, sender.incarnation, now)
        if self.failed:
            return None
        if self._log.failure is not None:  # a reply may not wait for records that never sync
            self._stop_voting(self._log.failure)
            return None
        notice = None
        reply: Reply
        record: KeyRecord | PromiseFloor | None
        if isinstance(msg, Accept):
            reply, accepted = acceptor.on_accept(msg, now)
            if accepted is not None:
                notice = self._notice(accepted)
                self._track(accepted, now)
            record = accepted
        else:
            reply, record = acceptor.on_prepare(msg, now)
        durable_log = self.durable_log
        if durable_log is None:  # memory durability: nothing to wait for
            if notice is not None:
                self._deliver_named(BINDINGS_NAME, self.name, notice)
            return reply
        order = self._order
        slot = (msg.bucket, msg.key)
        waiting = order.waiting_for(slot, record)
        if waiting is None:
            return reply
        waiting.append((sender, pack_reply(self.name, reply)))
        if record is None:
            return None  # queued behind the pending record of its key or floor
        if notice is not None:
            waiting.append((None, notice))
        if isinstance(record, PromiseFloor):
            log.debug("promise_floor_raised", node=self.name, floor=record.counter)
        self._append(order.slot_of(record, slot), record, waiting)
        return None

    def _append(self, slot: Any, record: LogRecord, waiting: Waiting) -> bool:
        """Log ``record``; what waits in ``waiting`` goes once it is durable. False if the log failed."""
        durable_log = self.durable_log
        assert durable_log is not None
        try:
            durable_log.append(encode_log_record(record), lambda: self._durable(slot, waiting))
        except AcceptorLogError as exc:
            self._stop_voting(exc)
            return False
        self._appends += 1
        self._order.appended(slot, waiting)
        if self._appends % _COMPACT_CHECK_EVERY == 0:
            self._maybe_compact()
        return True

    def persist(self, records: Iterable[LogRecord], on_durable: Callable[[], None] | None = None) -> None:
        """Log ``records`` in order; ``on_durable`` runs once the last is on disk (at once in
        memory). Replies for their keys wait for them, as for a vote's."""
        records = list(records)
        now = time.monotonic()
        for record in records:
            if isinstance(record, KeyRecord):
                self._track(record, now)
        if self.durable_log is None or not records:
            if on_durable is not None:
                on_durable()
            return
        last = len(records) - 1
        for i, record in enumerate(records):
            key_slot = (record.bucket, record.key) if isinstance(record, KeyRecord) else MEMBER
            slot = self._order.slot_of(record, key_slot)
            waiting: Waiting = [(on_durable, None)] if i == last and on_durable is not None else []
            if not self._append(slot, record, waiting):
                return

    # -- membership: the cluster, its voter configurations, catching up --------------------

    def found(self, cluster: str, config: VoterConfig, voting: bool, on_durable: Callable[[], None]) -> None:
        """This acceptor is a voter of the new cluster ``cluster`` (``voting``: it may vote at once)."""
        record = self.acceptor.found(cluster, config, voting)
        log.info("acceptor_founded", node=self.name, cluster=cluster, config=config.describe(), voting=voting)
        self.persist([record], on_durable)

    def install(self, cluster: str, config: VoterConfig, on_durable: Callable[[], None] | None = None) -> None:
        """Install a newer configuration; ``on_durable`` once it is on disk (for one not
        newer: once the record that installed it or a newer one is, if still pending)."""
        record = self.acceptor.install(cluster, config)
        if record is None:
            self._after(MEMBER, on_durable)
        else:
            self.persist([record], on_durable)

    def catch_up(
        self,
        records: Iterable[LogRecord],
        floor: int,
        on_voting: Callable[[], None],
        encoded: Mapping[tuple[str, Hashable], tuple[LogRecord, bytes]] | None = None,
    ) -> int:
        """Take the state read from the other voters, then vote once it is durable; how many
        records were taken (`Acceptor.adopt`). ``encoded``: the log bytes a key's record was
        read as, written as they are. The records are logged at once, with no reply waiting
        on each: this acceptor answers no round before its vote is durable, after them."""
        taken = self.acceptor.adopt(records, floor)
        now = time.monotonic()
        for record in taken:
            if isinstance(record, KeyRecord):
                self._track(record, now)

        def durable() -> None:
            self.persist([self.acceptor.start_voting()], on_voting)

        if self.durable_log is None:
            durable()
            return len(taken)
        raws = []
        for record in taken:
            known = encoded.get((record.bucket, record.key)) if encoded and isinstance(record, KeyRecord) else None
            raws.append(known[1] if known is not None and known[0] is record else encode_log_record(record))
        try:
            self.durable_log.append_many(raws, durable)
        except AcceptorLogError as exc:
            self._stop_voting(exc)
            return len(taken)
        self._appends += len(raws)
        self._maybe_compact()
        return len(taken)

    def fence(self, ballot: Ballot, on_durable: Callable[[], None]) -> None:
        """Promise ``ballot`` for every key (`Acceptor.fence`); ``on_durable`` once it holds
        across a restart."""
        record = self.acceptor.fence(ballot)
        if record is None:
            self._after(FLOOR, on_durable)  # covered by the floor, which may still be pending
        else:
            self.persist([record], on_durable)

    def _after(self, slot: Any, on_durable: Callable[[], None] | None) -> None:
        """Run ``on_durable`` once no record of ``slot`` is pending (at once if none is)."""
        if on_durable is None:
            return
        waiting = self._order.after(slot)
        if waiting is None:
            on_durable()
        else:
            waiting.append((on_durable, None))

    def bulk_accept(
        self,
        ballot: Ballot,
        config: int,
        items: Iterable[tuple[str, Hashable, Register]],
        on_durable: Callable[[list[Hashable]], None],
    ) -> None:
        """Accept each ``(bucket, key, register)`` at ``ballot`` as an `Accept` would; once
        durable, ``on_durable`` gets the ``(bucket, key)`` slots refused (promised higher, vetoed)."""
        now = time.monotonic()
        acceptor = self.acceptor
        refused: list[Hashable] = []
        records: list[LogRecord] = []
        notices = []
        for bucket, key, register in items:
            reply, record = acceptor.on_accept(Accept(bucket, key, ballot, register, None, config), now)
            if reply.__class__ is not Accepted:
                refused.append((bucket, key))
            elif record is not None:
                records.append(record)
                notice = self._notice(record)
                if notice is not None:
                    notices.append(notice)

        def durable() -> None:
            for notice in notices:
                self._deliver_named(BINDINGS_NAME, self.name, notice)
            on_durable(refused)

        self.persist(records, durable)

    # -- tombstone collection ---------------------------------------------------------

    def _track(self, record: KeyRecord, now: float) -> None:
        slot = (record.bucket, record.key)
        if record.accepted.filled:
            self._tombstones.pop(slot, None)
        else:
            self._tombstones[slot] = now
            self._tombstones.move_to_end(slot)

    def due_tombstones(self, age: float, limit: int) -> list[tuple[str, Hashable]]:
        """Up to ``limit`` keys that have been tombstones here for ``age`` seconds, oldest
        first; they count as fresh again (`collect` forgets them for good)."""
        horizon = time.monotonic() - age
        due: list[tuple[str, Hashable]] = []
        tombstones = self._tombstones
        while tombstones and len(due) < limit:
            slot, since = next(iter(tombstones.items()))
            if since > horizon:
                break
            tombstones.move_to_end(slot)
            tombstones[slot] = time.monotonic()
            due.append(slot)
        return due

    def held_tombstones(self, bucket: str, keys: Iterable[Hashable]) -> list[tuple[Hashable, Ballot]]:
        """Which of ``keys`` this acceptor holds as DURABLE tombstones, and at which ballot."""
        if self.failed or self._log.failure is not None:
            return []
        held = []
        pending = self._order.pending
        for key in keys:
            ballot = self.acceptor.tombstone(bucket, key)
            if ballot is not None and not pending((bucket, key)):
                held.append((key, ballot))
        return held

    def collect(self, bucket: str, tombstones: Iterable[tuple[Hashable, Ballot]]) -> int:
        """Drop the tombstones every voter holds (the collector checked); how many went."""
        if self.failed or self._log.failure is not None:
            return 0
        record = self.acceptor.collect(bucket, tombstones)
        if record is None:
            return 0
        for key in record.keys:
            self._tombstones.pop((bucket, key), None)
        if self.durable_log is not None:
            try:
                self.durable_log.append(encode_log_record(record))
            except AcceptorLogError as exc:
                self._stop_voting(exc)
        return len(record.keys)

    def tombstone_count(self) -> int:
        """How many keys this acceptor holds as tombstones."""
        return len(self._tombstones)

    def _durable(self, slot: Any, waiting: Waiting) -> None:
        """The log's callback (in its writer greenlet): the batch is on disk."""
        for to, msg in self._order.durable(slot, waiting):
            if to is None:
                self._deliver_named(BINDINGS_NAME, self.name, msg)
            elif to.__class__ is Pid:
                self._deliver(to, msg)
            else:
                to()  # a callback of `persist`

    def _notice(self, record: KeyRecord) -> AcceptedNotice | None:
        """A notice for the binding watcher, if this accept concerns a binding."""
        register = record.accepted
        if register.binding is not None or (record.bucket, record.key) in self._watched:
            return AcceptedNotice(record.bucket, record.key, register)
        return None

    def _stop_voting(self, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            log.error(
                "acceptor_stopped_voting",
                node=self.name,
                error=repr(exc),
                directory=str(self._log.directory),
                action="free space on its disk (or fix it): this voter resumes by itself once writes "
                "succeed; a restart also resumes it, from its log, which holds every vote it answered",
            )
            self._deliver_named(ACCEPTOR_NAME, self.name, LOG_FAILED)

    def _log_failed(self, failure: Exception) -> None:
        """The log's failure callback (in its writer greenlet): stop voting now, not at the next vote."""
        self._stop_voting(failure)

    def resume(self) -> bool:
        """Vote again if the log can be made whole (`AcceptorLog.resume` with this acceptor's
        state); False, and still not voting, while the disk refuses. Blocks while it writes."""
        if not self.failed:
            return True
        try:
            self._log.resume(encode_log_record(record) for record in self.acceptor.snapshot())
        except (OSError, AcceptorLogError) as exc:
            log.warning("acceptor_resume_failed", node=self.name, error=repr(exc), directory=str(self._log.directory))
            return False
        self._order.clear()  # their replies waited for records that were never durable: dropped
        self.failed = False
        log.info("acceptor_resumed_voting", node=self.name, keys=self.acceptor.key_count())
        return True

    def _maybe_compact(self) -> None:
        durable_log = self.durable_log
        if durable_log is None or not self._should_compact(durable_log):
            return
        try:
            durable_log.compact(encode_log_record(record) for record in self.acceptor.snapshot())
        except AcceptorLogError as exc:
            log.warning("acceptor_compaction_not_started", node=self.name, error=repr(exc))
