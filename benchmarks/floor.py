"""The physical floor of this machine, measured in the same run as the figures divided by it.

``python -m benchmarks.floor [--dir DIR] [--json]``

- **RTT**: a raw loopback round trip between two OS processes: plain
  blocking sockets, TCP_NODELAY, a 64-byte message echoed back, no gevent,
  no codec. Nothing that talks between two processes over TCP can go faster.
- **fsync**: the median of write + ``fsync`` of a small record, with three
  processes syncing at once, each on its own file in ``DIR`` (the voters'
  data directory): the three voters of a 3-node cluster on one disk do this.
  Each record goes into space the file has already allocated
  (``posix_fallocate``, where the platform has it), so the fsync commits no
  new file size, as the acceptor log writes; the median for plain appends
  (``fsync_append_ms``), which also commit the file's size, is given beside
  it.
- **lock+unlock floor** = ``2 x (RTT + fsync)``: a lock and an unlock are one
  consensus round each, and a round needs at least one round trip to another
  voter and one fsync there before a majority has it.

A put's floor is one round, ``RTT + fsync``; a call to another process's
server is ``RTT``. Benchmarks print their figures as ratios to these.

Each measurement runs in child processes started and killed here, so a
gevent process can call `measure_floor` between phases (it blocks its hub
for the second or so it takes, which is fine between phases).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MESSAGE = b"x" * 64
SYNC_RECORD = b"r" * 120  # about one acceptor record
SYNCERS = 3
DEFAULT_ROUND_TRIPS = 2000
DEFAULT_SYNCS = 150  # per syncing process


# ----------------------------------------------------------------- children


def _echo_child() -> None:
    """Accept one connection on a free loopback port (printed), echo until it closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(len(MESSAGE))
        if not data:
            return
        buf = data
        while len(buf) < len(MESSAGE):
            more = conn.recv(len(MESSAGE) - len(buf))
            if not more:
                return
            buf += more
        conn.sendall(buf)


def _sync_child(path: str, count: int, start_at: float, allocated: bool) -> None:
    """Write `count` records to `path`, write+fsync each, from `start_at`: the durations (JSON).
    `allocated`: into space allocated beforehand; else appends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (0 if allocated else os.O_APPEND), 0o600)
    try:
        if allocated:
            os.posix_fallocate(fd, 0, count * len(SYNC_RECORD) + 4096)
            os.fsync(fd)
        time.sleep(max(0.0, start_at - time.time()))
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, SYNC_RECORD)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    print(json.dumps(samples), flush=True)


def _child(*args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floor", *args], cwd=REPO, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


# ----------------------------------------------------------------- measurements


def round_trips(count: int = DEFAULT_ROUND_TRIPS) -> list[float]:
    """`count` raw loopback round trips to a child process: seconds each."""
    child = _child("--echo")
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(min(200, count)):  # warm-up: caches, the scheduler's placement
                _round_trip(sock)
            return [_round_trip(sock) for _ in range(count)]
    finally:
        _stop(child)


def _round_trip(sock: socket.socket) -> float:
    started = time.perf_counter()
    sock.sendall(MESSAGE)
    got = 0
    while got < len(MESSAGE):
        chunk = sock.recv(len(MESSAGE) - got)
        if not chunk:
            raise ConnectionError("the echo child closed")
        got += len(chunk)
    return time.perf_counter() - started


#: Whether the fsync floor writes into allocated space (the acceptor log's way) on this platform.
ALLOCATED = hasattr(os, "posix_fallocate")


def concurrent_fsyncs(
    directory: str | Path, count: int = DEFAULT_SYNCS, processes: int = SYNCERS, allocated: bool = ALLOCATED
) -> list[float]:
    """`processes` children each write+fsync `count` records at once in `directory`: seconds each."""
    with tempfile.TemporaryDirectory(prefix="floor-fsync-", dir=directory) as where:
        start_at = time.time() + 0.3  # every child is running by then
        mode = "allocated" if allocated else "append"
        children = [
            _child("--sync", str(Path(where) / f"sync{i}"), str(count), repr(start_at), mode)
            for i in range(processes)
        ]
        samples: list[float] = []
        try:
            for child in children:
                out, _ = child.communicate(timeout=120)
                samples += json.loads(out)
        finally:
            for child in children:
                _stop(child)
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def measure_floor(directory: str | Path | None = None, round_trip_count: int = DEFAULT_ROUND_TRIPS,
                  sync_count: int = DEFAULT_SYNCS) -> dict[str, Any]:  # fmt: skip
    """The floor figures (milliseconds) of this machine now; fsyncs in `directory` (default: the temp dir)."""
    rtts = round_trips(round_trip_count)
    where = directory or tempfile.gettempdir()
    syncs = concurrent_fsyncs(where, sync_count)
    appends = concurrent_fsyncs(where, sync_count, allocated=False) if ALLOCATED else syncs
    rtt, fsync = median_ms(rtts), median_ms(syncs)
    return {
        "rtt_ms": rtt,
        "fsync_ms": fsync,
        "fsync_append_ms": median_ms(appends),
        "fsync_allocated": ALLOCATED,
        "fsync_p90_ms": statistics.quantiles(syncs, n=10)[-1] * 1e3,
        "round_ms": rtt + fsync,
        "lock_unlock_ms": 2 * (rtt + fsync),
        "round_trips": len(rtts),
        "fsyncs": len(syncs),
        "fsync_processes": SYNCERS,
    }


def describe(floor: dict[str, Any]) -> str:
    return (
        f"floor: raw loopback RTT {floor['rtt_ms'] * 1e3:.1f} us, fsync {floor['fsync_ms']:.3f} ms "
        f"(median of {floor['fsyncs']}, {floor['fsync_processes']} processes at once"
        f"{', into allocated space' if floor.get('fsync_allocated') else ''}; p90 {floor['fsync_p90_ms']:.3f} ms; "
        f"appends {floor.get('fsync_append_ms', floor['fsync_ms']):.3f} ms); "
        f"lock+unlock floor 2 x (RTT + fsync) = {floor['lock_unlock_ms']:.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to fsync (the voters' disk); default: the temp directory")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sync", nargs=4, metavar=("PATH", "COUNT", "START_AT", "MODE"), help=argparse.SUPPRESS)
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.echo:
        _echo_child()
        return 0
    if args.sync:
        _sync_child(args.sync[0], int(args.sync[1]), float(args.sync[2]), args.sync[3] == "allocated")
        return 0
    floor = measure_floor(args.dir)
    print(json.dumps(floor) if args.json else describe(floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
