"""Patient consensus for the Paxtor layer: rounds retried until a deadline, and lease terms.

Locks and singletons are CP: without a quorum they wait (or time out) rather
than guess. These helpers turn PaxosKV's `NoQuorum` into "wait for the quorum
and try again" until the caller's deadline, and fetch the node's current lease
term, waiting for one when the node has none (a node without a valid lease
grants nothing new; see the lease rules in docs/protocol.md).

Every change the Paxtor layer proposes is idempotent (a retried round whose
first attempt was chosen after all finds its work done), so retrying a round
that raised `NoQuorum` is safe.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

import gevent
import structlog

from paxtor import paxos
from paxtor.actors.errors import PaxtorTimeout
from paxtor.actors.mailbox import check_timeout
from paxtor.paxos.keys import canonical_key
from paxtor.paxos.register import ChangeFunction, EndedBinding, Register
from paxtor.paxos.request_size import check_length, encode_within, node_request_limit

__all__ = ["Deadline", "paxos_key", "propose", "lease_term", "end_tenure"]

log = structlog.get_logger(__name__)

#: Longest single wait for a quorum before the deadline is looked at again.
QUORUM_WAIT = 1.0
#: When the quorum is back but the lease not yet renewed, look again this often.
LEASE_RECHECK = 0.01


class Deadline:
    """A point in monotonic time, or none (wait forever)."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        if timeout is None:
            self.at: float | None = None
            return
        check_timeout(timeout)
        self.at = time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        if self.at is None:
            return None
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def cap(self, seconds: float) -> float:
        """`seconds`, or less if the deadline comes sooner."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


def paxos_key(key: Any) -> bytes:
    """The PaxosKV key of a user key: the wire encoding of its canonical form.

    Any value the wire can carry is a key (tuples, lists, sets, dicts, pids...).
    Keys equal in Python are one key (`paxtor.paxos.keys`: ``1``, ``True`` and
    ``1.0``; dicts in any order), as in PaxosKV. ValueError for a NaN inside
    the key, or a key over the node's ``max_request_bytes``; TypeError for one
    the wire cannot carry.
    """
    limit = node_request_limit()
    check_length(key, limit, "the key")
    try:
        return encode_within(canonical_key(key), limit, "the key")
    except TypeError as exc:
        raise TypeError(f"a Paxtor key must be a value the wire can carry: {exc}") from None


def _wait_for_quorum(deadline: Deadline) -> None:
    try:
        paxos.wait_for_quorum(timeout=deadline.cap(QUORUM_WAIT))
    except paxos.NoQuorum:
        pass


def propose(
    bucket: str,
    key: Hashable,
    change: ChangeFunction,
    deadline: Deadline,
    *,
    ended: EndedBinding | None = None,
) -> Register:
    """One round applying `change`, retried across `NoQuorum` until `deadline` (TimeoutError)."""
    extra: dict[str, Any] = {} if ended is None else {"ended": ended}
    while True:
        if deadline.expired():
            raise PaxtorTimeout(f"no quorum for {bucket} before the deadline")
        try:
            return paxos.propose(key, change, bucket=bucket, timeout=deadline.remaining(), **extra)
        except paxos.NoQuorum:
            log.debug("round_without_quorum", bucket=bucket)
            _wait_for_quorum(deadline)


def lease_term(deadline: Deadline) -> int:
    """This node's current lease term, waiting (until `deadline`) while it has none."""
    while True:
        term = paxos.lease_term()
        if term is not None:
            return term
        if deadline.expired():
            raise PaxtorTimeout("this node holds no lease (no quorum) and the deadline passed")
        _wait_for_quorum(deadline)
        if paxos.lease_term() is None:
            gevent.sleep(deadline.cap(LEASE_RECHECK))


def end_tenure(bucket: str, key: Hashable, change: ChangeFunction, ended: EndedBinding, deadline: Deadline) -> Register:
    """A release round: `change` (a ``release_if_bound(ended, ...)``) justified by `ended`."""
    return propose(bucket, key, change, deadline, ended=ended)
