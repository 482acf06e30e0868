"""The acceptor log's record codec: `LogRecord` <-> bytes, pure.

Records are written as flat tuples with a kind tag, so the log does not
depend on where a class lives or on its wire name:

    (1, bucket, key, *promised, *accepted_ballot, *register)    a `KeyRecord`
    (2, counter)                                                a `PromiseFloor`
    (3, bucket, keys, counter, epoch)                           a `Collected`
    (4, cluster, version, voters, previous, voting, node)       a `MemberState`

with ``ballot = counter, node_name, incarnation``, ``register = epoch, filled,
value, binding, fences, marks``, ``binding = None | (pid, node, parent,
until)``, ``fences = ((epoch, binding), ...)`` and ``marks = ((node,
incarnation, op), ...)``; a `MemberState` without a configuration has version
0. Keys and values are whatever the wire codec carries
(`paxtor.actors.wire`), so a value holding an application's own `@wire_type`
depends on that type's (pinned) name.

Logs written before this codec hold wire-encoded dataclasses under module-path
names; `decode_log_record` still reads them (`LEGACY_NAMES`), and the next
compaction rewrites them in this format. The file framing around records is
`paxtor.paxos.log_format`.
"""

from __future__ import annotations

from typing import Any

from paxtor.actors.errors import PaxtorError
from paxtor.actors.ids import Pid
from paxtor.actors.wire import WireError, decode, decode_renamed, encode
from paxtor.paxos.acceptor import Collected, KeyRecord, LogRecord, MemberState, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.register import Binding, LeaseFence, OpMark, Register, is_op_mark
from paxtor.paxos.voter_config import VoterConfig

__all__ = [
    "KEY_RECORD",
    "LEGACY_NAMES",
    "LogRecordCorrupt",
    "decode_log_fields",
    "decode_log_record",
    "encode_log_record",
    "record_from_fields",
]

_KEY, _FLOOR, _COLLECTED, _MEMBER = 1, 2, 3, 4
#: The kind tag of a `KeyRecord`'s fields: ``(1, bucket, key, promised counter, node,
#: incarnation, accepted counter, node, incarnation, *register)``.
KEY_RECORD = _KEY

#: Module-path wire names that logs written before the names were pinned hold.
LEGACY_NAMES = {
    "paxtor.paxos.acceptor:KeyRecord": "paxos.KeyRecord",
    "paxtor.paxos.acceptor:PromiseFloor": "paxos.PromiseFloor",
    "paxtor.paxos.acceptor:Collected": "paxos.Collected",
    "paxtor.paxos.ballot:Ballot": "paxos.Ballot",
    "paxtor.paxos.register:Register": "paxos.Register",
    "paxtor.paxos.register:Binding": "paxos.Binding",
    "paxtor.paxos.register:LeaseFence": "paxos.LeaseFence",
    "paxtor.paxos.register:EndedBinding": "paxos.EndedBinding",
}


class LogRecordCorrupt(PaxtorError, ValueError):
    """A record whose frame checked but whose content is not an acceptor record."""


def encode_log_record(record: LogRecord) -> bytes:
    """The bytes of one record (framed and checksummed by the log around them)."""
    cls = record.__class__
    if cls is KeyRecord:
        p, a, r = record.promised, record.accepted_ballot, record.accepted  # type: ignore[union-attr]
        return encode((
            _KEY, record.bucket, record.key,  # type: ignore[union-attr]
            p.counter, p.node[0], p.node[1], a.counter, a.node[0], a.node[1],
            r.epoch, r.filled, r.value, _flat_binding(r.binding),
            tuple((f.epoch, _flat_binding(f.binding)) for f in r.lease_fences), r.op_marks,
        ))  # fmt: skip
    if cls is PromiseFloor:
        return encode((_FLOOR, record.counter))  # type: ignore[union-attr]
    if cls is Collected:
        return encode((_COLLECTED, record.bucket, record.keys, record.counter, record.epoch))  # type: ignore[union-attr]
    if cls is MemberState:
        c = record.config  # type: ignore[union-attr]
        flat = (0, (), None) if c is None else (c.version, c.voters, c.previous)
        return encode((_MEMBER, record.cluster, *flat, record.voting, record.node))  # type: ignore[union-attr]
    raise TypeError(f"not an acceptor log record: {record!r}")


