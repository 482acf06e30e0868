"""The acceptor log: replay, group commit, torn tails, corruption, compaction, failure."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import zlib
from pathlib import Path

import gevent
import pytest
from structlog.testing import capture_logs

from paxtor.paxos import log_format
from paxtor.paxos.log_format import (
    HEADER_SIZE,
    KIND_SEGMENT,
    FileHeader,
    Layout,
    LogCorrupt,
    encode_header,
    encode_record,
    parse_file,
    plan_layout,
    segment_name,
    snapshot_name,
)
from paxtor.paxos.node_meta import META_FILE, NodeMeta, NodeMetaCorrupt, NodeMetaMismatch
from paxtor.paxos.storage import (
    SYNC_DWELL,
    AcceptorLog,
    AcceptorLogClosed,
    AcceptorLogCorrupt,
    AcceptorLogError,
    AcceptorLogFailed,
    SyncPlacement,
)
from paxtor.paxos.storage.log import ALLOCATE_AHEAD

RECORDS = [b"promise:a:1", b"accept:a:1:v", b"", b"promise:b:7" * 5]


def fill(directory: Path, records, **kw) -> None:
    with AcceptorLog.open(directory, **kw) as alog:
        tickets = [alog.append(record) for record in records]
        assert all(ticket.wait(10) for ticket in tickets)


def replay(directory: Path, **kw) -> list[bytes]:
    with AcceptorLog.open(directory, **kw) as alog:
        return list(alog.records())


def only_segment(directory: Path) -> Path:
    (path,) = sorted(directory.glob("segment-*.log"))
    return path


def events(logs, name):
    return [entry for entry in logs if entry["event"] == name]


def wait_for_thread(flag: threading.Event, timeout: float = 10.0) -> None:
    """Poll (yielding to the hub) until a pool thread sets `flag`: a thread cannot wake a greenlet."""
    deadline = time.monotonic() + timeout
    while not flag.is_set():
        assert time.monotonic() < deadline, "the pool thread never got there"
        gevent.sleep(0.001)


# --- the pure format --------------------------------------------------------


def test_frames_round_trip_and_detect_every_single_bit_flip():
    data = encode_header(FileHeader(KIND_SEGMENT, 3)) + b"".join(encode_record(r) for r in RECORDS)
    parsed = parse_file(data, kind=KIND_SEGMENT, generation=3, tail_may_be_torn=True)
    assert parsed.records == RECORDS and parsed.torn is None and parsed.good_end == len(data)
    last_start = len(data) - len(encode_record(RECORDS[-1]))
    for offset in range(last_start, len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[offset] ^= bit
            parsed = parse_file(bytes(damaged), kind=KIND_SEGMENT, generation=3, tail_may_be_torn=True)
            assert parsed.records == RECORDS[:-1] and parsed.good_end == last_start, (offset, bit)


def test_header_problems_are_named():
    good = encode_header(FileHeader(KIND_SEGMENT, 1))
    with pytest.raises(LogCorrupt, match="magic"):
        parse_file(b"X" + good[1:], kind=KIND_SEGMENT, generation=1, tail_may_be_torn=False)
    with pytest.raises(LogCorrupt, match="header checksum"):
        parse_file(good[:20] + b"\xff" + good[21:], kind=KIND_SEGMENT, generation=1, tail_may_be_torn=False)
    with pytest.raises(LogCorrupt, match="generation"):
        parse_file(good, kind=KIND_SEGMENT, generation=2, tail_may_be_torn=False)
    with pytest.raises(LogCorrupt, match="expected a snapshot"):
        parse_file(good, kind=log_format.KIND_SNAPSHOT, generation=1, tail_may_be_torn=False)


def test_layout_replays_newest_snapshot_then_its_segments():
    names = [segment_name(1), segment_name(2), snapshot_name(2), segment_name(3), snapshot_name(1),
             snapshot_name(3) + ".tmp", "LOCK", "unrelated.txt"]
    with pytest.raises(LogCorrupt):  # the newest snapshot must have its segment
        plan_layout(names + [snapshot_name(4)])
    assert plan_layout(names) == Layout(
        snapshot=2,
        segments=(2, 3),
        obsolete=(snapshot_name(1), segment_name(1)),
        temporaries=(snapshot_name(3) + ".tmp",),
    )
    assert plan_layout([]) == Layout(None, (), (), ())


@pytest.mark.parametrize(
    "names",
    [
        [segment_name(1), segment_name(3)],  # a hole
        [segment_name(2)],  # no snapshot, segment 1 gone
        [snapshot_name(2)],  # snapshot without its segment
        [snapshot_name(2), segment_name(3)],
    ],
)
def test_layout_with_missing_files_is_refused(names):
    with pytest.raises(LogCorrupt, match="missing log segments"):
        plan_layout(names)


# --- append and replay ------------------------------------------------------


def test_append_then_replay_round_trip(tmp_path):
    fill(tmp_path, RECORDS)
    assert replay(tmp_path) == RECORDS
    fill(tmp_path, [b"more"])  # reopening appends to the same segment
    assert replay(tmp_path) == RECORDS + [b"more"]
    assert len(list(tmp_path.glob("segment-*.log"))) == 1


def test_close_makes_pending_appends_durable(tmp_path):
    fired = []
    alog = AcceptorLog.open(tmp_path)
    for i in range(5):
        alog.append(b"r%d" % i, lambda i=i: fired.append(i))
    alog.close()
    assert fired == [0, 1, 2, 3, 4]
    assert replay(tmp_path) == [b"r%d" % i for i in range(5)]
    with pytest.raises(AcceptorLogClosed):
        alog.append(b"late")


def test_append_many_logs_in_order_with_one_callback_after_the_last(tmp_path):
    fired = []
    alog = AcceptorLog.open(tmp_path)
    alog.append(b"before", lambda: fired.append("before"))
    ticket = alog.append_many([b"m%d" % i for i in range(1000)], lambda: fired.append("many"))
    alog.append(b"after", lambda: fired.append("after"))
    assert ticket.wait(10) and alog.fsync_count == 1  # one batch, like appends in one loop turn
    alog.close()
    assert fired == ["before", "many", "after"]
    assert replay(tmp_path) == [b"before", *(b"m%d" % i for i in range(1000)), b"after"]
    other = AcceptorLog.open(tmp_path / "other")
    with pytest.raises(TypeError):
        other.append_many(["not bytes"])  # type: ignore[list-item]
    other.close()


def test_group_commit_one_fsync_per_loop_turn_and_callbacks_after_it(tmp_path):
    trace = []
    opened = False

    def fsync(fd):
        os.fsync(fd)
        if opened:
            trace.append("fsync")

    alog = AcceptorLog.open(tmp_path, fsync=fsync)
    opened = True
    tickets = [alog.append(b"r%d" % i, lambda i=i: trace.append(i)) for i in range(64)]
    assert trace == []  # nothing fires inside append
    assert tickets[-1].wait(10)
    assert all(ticket.done for ticket in tickets)
    assert trace == ["fsync"] + list(range(64))
    assert alog.fsync_count == 1
    alog.close()


def _trickle(alog: AcceptorLog, count: int) -> list:
    """Append `count` records from a greenlet that yields to the hub between them."""
    tickets = []

    def appender():
        for i in range(count):
            tickets.append(alog.append(b"t%d" % i))
            gevent.sleep(0)  # the writer is woken by now; ready work is still pending

    gevent.spawn(appender).join()
    assert all(ticket.wait(10) for ticket in tickets)
    return tickets


@pytest.mark.parametrize("settle_limit, fsyncs", [(10.0, 1), (0.0, 5)])
def test_a_batch_waits_until_the_hub_has_run_what_is_ready(tmp_path, settle_limit, fsyncs):
    # Without the settle step each record trickling in gets an fsync of its own. The fsyncs
    # stay in the hub (a slow disk would move them to the sync thread, where the next record
    # could join a batch while the last one syncs: that is the thread's purpose, not this test's).
    with AcceptorLog.open(tmp_path, settle_limit=settle_limit, inline_sync_limit=1e9) as alog:
        _trickle(alog, 5)
        assert alog.fsync_count == fsyncs


def test_a_hub_that_never_goes_idle_does_not_starve_the_log(tmp_path):
    spinning = True

    def spin():
        while spinning:
            gevent.sleep(0)

    alog = AcceptorLog.open(tmp_path, settle_limit=0.001)
    spinner = gevent.spawn(spin)
    try:
        gevent.sleep(0)  # the spinner is running
        committed = alog.append(b"r").wait(10)  # the cap commits it, idle or not
    finally:
        spinning = False
        spinner.join(10)
        alog.close()
    assert committed and alog.fsync_count == 1


def test_hub_keeps_running_during_fsync_and_next_batch_waits_for_its_own(tmp_path):
    release = threading.Event()
    in_fsync = threading.Event()
    blocking = False
    trace = []

    def fsync(fd):
        if blocking:
            in_fsync.set()
            assert release.wait(10)
        os.fsync(fd)

    alog = AcceptorLog.open(tmp_path, fsync=fsync, inline_sync_limit=0.0)  # always the thread
    blocking = True
    first = alog.append(b"first", lambda: trace.append("first"))
    wait_for_thread(in_fsync)  # the writer's batch is in fsync, in the sync thread
    # The hub is free: this greenlet runs and appends while the fsync is in flight.
    second = alog.append(b"second", lambda: trace.append("second"))
    gevent.sleep(0)
    assert trace == [] and not first.done
    blocking = False
    release.set()
    assert second.wait(10) and first.done
    assert trace == ["first", "second"]
    assert alog.fsync_count == 2  # the second append had to wait for its own fsync
    alog.close()


def test_fsyncs_run_in_the_hub_while_fast_and_on_the_sync_thread_once_slow(tmp_path):
    threads = []
    opened = False

    def fsync(fd):
        os.fsync(fd)
        if opened:
            threads.append(threading.get_ident())

    hub_thread = threading.get_ident()
    with AcceptorLog.open(tmp_path / "fast", fsync=fsync, inline_sync_limit=60.0) as alog:
        opened = True
        for i in range(3):
            assert alog.append(b"r%d" % i).wait(10)
    assert threads == [hub_thread] * 3
    threads.clear()
    opened = False
    # every fsync is slower than this limit: the first one (in the hub) moves the rest
    with capture_logs() as logs, AcceptorLog.open(tmp_path / "slow", fsync=fsync, inline_sync_limit=1e-9) as alog:
        opened = True
        for i in range(3):
            assert alog.append(b"r%d" % i).wait(10)
    assert threads[0] == hub_thread and hub_thread not in threads[1:] and len(threads) == 3
    (moved,) = events(logs, "acceptor_log_sync_moved")
    assert moved["to"] == "sync_thread"


def test_sync_placement_moves_to_the_thread_at_once_and_back_only_with_margin():
    placement = SyncPlacement(0.002)
    assert placement.inline
    moves = [placement.observe(t) for t in [0.0005] * 5 + [0.02]]
    assert moves == [False] * 5 + [True] and not placement.inline  # one slow sync moves at once
    moves = [placement.observe(0.0001) for _ in range(SYNC_DWELL + 5)]
    assert moves.index(True) == SYNC_DWELL - 1 and moves.count(True) == 1 and placement.inline
    assert SyncPlacement(0.0).inline is False  # a zero limit: always the thread


def test_sync_placement_does_not_flap_on_a_disk_near_the_limit():
    placement = SyncPlacement(0.002)
    # a disk whose syncs hover around the limit: a single threshold moved at nearly every swing
    durations = [0.003, 0.003, 0.003, 0.0012, 0.0012, 0.0012] * 20
    assert sum(placement.observe(t) for t in durations) == 1


def test_an_injected_slow_fsync_moves_the_syncs_once_not_back_and_forth(tmp_path):
    pattern = iter([0.003, 0.003, 0.003, 0.0012, 0.0012, 0.0012] * 10)
    opened = False

    def slow_fsync(fd):
        os.fsync(fd)
        if opened:  # the records' syncs, in the hub or on the sync thread as placed
            time.sleep(next(pattern, 0.0))

    with capture_logs() as logs, AcceptorLog.open(tmp_path, fsync=slow_fsync) as alog:
        opened = True
        for i in range(60):
            assert alog.append(b"r%d" % i).wait(10)
    moved = events(logs, "acceptor_log_sync_moved")
    assert [e["to"] for e in moved] == ["sync_thread"]


def test_a_failing_callback_does_not_stop_the_others(tmp_path):
    fired = []
    with capture_logs() as logs, AcceptorLog.open(tmp_path) as alog:
        alog.append(b"a", lambda: 1 / 0)
        alog.append(b"b", lambda: fired.append("b")).wait(10)
    assert fired == ["b"]
    assert events(logs, "acceptor_log_callback_failed")


def test_bad_records_are_refused_and_lose_nothing(tmp_path, monkeypatch):
    with AcceptorLog.open(tmp_path) as alog:
        alog.append(b"kept")
        with pytest.raises(TypeError):
            alog.append("text")
        monkeypatch.setattr(log_format, "MAX_RECORD_SIZE", 16)
        with pytest.raises(ValueError, match="exceeds"):
            alog.append(b"x" * 17)
        alog.append(b"also kept").wait(10)
    assert replay(tmp_path) == [b"kept", b"also kept"]


def test_short_writes_are_completed(tmp_path):
    fill(tmp_path, RECORDS, write=lambda fd, data: os.write(fd, data[:7]))
    assert replay(tmp_path) == RECORDS


def test_new_directories_are_made_durable_up_to_an_existing_parent(tmp_path):
    synced = []

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        os.fsync(fd)

    AcceptorLog.open(tmp_path / "a" / "b", fsync=fsync).close()
    NodeMeta.open(tmp_path / "c" / "d", fsync=fsync)
    for parent in (tmp_path, tmp_path / "a", tmp_path / "c"):
        assert str(parent) in synced


def test_directory_is_locked_against_a_second_log(tmp_path):
    with AcceptorLog.open(tmp_path):
        with pytest.raises(AcceptorLogError, match="in use"):
            AcceptorLog.open(tmp_path)
    replay(tmp_path)  # released on close


# --- torn tails and corruption ----------------------------------------------


def test_truncated_tail_at_every_offset_is_cut_and_the_rest_replayed(tmp_path):
    source = tmp_path / "source"
    fill(source, RECORDS)
    data = only_segment(source).read_bytes()
    last_start = len(data) - len(encode_record(RECORDS[-1]))
    for cut in range(last_start, len(data)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / only_segment(source).name).write_bytes(data[:cut])
        with capture_logs() as logs:
            assert replay(directory) == RECORDS[:-1]
        assert only_segment(directory).stat().st_size == last_start
        truncated = events(logs, "acceptor_log_truncated")
        if cut == last_start:
            assert truncated == []  # the cut fell on a record boundary: nothing torn
        else:
            assert [(e["offset"], e["dropped_bytes"]) for e in truncated] == [(last_start, cut - last_start)]


def test_appends_after_a_cut_tail_replay_cleanly(tmp_path):
    fill(tmp_path, RECORDS)
    segment = only_segment(tmp_path)
    segment.write_bytes(segment.read_bytes()[:-3])
    fill(tmp_path, [b"after"])
    assert replay(tmp_path) == RECORDS[:-1] + [b"after"]


def test_zero_filled_tail_is_cut(tmp_path):
    fill(tmp_path, RECORDS)
    segment = only_segment(tmp_path)
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\0" * 4096)
    assert replay(tmp_path) == RECORDS
    assert segment.stat().st_size == size


def test_corrupt_checksum_in_the_last_record_is_cut(tmp_path):
    fill(tmp_path, RECORDS)
    segment = only_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0xFF
    segment.write_bytes(bytes(data))
    with capture_logs() as logs:
        assert replay(tmp_path) == RECORDS[:-1]
    (event,) = events(logs, "acceptor_log_truncated")
    assert event["reason"] == "record checksum mismatch"


@pytest.mark.parametrize("where", ["payload", "length"])
def test_corruption_followed_by_good_records_is_refused(tmp_path, where):
    fill(tmp_path, RECORDS)
    segment = only_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    second = HEADER_SIZE + len(encode_record(RECORDS[0]))
    data[second + (9 if where == "payload" else 3)] ^= 0x40
    segment.write_bytes(bytes(data))
    with pytest.raises(AcceptorLogCorrupt, match=f"at offset {second}; a valid record follows"):
        AcceptorLog.open(tmp_path)
    assert segment.read_bytes() == bytes(data)  # nothing was cut
    AcceptorLog.open(tmp_path / "other").close()  # the failed open released its lock
    with pytest.raises(AcceptorLogCorrupt):
        AcceptorLog.open(tmp_path)


def test_torn_tail_in_a_segment_that_is_not_the_last_is_refused(tmp_path):
    with AcceptorLog.open(tmp_path) as alog:
        alog.append(b"one")
        alog.compact([]).wait(10)  # starts segment 2 ...
        alog.append(b"two").wait(10)
    shutil.copy(tmp_path / segment_name(2), tmp_path / "keep")
    # ... then pretend segment 1 still exists with a torn tail before segment 2.
    (tmp_path / snapshot_name(2)).unlink()
    data = encode_header(FileHeader(KIND_SEGMENT, 1)) + encode_record(b"old")[:-1]
    (tmp_path / segment_name(1)).write_bytes(data)
    with pytest.raises(AcceptorLogCorrupt, match="truncated record"):
        AcceptorLog.open(tmp_path)


def test_unknown_format_version_is_refused(tmp_path):
    fill(tmp_path, RECORDS)
    segment = only_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    body = bytes(data[:28])
    body = body[:8] + (99).to_bytes(2, "little") + body[10:]
    data[:32] = body + zlib.crc32(body).to_bytes(4, "little")
    segment.write_bytes(bytes(data))
    with pytest.raises(AcceptorLogCorrupt, match="unsupported log format version 99"):
        AcceptorLog.open(tmp_path)


# --- write failures -------------------------------------------------------


@pytest.mark.parametrize("broken", ["fsync", "write"])
def test_write_failure_fires_no_callback_and_fails_the_log(tmp_path, broken):
    failing = False
    failures = []

    def fsync(fd):
        if failing and broken == "fsync":
            raise OSError(errno.ENOSPC, "No space left on device")
        os.fsync(fd)

    def write(fd, data):
        if failing and broken == "write":
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    fired = []
    alog = AcceptorLog.open(tmp_path, fsync=fsync, write=write, on_failure=failures.append)
    assert alog.append(b"fine", lambda: fired.append("fine")).wait(10)
    failing = True
    with capture_logs() as logs:
        doomed = alog.append(b"doomed", lambda: fired.append("doomed"))
        with pytest.raises(AcceptorLogFailed):
            doomed.wait(10)
    assert fired == ["fine"]
    assert alog.failure is not None and isinstance(alog.failure.__cause__, OSError)
    assert len(failures) == 1 and failures[0] is alog.failure
    assert events(logs, "acceptor_log_failed")
    with pytest.raises(AcceptorLogFailed):
        alog.append(b"refused", lambda: fired.append("refused"))
    with pytest.raises(AcceptorLogFailed):
        alog.compact([b"snapshot"])
    alog.close()
    assert fired == ["fine"]
    assert replay(tmp_path)[0] == b"fine"


def test_appends_queued_behind_a_failed_batch_fail_too(tmp_path):
    release = threading.Event()
    in_fsync = threading.Event()
    armed = False

    def fsync(fd):
        if armed:
            in_fsync.set()
            assert release.wait(10)
            raise OSError(errno.EIO, "I/O error")
        os.fsync(fd)

    fired = []
    alog = AcceptorLog.open(tmp_path, fsync=fsync, inline_sync_limit=0.0)  # held on the thread
    armed = True
    first = alog.append(b"first", lambda: fired.append(1))
    wait_for_thread(in_fsync)
    second = alog.append(b"second", lambda: fired.append(2))
    release.set()
    for ticket in (first, second):
        with pytest.raises(AcceptorLogFailed):
            ticket.wait(10)
    assert fired == []
    alog.close()


# --- resuming after a failure --------------------------------------------------


class FullDisk:
    """A write that fills the disk: while `full`, it writes `torn` bytes (a partial page of
    the batch, as a real ENOSPC may leave) and then fails."""

    def __init__(self, torn: int = 0) -> None:
        self.full = False
        self.torn = torn

    def write(self, fd, data):
        if self.full:
            if self.torn:
                os.write(fd, bytes(data[: self.torn]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def fsync(self, fd):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        os.fsync(fd)


def fail_log(alog, disk: FullDisk, doomed: list[bytes]) -> None:
    disk.full = True
    tickets = [alog.append(record) for record in doomed]
    for ticket in tickets:
        with pytest.raises(AcceptorLogFailed):
            ticket.wait(10)


def test_a_failed_log_resumes_once_writes_succeed_and_keeps_the_whole_state(tmp_path):
    disk = FullDisk(torn=7)
    alog = AcceptorLog.open(tmp_path, fsync=disk.fsync, write=disk.write)
    assert alog.append(b"acked").wait(10)
    fail_log(alog, disk, [b"doomed-1", b"doomed-2"])
    state = [b"acked", b"doomed-1", b"doomed-2"]  # the caller's state: it did vote, unanswered
    with capture_logs() as logs:
        with pytest.raises(OSError):
            alog.resume(state)  # the disk is still full: nothing changes
    assert alog.failure is not None and not events(logs, "acceptor_log_resumed")
    with pytest.raises(AcceptorLogFailed):
        alog.append(b"still refused")
    assert replay_copy(tmp_path) == [b"acked"]  # a crash now: the acknowledged record, whole
    disk.full = False
    with capture_logs() as logs:
        alog.resume(state)
    assert alog.failure is None and events(logs, "acceptor_log_resumed")
    assert alog.append(b"after").wait(10)
    alog.close()
    assert replay(tmp_path) == state + [b"after"]


def replay_copy(directory: Path) -> list[bytes]:
    copy = directory.parent / f"{directory.name}-copy{len(list(directory.parent.iterdir()))}"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("LOCK"))
    return replay(copy)


@pytest.mark.parametrize("torn", [0, 5, 200])
def test_a_crash_at_every_step_of_resume_leaves_a_replayable_directory(tmp_path, torn):
    live = tmp_path / "live"
    disk = FullDisk(torn=torn)
    crashes: list[tuple[str, Path]] = []

    def crash_here(step):
        copy = tmp_path / f"crash{len(crashes)}"
        shutil.copytree(live, copy, ignore=shutil.ignore_patterns("LOCK"))
        crashes.append((step, copy))

    alog = AcceptorLog.open(live, fsync=disk.fsync, write=disk.write, step_hook=crash_here)
    acked = [b"a%d" % i for i in range(3)]
    for record in acked:
        assert alog.append(record).wait(10)
    fail_log(alog, disk, [b"x" * 300])  # its frame is torn on disk (or absent)
    disk.full = False
    state = acked + [b"x" * 300, b"state-only"]
    alog.resume(state)
    alog.close()
    steps = [step for step, _ in crashes]
    assert steps[:5] == ["resume_truncated", "resume_cleared", "segment_rotated", "snapshot_written",
                         "snapshot_renamed"]
    for step, copy in crashes:
        # before the snapshot is in place: exactly what was acknowledged; after: the whole state
        expected = acked if step in steps[:4] else state
        assert replay(copy) == expected, step
    assert replay(live) == state


def test_resume_after_a_failed_rotation_clears_its_leftovers(tmp_path):
    disk = FullDisk()
    alog = AcceptorLog.open(tmp_path, fsync=disk.fsync, write=disk.write)
    assert alog.append(b"a").wait(10)
    (tmp_path / segment_name(2)).write_bytes(encode_header(FileHeader(KIND_SEGMENT, 2))[:10])  # torn creation
    (tmp_path / (snapshot_name(2) + ".tmp")).write_bytes(b"half a snapshot")
    fail_log(alog, disk, [b"b"])
    disk.full = False
    alog.resume([b"a", b"b"])
    assert alog.append(b"c").wait(10)
    alog.close()
    assert replay(tmp_path) == [b"a", b"b", b"c"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "LOCK") == [segment_name(2), snapshot_name(2)]


# --- memory durability --------------------------------------------------------


def test_memory_durability_never_touches_the_disk(tmp_path):
    def no_io(*args):
        raise AssertionError("memory durability did I/O")

    directory = tmp_path / "never"
    fired = []
    with capture_logs() as logs:
        alog = AcceptorLog.open(directory, durability="memory", fsync=no_io, write=no_io)
    assert events(logs, "memory_durability_unsafe_on_restart")
    ticket = alog.append(b"r", lambda: fired.append("r"))
    assert fired == []  # not inside append: on the next loop turn
    gevent.sleep(0)
    assert fired == ["r"] and ticket.done
    assert alog.compact([b"snapshot"]).wait(10)
    alog.close()
    assert not directory.exists()
    assert list(AcceptorLog.open(directory, durability="memory").records()) == []


# --- compaction -------------------------------------------------------------


def test_compaction_round_trip(tmp_path):
    with AcceptorLog.open(tmp_path) as alog:
        for record in RECORDS:
            alog.append(record)
        done = alog.compact([b"state:a", b"state:b"])  # covers everything appended above
        after = alog.append(b"after")
        assert alog.compacting
        assert done.wait(10) and after.wait(10)
        assert not alog.compacting
        assert alog.snapshot_bytes > 0
        assert alog.log_bytes == len(encode_record(b"after"))
    assert replay(tmp_path) == [b"state:a", b"state:b", b"after"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", segment_name(2), snapshot_name(2)]
    with AcceptorLog.open(tmp_path) as alog:  # and again, on top of the snapshot
        alog.compact([b"state:c"]).wait(10)
    assert replay(tmp_path) == [b"state:c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", segment_name(3), snapshot_name(3)]


def test_one_compaction_at_a_time(tmp_path):
    with AcceptorLog.open(tmp_path) as alog:
        first = alog.compact([b"s"])
        with pytest.raises(AcceptorLogError, match="already running"):
            alog.compact([b"t"])
        assert first.wait(10)
        assert alog.compact([b"t"]).wait(10)


def test_failed_compaction_leaves_a_healthy_log(tmp_path):
    def hook(step):
        if step == "snapshot_written":
            raise OSError(errno.ENOSPC, "No space left on device")

    with capture_logs() as logs, AcceptorLog.open(tmp_path, step_hook=hook) as alog:
        alog.append(b"a")
        ticket = alog.compact([b"snapshot"])
        with pytest.raises(AcceptorLogError, match="compaction failed"):
            ticket.wait(10)
        assert alog.failure is None
        assert alog.append(b"b").wait(10)
    assert events(logs, "acceptor_log_compaction_failed")
    assert not list(tmp_path.glob("*.tmp"))
    assert replay(tmp_path) == [b"a", b"b"]


def test_should_compact_heuristic(tmp_path):
    with AcceptorLog.open(tmp_path) as alog:
        for _ in range(20):
            alog.append(b"x" * 100)
        alog.append(b"x").wait(10)
        assert not alog.should_compact()  # below the size floor
        assert alog.should_compact(min_log_bytes=1000)
        alog.compact([b"y" * 1000]).wait(10)
        assert not alog.should_compact(min_log_bytes=0)  # empty log after compaction
    assert not AcceptorLog.open(None, durability="memory").should_compact(min_log_bytes=0)


def test_crash_at_every_compaction_step_leaves_a_replayable_directory(tmp_path):
    live = tmp_path / "live"
    before = [b"r%d" % i for i in range(5)]
    snapshot = [b"s1", b"s2"]
    fill(live, before)
    crashes: list[tuple[str, Path]] = []

    def crash_here(step):
        copy = tmp_path / f"crash{len(crashes)}"
        shutil.copytree(live, copy)
        crashes.append((step, copy))

    with AcceptorLog.open(live, step_hook=crash_here) as alog:
        assert alog.compact(snapshot).wait(10)
    steps = [step for step, _ in crashes]
    assert steps == [
        "segment_rotated",
        "snapshot_written",
        "snapshot_renamed",
        "snapshot_installed",
        f"removed {segment_name(1)}",
        "compaction_done",
    ]
    for step, copy in crashes:
        expected = before if step in ("segment_rotated", "snapshot_written") else snapshot
        assert replay(copy) == expected, step
        names = sorted(p.name for p in copy.iterdir())
        assert not [n for n in names if n.endswith(".tmp")], step
        assert len([n for n in names if n.endswith(".snap")]) <= 1, step
        fill(copy, [b"later"])  # the recovered log takes appends as usual
        assert replay(copy) == expected + [b"later"], step


def test_crash_while_writing_the_snapshot_or_creating_the_segment(tmp_path):
    fill(tmp_path, RECORDS)
    # A half-written temp snapshot and a new segment torn inside its header.
    (tmp_path / (snapshot_name(2) + ".tmp")).write_bytes(b"PXTRLOG\0partial")
    (tmp_path / segment_name(2)).write_bytes(encode_header(FileHeader(KIND_SEGMENT, 2))[:10])
    with capture_logs() as logs:
        assert replay(tmp_path) == RECORDS
    assert events(logs, "acceptor_log_truncated")[0]["offset"] == 0
    assert not (tmp_path / (snapshot_name(2) + ".tmp")).exists()
    fill(tmp_path, [b"next"])
    assert replay(tmp_path) == RECORDS + [b"next"]


# --- node meta --------------------------------------------------------------


def test_node_meta_incarnation_grows_at_every_open(tmp_path):
    still = lambda: 1_800_000_000 * 10**9  # noqa: E731 - a clock that does not move: only the count grows
    first = NodeMeta.open(tmp_path, clock=still).incarnation
    assert [NodeMeta.open(tmp_path, clock=still).incarnation for _ in range(2)] == [first + 1, first + 2]
    assert (tmp_path / META_FILE).exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_a_new_directory_starts_at_the_clock_so_a_wiped_node_never_reuses_an_incarnation(tmp_path):
    clock = iter([1_800_000_000 * 10**9, 1_800_000_001 * 10**9])  # one second apart
    first = NodeMeta.open(tmp_path / "a", clock=lambda: next(clock)).incarnation
    for _ in range(100):  # a long life: many restarts
        last = NodeMeta.open(tmp_path / "a").incarnation
    shutil.rmtree(tmp_path / "a")  # the disk is wiped
    again = NodeMeta.open(tmp_path / "a", clock=lambda: next(clock)).incarnation
    assert last == first + 100 and again > last


def test_a_directory_put_back_from_a_backup_never_repeats_an_incarnation(tmp_path):
    ticks = iter(range(1_800_000_000_000, 1_800_000_001_000))  # the wall clock in ms, one ms a start
    clock = lambda: next(ticks) * 1_000_000  # noqa: E731 - in ns, as time.time_ns
    NodeMeta.open(tmp_path / "n", clock=clock)
    shutil.copytree(tmp_path / "n", tmp_path / "backup")
    later = [NodeMeta.open(tmp_path / "n", clock=clock).incarnation for _ in range(5)]
    shutil.rmtree(tmp_path / "n")
    shutil.copytree(tmp_path / "backup", tmp_path / "n")  # the backup is put back
    assert NodeMeta.open(tmp_path / "n", clock=clock).incarnation > max(later)


def test_a_directory_of_another_node_is_refused(tmp_path):
    NodeMeta.open(tmp_path / "n", name="node2")
    with pytest.raises(NodeMetaMismatch, match="node2"):
        NodeMeta.open(tmp_path / "n", name="node1")
    meta = NodeMeta.open(tmp_path / "n", name="node2")
    meta.set_cluster("c1")
    with pytest.raises(NodeMetaMismatch, match="c1"):
        NodeMeta.open(tmp_path / "n", name="node2", cluster="c2")
    assert NodeMeta.open(tmp_path / "n", name="node2").cluster == "c1"


def test_node_meta_survives_a_leftover_temp_file(tmp_path):
    still = lambda: 1_800_000_000 * 10**9  # noqa: E731 - a clock that does not move: only the count grows
    first = NodeMeta.open(tmp_path, clock=still).incarnation
    (tmp_path / (META_FILE + ".tmp")).write_bytes(b"garbage from a crash")
    assert NodeMeta.open(tmp_path, clock=still).incarnation == first + 1


def test_corrupt_node_meta_is_refused(tmp_path):
    NodeMeta.open(tmp_path)
    path = tmp_path / META_FILE
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(NodeMetaCorrupt, match="refusing to guess"):
        NodeMeta.open(tmp_path)


def test_node_meta_in_memory_uses_the_clock_and_writes_nothing(tmp_path):
    ticks = iter([1_000, 2_000])
    directory = tmp_path / "none"
    assert NodeMeta.open(directory, "memory", clock=lambda: next(ticks)).incarnation == 1_000
    assert NodeMeta.open(directory, "memory", clock=lambda: next(ticks)).incarnation == 2_000
    assert NodeMeta.open(directory, "memory").incarnation > 1_600_000_000 * 10**9  # the real clock
    assert not directory.exists()


# -- space allocated ahead of the writes ---------------------------------------------------


def _framed_size(records) -> int:
    return log_format.HEADER_SIZE + sum(len(encode_record(r)) for r in records)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate on this platform")
def test_the_active_segment_is_allocated_ahead_and_cut_back_to_its_records_on_close(tmp_path):
    with AcceptorLog.open(tmp_path) as alog:
        assert all(alog.append(r).wait(10) for r in RECORDS)
        # the records went into space the file already had: it is longer than they are
        assert only_segment(tmp_path).stat().st_size >= _framed_size(RECORDS) + ALLOCATE_AHEAD // 2
    assert only_segment(tmp_path).stat().st_size == _framed_size(RECORDS)
    assert replay(tmp_path) == RECORDS


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate on this platform")
def test_a_crash_with_space_allocated_ahead_loses_nothing_and_warns_of_nothing(tmp_path):
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    with AcceptorLog.open(live) as alog:
        assert all(alog.append(r).wait(10) for r in RECORDS)
        shutil.copytree(live, crashed)  # the directory as a crash would leave it: zeros after the records
    (crashed / "LOCK").unlink(missing_ok=True)
    with capture_logs() as logs:
        assert replay(crashed) == RECORDS
    assert events(logs, "acceptor_log_truncated") == []
    (cut,) = events(logs, "acceptor_log_allocated_tail_cut")
    assert cut["offset"] == _framed_size(RECORDS)
    fill(crashed, [b"after"])  # appends go after the records, not after the zeros
    assert replay(crashed) == RECORDS + [b"after"]


def test_rotation_cuts_the_older_segment_back_to_its_records_before_the_next_exists(tmp_path):
    steps: list[tuple[str, dict[str, int]]] = []

    def at_step(name: str) -> None:
        steps.append((name, {p.name: p.stat().st_size for p in tmp_path.glob("segment-*.log")}))

    with AcceptorLog.open(tmp_path, step_hook=at_step) as alog:
        assert all(alog.append(r).wait(10) for r in RECORDS)
        assert alog.compact(RECORDS).wait(10)
        assert alog.append(b"later").wait(10)
    sizes = dict(steps)["segment_rotated"]
    assert sizes[segment_name(1)] == _framed_size(RECORDS)  # only the last segment may end in zeros
    assert replay(tmp_path) == RECORDS + [b"later"]


def test_a_filesystem_that_cannot_allocate_leaves_plain_appends(tmp_path):
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "no fallocate here")

    with capture_logs() as logs:
        with AcceptorLog.open(tmp_path, allocate=refuse) as alog:
            assert all(alog.append(r).wait(10) for r in RECORDS)
            assert only_segment(tmp_path).stat().st_size == _framed_size(RECORDS)
            assert all(alog.append(r).wait(10) for r in RECORDS)
    assert len(events(logs, "acceptor_log_allocation_off")) == 1  # said once, not at every write
    assert replay(tmp_path) == RECORDS + RECORDS
