"""The acceptor log's record codec: every record round-trips, bad bytes are refused,
and a data directory written before the codec existed still opens."""

from __future__ import annotations

import shutil
from pathlib import Path

import gevent
import pytest

from paxtor.actors.ids import Pid
from paxtor.actors.wire import encode
from paxtor.paxos.acceptor import Collected, KeyRecord, MemberState, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.log_codec import (
    KEY_RECORD,
    LogRecordCorrupt,
    decode_log_fields,
    decode_log_record,
    encode_log_record,
    record_from_fields,
)
from paxtor.paxos.register import Binding, LeaseFence, Register
from paxtor.paxos.storage import AcceptorLog
from paxtor.paxos.voter_config import VoterConfig

FIXTURE = Path(__file__).parent.parent / "fixtures" / "datadir-v1" / "node2"

PID = Pid("node2", 7, 42)
B1 = Ballot(5, ("node1", 3))
B2 = Ballot(9, ("node3", 1))
B3 = Ballot(4294967301, ("node2", 7))

#: what the fixture holds, in log order (its snapshot, then its segment)
FIXTURE_RECORDS = [
    PromiseFloor(4294967296),
    KeyRecord("default", "plain", B1, B1, Register(1, True, {"a": [1, 2.5, None], "b": b"\x00\xff"})),
    KeyRecord(
        "default", ("tuple", 1, Pid("node1", 2, 3)), B2, B1,
        Register(3, True, "held", Binding(pid=PID), (), (("node1", 3, 17),)),
    ),
    KeyRecord(
        "locks", "fenced", B2, B2,
        Register(6, False, None, None, (LeaseFence(5, Binding(pid=PID)),), (("node3", 1, 2), ("node1", 3, 5))),
    ),
    KeyRecord(
        "default", "child", B1, B1,
        Register(2, True, frozenset({"x", "y"}), Binding(parent="plain", until=1_800_000_000_000, node="node3")),
    ),
    KeyRecord("default", "promised-only", B3, Ballot.ZERO, Register.empty(0)),
    Collected("default", ("gone1", ("gone", 2)), 77, 12),
]  # fmt: skip


MEMBERSHIP = [
    MemberState("c0ffee", VoterConfig(3, ("node1", "node2", "node4"), ("node1", "node2", "node3")), False),
    MemberState("c0ffee", VoterConfig(4, ("node1", "node2", "node4")), True),
    MemberState("", None, True),
]


@pytest.mark.parametrize("record", FIXTURE_RECORDS + MEMBERSHIP, ids=lambda r: type(r).__name__)
def test_every_record_round_trips(record: object) -> None:
    assert decode_log_record(encode_log_record(record)) == record  # type: ignore[arg-type]


@pytest.mark.parametrize("record", FIXTURE_RECORDS + MEMBERSHIP, ids=lambda r: type(r).__name__)
def test_fields_then_the_record_is_decoding_in_two_steps(record: object) -> None:
    fields = decode_log_fields(encode_log_record(record))  # type: ignore[arg-type]
    assert record_from_fields(fields) == record
    if isinstance(record, KeyRecord):  # what a reader compares before it builds: the ballots
        assert fields[0] == KEY_RECORD and fields[1:3] == (record.bucket, record.key)
        assert fields[3:6] == (record.promised.counter, *record.promised.node)
        assert fields[6:9] == (record.accepted_ballot.counter, *record.accepted_ballot.node)


def test_the_format_names_no_class() -> None:
    data = encode_log_record(FIXTURE_RECORDS[2])  # type: ignore[arg-type]
    assert b"KeyRecord" not in data and b"Register" not in data and b"Binding" not in data


@pytest.mark.parametrize(
    "payload",
    [encode((1, "b", "k")), encode((9, 1)), encode("text"), encode(Ballot(1, ("n", 1))), b"\xc1", b""],
    ids=["short key record", "unknown kind", "a string", "another wire type", "bad msgpack", "empty"],
)
def test_anything_else_is_refused(payload: bytes) -> None:
    with pytest.raises(LogRecordCorrupt):
        decode_log_record(payload)
    with pytest.raises(LogRecordCorrupt):
        record_from_fields(decode_log_fields(payload))


def _replay(directory: Path) -> list[object]:
    def read() -> list[object]:
        log = AcceptorLog.open(directory, "fsync")
        try:
            return [decode_log_record(raw) for raw in log.records()]
        finally:
            log.close()

    return gevent.spawn(read).get(timeout=10)


def test_a_log_written_with_module_path_names_reads_record_by_record(tmp_path: Path) -> None:
    copy = tmp_path / "acceptor"
    shutil.copytree(FIXTURE / "acceptor", copy)
    assert _replay(copy) == FIXTURE_RECORDS


def test_a_legacy_log_compacted_and_reopened_holds_the_same_state(tmp_path: Path) -> None:
    copy = tmp_path / "acceptor"
    shutil.copytree(FIXTURE / "acceptor", copy)

    def compact() -> None:
        log = AcceptorLog.open(copy, "fsync")
        records = [decode_log_record(raw) for raw in log.records()]
        log.compact([encode_log_record(r) for r in records]).wait(10)  # type: ignore[arg-type]
        log.close()

    gevent.spawn(compact).get(timeout=10)
    assert _replay(copy) == FIXTURE_RECORDS
    assert not any(b"paxtor.paxos" in p.read_bytes() for p in copy.iterdir() if p.is_file())


def test_a_node_starts_on_a_data_directory_of_the_earlier_format(tmp_path: Path) -> None:
    import paxtor
    from paxtor.testing import free_base_port

    shutil.copytree(FIXTURE, tmp_path / "node2")
    node = paxtor.start_node("node2", cluster_size=3, base_port=free_base_port(), data_dir=tmp_path)
    try:
        acceptor = node.paxos.acceptor
        assert acceptor is not None
        assert node.dist.local.incarnation > 7  # the fixture's node.meta says it ran 7 times
        assert acceptor.state("default", "plain").accepted == FIXTURE_RECORDS[1].accepted  # type: ignore[union-attr]
        assert acceptor.epoch_floor("default") == 12
        assert acceptor.restart_floor == 4294967296
    finally:
        node.stop()
