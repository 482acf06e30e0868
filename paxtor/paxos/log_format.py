"""The on-disk format of the acceptor log: pure functions over bytes and file names.

Every file starts with a 32-byte header:

    magic "PXTRLOG\\0" | version u16 | kind u8 | flags u8 | generation u64
    | record count u64 (snapshots; 0 otherwise) | crc32 of the 28 bytes before it

followed by records, each framed as

    length u32 | crc32(length bytes + payload) u32 | payload

(all little-endian). The crc covers the length, so a corrupt length is caught
like a corrupt payload. A frame of zeros never checks, so a file extended
with zeros by a crash reads as a torn tail, not as empty records.

A data directory holds `segment-<gen>.log` files (appends) and at most one
live `snapshot-<gen>.snap` (a compacted image of everything before segment
<gen>). Nothing here touches the disk: `paxtor.paxos.storage` drives it.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from paxtor.actors.errors import PaxtorError

__all__ = [
    "HEADER_SIZE",
    "KIND_META",
    "KIND_SEGMENT",
    "KIND_SNAPSHOT",
    "MAGIC",
    "MAX_RECORD_SIZE",
    "RECORD_OVERHEAD",
    "TMP_SUFFIX",
    "VERSION",
    "FileHeader",
    "Layout",
    "LogCorrupt",
    "ParsedFile",
    "decode_header",
    "encode_header",
    "encode_record",
    "find_valid_record",
    "parse_file",
    "plan_layout",
    "scan_records",
    "segment_name",
    "snapshot_name",
]

MAGIC = b"PXTRLOG\x00"
VERSION = 1
KIND_SEGMENT = 1
KIND_SNAPSHOT = 2
KIND_META = 3
_KIND_NAMES = {KIND_SEGMENT: "segment", KIND_SNAPSHOT: "snapshot", KIND_META: "meta"}

_HEADER_BODY = struct.Struct("<8sHBBQQ")
_HEADER_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER_BODY.size + _HEADER_CRC.size  # 32
_RECORD_HEADER = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
RECORD_OVERHEAD = _RECORD_HEADER.size

# A bound on one record: a length beyond it is corruption, not a big record.
MAX_RECORD_SIZE = 64 * 1024 * 1024

TMP_SUFFIX = ".tmp"
_SEGMENT_RE = re.compile(r"^segment-(\d{16})\.log$")
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{16})\.snap$")
_TEMP_RE = re.compile(r"^(segment|snapshot)-\d{16}\.(log|snap)\.tmp$")


class LogCorrupt(PaxtorError, ValueError):
    """The bytes on disk are not what this module wrote: refuse, do not guess."""


@dataclass(frozen=True)
class FileHeader:
    kind: int
    generation: int
    record_count: int = 0


def encode_header(header: FileHeader) -> bytes:
    body = _HEADER_BODY.pack(MAGIC, VERSION, header.kind, 0, header.generation, header.record_count)
    return body + _HEADER_CRC.pack(zlib.crc32(body))


def decode_header(data: bytes | memoryview) -> FileHeader:
    """Parse and check a file header; `LogCorrupt` says exactly what is wrong."""
    if len(data) < HEADER_SIZE:
        raise LogCorrupt(f"file header truncated ({len(data)} of {HEADER_SIZE} bytes)")
    body = bytes(data[: _HEADER_BODY.size])
    magic, version, kind, _flags, generation, count = _HEADER_BODY.unpack(body)
    if magic != MAGIC:
        raise LogCorrupt(f"not a paxtor acceptor log file (magic {magic!r})")
    (crc,) = _HEADER_CRC.unpack_from(data, _HEADER_BODY.size)
    if crc != zlib.crc32(body):
        raise LogCorrupt("file header checksum mismatch")
    if version != VERSION:
        raise LogCorrupt(f"unsupported log format version {version} (this code reads {VERSION})")
    if kind not in _KIND_NAMES:
        raise LogCorrupt(f"unknown file kind {kind}")
    return FileHeader(kind, generation, count)


def encode_record(payload: bytes) -> bytes:
    """Frame one record: length, crc32 over length and payload, payload."""
    if len(payload) > MAX_RECORD_SIZE:
        raise ValueError(f"record of {len(payload)} bytes exceeds the {MAX_RECORD_SIZE}-byte limit")
    length = _LENGTH.pack(len(payload))
    return length + _LENGTH.pack(zlib.crc32(payload, zlib.crc32(length))) + payload


@dataclass(frozen=True)
class _Scan:
    records: list[bytes]
    good_end: int  # offset just past the last good record
    problem: str | None  # why scanning stopped before the end of the data


def _record_at(data: bytes | memoryview, offset: int) -> tuple[int, str | None]:
    """Check the frame at `offset`: (payload length, None) if valid, else (0, reason)."""
    if len(data) - offset < RECORD_OVERHEAD:
        return 0, "truncated record header"
    length, crc = _RECORD_HEADER.unpack_from(data, offset)
    if length > MAX_RECORD_SIZE:
        return 0, f"impossible record length {length}"
    end = offset + RECORD_OVERHEAD + length
    if end > len(data):
        return 0, "truncated record"
    start = offset + _LENGTH.size
    if zlib.crc32(data[offset + RECORD_OVERHEAD : end], zlib.crc32(data[offset:start])) != crc:
        return 0, "record checksum mismatch"
    return length, None


def scan_records(data: bytes | memoryview, start: int = HEADER_SIZE) -> _Scan:
    """Read consecutive valid records from `start` until the end or the first bad frame."""
    view = memoryview(data)
    records: list[bytes] = []
    offset = start
    while offset < len(view):
        length, problem = _record_at(view, offset)
        if problem is not None:
            return _Scan(records, offset, problem)
        body = offset + RECORD_OVERHEAD
        records.append(bytes(view[body : body + length]))
        offset = body + length
    return _Scan(records, offset, None)


def find_valid_record(data: bytes | memoryview, after: int) -> int | None:
    """The first offset past `after` where a valid frame starts, if any.

    This is what tells a torn tail (nothing valid follows the bad frame: the
    write of the last batch was cut) from corruption in the middle (valid,
    hence acknowledged, records follow it). A random false match needs a
    32-bit crc to agree by chance.
    """
    view = memoryview(data)
    for offset in range(after + 1, len(view) - RECORD_OVERHEAD + 1):
        if _record_at(view, offset)[1] is None:
            return offset
    return None


@dataclass(frozen=True)
class ParsedFile:
    """A checked file: its records, and where a torn tail (if any) starts."""

    header: FileHeader | None  # None: the header itself was torn (file being created)
    records: list[bytes]
    good_end: int
    torn: str | None  # why the tail was cut, None if the file is whole


def parse_file(
    data: bytes | memoryview,
    *,
    kind: int,
    generation: int | None,
    tail_may_be_torn: bool,
) -> ParsedFile:
    """Check one file's bytes and return its records.

    With `tail_may_be_torn` (the last segment only: the one a crash can have
    cut mid-write), a short header or a bad frame with nothing valid after it
    is reported in `torn` for the caller to cut. Anything else wrong raises
    `LogCorrupt`: a bad frame followed by valid ones means acknowledged
    records are damaged, and a snapshot is never written in place.
    """
    if tail_may_be_torn and len(data) < HEADER_SIZE:
        return ParsedFile(None, [], 0, f"file header truncated ({len(data)} bytes)")
    header = decode_header(data)
    if header.kind != kind:
        raise LogCorrupt(f"expected a {_KIND_NAMES[kind]} file, found a {_KIND_NAMES[header.kind]}")
    if generation is not None and header.generation != generation:
        raise LogCorrupt(f"header says generation {header.generation}, file name says {generation}")
    scan = scan_records(data)
    if scan.problem is not None:
        following = find_valid_record(data, scan.good_end)
        if not tail_may_be_torn or following is not None:
            where = f"; a valid record follows at offset {following}" if following is not None else ""
            raise LogCorrupt(f"{scan.problem} at offset {scan.good_end}{where}")
    if kind == KIND_SNAPSHOT and len(scan.records) != header.record_count:
        raise LogCorrupt(
            f"snapshot holds {len(scan.records)} records, its header says {header.record_count}"
        )
    return ParsedFile(header, scan.records, scan.good_end, scan.problem)


def segment_name(generation: int) -> str:
    return f"segment-{generation:016d}.log"


def snapshot_name(generation: int) -> str:
    return f"snapshot-{generation:016d}.snap"


@dataclass(frozen=True)
class Layout:
    """What a directory listing means: what to replay and what to clean up."""

    snapshot: int | None  # generation of the snapshot to replay first
    segments: tuple[int, ...]  # generations to replay after it, ascending
    obsolete: tuple[str, ...]  # files superseded by the snapshot (interrupted compaction)
    temporaries: tuple[str, ...]  # unfinished snapshot files (interrupted compaction)


def generation_of(name: str) -> int | None:
    """The generation in a segment's, snapshot's or temporary's file name; None for other files."""
    match = _SEGMENT_RE.match(name) or _SNAPSHOT_RE.match(name) or _TEMP_RE.match(name)
    if match is None:
        return None
    return int(name.split("-", 1)[1].split(".", 1)[0])