def decode_log_record(data: bytes) -> LogRecord:
    """The record `encode_log_record` wrote (or a legacy one); `LogRecordCorrupt` otherwise."""
    try:
        item = decode_renamed(data, LEGACY_NAMES)
        if item.__class__ is tuple and item and item[0].__class__ is int:
            return _from_flat(item)
    except (WireError, ValueError, TypeError, IndexError) as exc:
        raise LogRecordCorrupt(f"unreadable acceptor record: {exc}") from None
    if item.__class__ in (KeyRecord, PromiseFloor, Collected):  # the legacy format had no others
        return item
    raise LogRecordCorrupt(f"acceptor log holds a {type(item).__name__}, not an acceptor record")


def decode_log_fields(data: bytes) -> tuple[Any, ...]:
    """The flat fields of a record `encode_log_record` wrote, not yet a record: a reader that
    keeps few of many records (a catch-up reads every key from each voter) looks at their
    ballots first and builds only those it keeps (`record_from_fields`)."""
    try:
        item = decode(data)
    except WireError as exc:
        raise LogRecordCorrupt(f"unreadable acceptor record: {exc}") from None
    if item.__class__ is not tuple or not item or item[0].__class__ is not int:
        raise LogRecordCorrupt("not the fields of an acceptor record")
    return item


def record_from_fields(fields: tuple[Any, ...]) -> LogRecord:
    """The record of `decode_log_fields`'s fields; `LogRecordCorrupt` if they are not one."""
    try:
        return _from_flat(fields)
    except (ValueError, TypeError, IndexError) as exc:
        raise LogRecordCorrupt(f"unreadable acceptor record: {exc}") from None


def _from_flat(t: tuple[Any, ...]) -> LogRecord:
    kind = t[0]
    if kind == _KEY and len(t) == 15:
        register = Register(t[9], _bool(t[10]), t[11], _binding(t[12]), _fences(t[13]), _marks(t[14]))
        return KeyRecord(_str(t[1]), t[2], _ballot(t[3], t[4], t[5]), _ballot(t[6], t[7], t[8]), register)
    if kind == _FLOOR and len(t) == 2:
        return PromiseFloor(_int(t[1]))
    if kind == _COLLECTED and len(t) == 5 and t[2].__class__ is tuple:
        return Collected(_str(t[1]), t[2], _int(t[3]), _int(t[4]))
    if kind == _MEMBER and len(t) == 7:
        config = None if t[2] == 0 else VoterConfig(_int(t[2]), t[3], t[4])
        return MemberState(_str(t[1]), config, _bool(t[5]), _str(t[6]))
    raise ValueError(f"unknown record shape (kind {kind!r}, {len(t)} fields)")


def _flat_binding(b: Binding | None) -> tuple[Any, ...] | None:
    return None if b is None else (b.pid, b.node, b.parent, b.until)


def _binding(t: Any) -> Binding | None:
    if t is None:
        return None
    if t.__class__ is not tuple or len(t) != 4 or (t[0] is not None and t[0].__class__ is not Pid):
        raise ValueError(f"not a binding: {t!r}")
    return Binding(*t)


def _fences(t: Any) -> tuple[LeaseFence, ...]:
    if t.__class__ is not tuple:
        raise ValueError(f"not lease fences: {t!r}")
    fences = []
    for fence in t:
        binding = _binding(fence[1])
        if binding is None:
            raise ValueError("a lease fence without a binding")
        fences.append(LeaseFence(_int(fence[0]), binding))
    return tuple(fences)


def _marks(t: Any) -> tuple[OpMark, ...]:
    if t.__class__ is not tuple or not all(is_op_mark(m) for m in t):
        raise ValueError(f"not op marks: {t!r}")
    return t


_ballot = Ballot.from_parts


def _int(v: Any) -> int:
    if v.__class__ is not int:
        raise ValueError(f"expected an int, got {v!r}")
    return v


def _str(v: Any) -> str:
    if v.__class__ is not str:
        raise ValueError(f"expected a str, got {v!r}")
    return v


def _bool(v: Any) -> bool:
    if v.__class__ is not bool:
        raise ValueError(f"expected a bool, got {v!r}")
    return v
