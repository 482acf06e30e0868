"""Clocks under libfaketime: the real clock, the faked one, and what gevent's loop reads.

`real_monotonic()` reads CLOCK_MONOTONIC by a raw ``syscall(SYS_clock_gettime)``,
which libfaketime (an LD_PRELOAD of libc's clock_gettime) cannot intercept: the
chaos workloads stamp their records with it, so a node whose clock is faked
still records on the host's one timeline. `faketime_env` builds the
environment of a faked node; `python -m tests.chaos.clocks` is the probe that
shows which clocks a given FAKETIME setting fakes (see the README, chaos
section, for what it found).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
SYS_CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}.get(os.uname().machine)
#: the thread-safe build first: a node runs its fsyncs on an OS thread of its own
LIBFAKETIME_PATHS = tuple(
    f"/usr/lib/{arch}faketime/{lib}"
    for lib in ("libfaketimeMT.so.1", "libfaketime.so.1")
    for arch in ("x86_64-linux-gnu/", "aarch64-linux-gnu/", "")
)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall


def _raw_clock(clock: int) -> float:
    if SYS_CLOCK_GETTIME is None:
        return time.clock_gettime(clock)  # unknown arch: the libc path (faked, if faked)
    ts = _Timespec()
    if _syscall(SYS_CLOCK_GETTIME, clock, ctypes.byref(ts)) != 0:
        raise OSError(ctypes.get_errno(), "clock_gettime syscall failed")
    return ts.tv_sec + ts.tv_nsec / 1e9


def real_monotonic() -> float:
    """CLOCK_MONOTONIC straight from the kernel: the same timeline in every process of this host."""
    return _raw_clock(CLOCK_MONOTONIC)


def real_wall() -> float:
    """CLOCK_REALTIME straight from the kernel."""
    return _raw_clock(CLOCK_REALTIME)


def libfaketime() -> str | None:
    """The path of libfaketime.so.1, or None if it is not installed."""
    return next((p for p in LIBFAKETIME_PATHS if Path(p).exists()), None)


def faketime_spec(rate: float, offset: float) -> str:
    """FAKETIME's "+offset xrate" (an explicit offset: "x" alone is not accepted)."""
    return f"{offset:+.3f} x{rate:.4f}"


def faketime_env(rate: float, offset: float, fake_monotonic: bool) -> dict[str, str]:
    """Environment entries that start a process under libfaketime (empty if it is missing)."""
    lib = libfaketime()
    if lib is None:
        return {}
    return {
        "LD_PRELOAD": lib,
        "FAKETIME": faketime_spec(rate, offset),
        "FAKETIME_DONT_FAKE_MONOTONIC": "0" if fake_monotonic else "1",
        "FAKETIME_NO_CACHE": "1",
        "LC_ALL": "C",  # the decimal point of "x1.03" is locale-dependent in libfaketime
    }


def probe(seconds: float = 1.0) -> dict[str, Any]:
    """Elapsed time over one `gevent.sleep(seconds)` as each clock sees it, in this process."""
    import gevent

    loop = gevent.get_hub().loop
    loop.update_now()
    t = {"real_mono": real_monotonic(), "real_wall": real_wall(), "time.monotonic": time.monotonic(),
         "time.time": time.time(), "libev_now": loop.now()}  # fmt: skip
    offset_wall = time.time() - real_wall()
    offset_mono = time.monotonic() - real_monotonic()
    gevent.sleep(seconds)
    loop.update_now()
    u = {"real_mono": real_monotonic(), "real_wall": real_wall(), "time.monotonic": time.monotonic(),
         "time.time": time.time(), "libev_now": loop.now()}  # fmt: skip
    elapsed = {k: round(u[k] - t[k], 4) for k in t}
    return {
        "FAKETIME": os.environ.get("FAKETIME"),
        "FAKETIME_DONT_FAKE_MONOTONIC": os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC"),
        "gevent.sleep": seconds,
        "elapsed": elapsed,
        "offset_time.time_vs_real": round(offset_wall, 3),
        "offset_time.monotonic_vs_real": round(offset_mono, 3),
        "libev_backend": getattr(loop, "backend", "?"),
    }


def run_probe(rate: float, offset: float, fake_monotonic: bool, seconds: float = 1.0) -> dict[str, Any]:
    """`probe` in a child process under libfaketime with these settings."""
    import subprocess

    env = dict(os.environ, **faketime_env(rate, offset, fake_monotonic))
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "tests.chaos.clocks", "--child", str(seconds)], env=env,
                         capture_output=True, text=True, timeout=30 + 2 * seconds, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(probe(float(argv[1]))))
        return 0
    if libfaketime() is None:
        print("libfaketime is not installed (apt-get install faketime)")
        return 1
    for rate, offset in ((2.0, 3600.0), (1.04, -30.0)):
        for fake_monotonic in (True, False):
            print(json.dumps(run_probe(rate, offset, fake_monotonic)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