def plan_layout(names: Iterable[str]) -> Layout:
    """Decide replay order from file names alone; refuse a directory with a gap.

    The newest snapshot wins. Compaction makes segment <g> durable before it
    writes snapshot <g>, and deletes older files only once snapshot <g> is
    in place, so the segments to replay are <g>, <g+1>, ... with no hole
    (from 1 when there is no snapshot). A hole means files were lost.
    """
    segments: list[int] = []
    snapshots: list[int] = []
    temporaries: list[str] = []
    for name in sorted(names):
        if match := _SEGMENT_RE.match(name):
            segments.append(int(match.group(1)))
        elif match := _SNAPSHOT_RE.match(name):
            snapshots.append(int(match.group(1)))
        elif _TEMP_RE.match(name):
            temporaries.append(name)
    segments.sort()
    snapshot = max(snapshots, default=None)
    first = 1 if snapshot is None else snapshot
    live = [gen for gen in segments if gen >= first]
    obsolete = [snapshot_name(gen) for gen in sorted(snapshots) if gen != snapshot]
    obsolete += [segment_name(gen) for gen in segments if gen < first]
    if (snapshot is not None and not live) or live != list(range(first, first + len(live))):
        wanted = range(first, max(live, default=first) + 1)
        raise LogCorrupt(
            f"missing log segments: expected {', '.join(segment_name(gen) for gen in wanted)}, "
            f"found {', '.join(segment_name(gen) for gen in live) or 'none'}"
        )
    return Layout(snapshot, tuple(live), tuple(obsolete), tuple(temporaries))
