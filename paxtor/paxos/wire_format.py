"""Flat forms of the Paxos round messages, for the network (pure).

A round's messages are the hot path of PaxosKV: every put is two to four of
them per voter. As nested dataclasses (an envelope holding an `Accept`
holding two `Ballot`s and a `Register`...) each costs the wire codec one
Python callback per object, on both sides; as ONE flat tuple of scalars it
costs one (the README's "How it compares" gives the figure). Only the rare
parts (a `Binding`, lease fences) stay objects inside the tuple.

    ("p1a", sender_node, sender_incarnation, sender_serial, bucket, key, *ballot, config[, fence])
    ("p2a", sender..., bucket, key, *ballot, config, *next_ballot_or_nones, *register)
    ("p1b", voter, bucket, key, *ballot, *accepted_ballot, *register)
    ("p2b", voter, bucket, key, *ballot, promised_next)
    ("nak", voter, bucket, key, *ballot, *promised, reason, config)

with ``ballot = counter, node_name, incarnation`` and ``register = epoch,
filled, value, binding, fences, marks`` (``fences`` and ``marks`` None when
empty), ``config`` a voter configuration version. `unpack_*`
raise ValueError for anything malformed (the caller drops it and logs).
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.framing import MAX_FRAME_SIZE
from paxtor.actors.ids import Pid
from paxtor.paxos.acceptor import Accept, Accepted, Nack, Prepare, Promise
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Binding, LeaseFence, Register, is_op_mark

__all__ = [
    "REQUEST_TAGS",
    "REPLY_TAGS",
    "pack_request",
    "unpack_request",
    "pack_reply",
    "unpack_reply",
    "MAX_ENCODED_SIZE",
]

#: The largest encoded key or register value PaxosKV takes: an accept carries it in one
#: wire frame (and one log record, same limit), with room left for the round's other fields.
MAX_ENCODED_SIZE = MAX_FRAME_SIZE - 2**20

P1A, P2A, P1B, P2B, NACK = "p1a", "p2a", "p1b", "p2b", "nak"
REQUEST_TAGS = frozenset((P1A, P2A))
REPLY_TAGS = frozenset((P1B, P2B, NACK))

_ballot = Ballot.from_parts


def _register(epoch: Any, filled: Any, value: Any, binding: Any, fences: Any, marks: Any) -> Register:
    if binding is not None and binding.__class__ is not Binding:
        raise ValueError(f"not a Binding: {binding!r}")
    if fences is None:
        fences = ()
    elif fences.__class__ is not tuple or any(f.__class__ is not LeaseFence for f in fences):
        raise ValueError(f"not lease fences: {fences!r}")
    if filled.__class__ is not bool:
        raise ValueError(f"filled must be a bool, got {filled!r}")
    if marks is None:
        marks = ()
    elif marks.__class__ is not tuple or not all(is_op_mark(m) for m in marks):
        raise ValueError(f"not op marks: {marks!r}")
    return Register(epoch, filled, value, binding, fences, marks)


def _flat_register(r: Register) -> tuple[Any, ...]:
    return (r.epoch, r.filled, r.value, r.binding, r.lease_fences or None, r.op_marks or None)


# -- proposer -> acceptor ----------------------------------------------------------------


def pack_request(sender: Pid, msg: Prepare | Accept) -> tuple[Any, ...]:
    """The flat form of phase 1a/2a from proposer process ``sender``."""
    b = msg.ballot
    head = (
        sender.node, sender.incarnation, sender.serial, msg.bucket, msg.key,
        b.counter, b.node[0], b.node[1], msg.config,
    )  # fmt: skip
    if isinstance(msg, Prepare):
        return (P1A, *head) if msg.lease_fence is None else (P1A, *head, msg.lease_fence)
    n = msg.next_ballot
    nxt = (None, None, None) if n is None else (n.counter, n.node[0], n.node[1])
    return (P2A, *head, *nxt, *_flat_register(msg.register))


def unpack_request(t: tuple[Any, ...]) -> tuple[Pid, Prepare | Accept]:
    """(sender, message) from `pack_request`'s form; ValueError if malformed."""
    try:
        tag = t[0]
        sender = Pid(t[1], t[2], t[3])
        ballot = _ballot(t[6], t[7], t[8])
        config = t[9]
        if config.__class__ is not int:
            raise ValueError(f"bad configuration version {config!r}")
        if tag == P1A and len(t) == 10:
            return sender, Prepare(t[4], t[5], ballot, None, config)
        if tag == P1A and len(t) == 11 and isinstance(t[10], LeaseFence):
            return sender, Prepare(t[4], t[5], ballot, t[10], config)
        if tag == P2A and len(t) == 19:
            nxt = None if t[10] is None else _ballot(t[10], t[11], t[12])
            return sender, Accept(t[4], t[5], ballot, _register(*t[13:19]), nxt, config)
    except (TypeError, IndexError) as exc:
        raise ValueError(f"malformed paxos request: {exc}") from None
    raise ValueError(f"malformed paxos request {str(t)[:200]}")


# -- acceptor -> proposer ------------------------------------------------------------------


def pack_reply(voter: str, msg: Promise | Accepted | Nack) -> tuple[Any, ...]:
    """The flat form of phase 1b/2b (or a refusal) from the acceptor of node ``voter``."""
    b = msg.ballot
    head = (voter, msg.bucket, msg.key, b.counter, b.node[0], b.node[1])
    if isinstance(msg, Accepted):
        return (P2B, *head, msg.promised_next)
    if isinstance(msg, Promise):
        a = msg.accepted_ballot
        return (P1B, *head, a.counter, a.node[0], a.node[1], *_flat_register(msg.accepted))
    p = msg.promised
    return (NACK, *head, p.counter, p.node[0], p.node[1], msg.reason, msg.config)


def unpack_reply(t: tuple[Any, ...]) -> tuple[str, Promise | Accepted | Nack]:
    """(voter, message) from `pack_reply`'s form; ValueError if malformed."""
    try:
        tag = t[0]
        voter = t[1]
        ballot = _ballot(t[4], t[5], t[6])
        if tag == P2B and len(t) == 8:
            return voter, Accepted(t[2], t[3], ballot, bool(t[7]))
        if tag == P1B and len(t) == 16:
            accepted_ballot = _ballot(t[7], t[8], t[9])
            return voter, Promise(t[2], t[3], ballot, accepted_ballot, _register(*t[10:16]))
        if tag == NACK and len(t) == 12 and t[11].__class__ is int:
            return voter, Nack(t[2], t[3], ballot, _ballot(t[7], t[8], t[9]), t[10], t[11])
    except (TypeError, IndexError) as exc:
        raise ValueError(f"malformed paxos reply: {exc}") from None
    raise ValueError(f"malformed paxos reply {str(t)[:200]}")
