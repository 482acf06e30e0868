"""A slow disk for one chaos node: `os.fsync`/`os.fdatasync` wrapped with a switchable delay.

`install()` must run before paxtor is imported (the acceptor log binds
`os.fsync` as a default argument at import). The delay blocks the calling
OS thread: the log's fsync runs on its own thread, which is what a slow
device stalls; a delayed fsync on the hub's thread (counted in `STATS`)
stalls the whole node, as a blocking fsync there would. It is a
`select` timeout, not `time.sleep`: under libfaketime with
FAKETIME_DONT_FAKE_MONOTONIC=1, Python's `time.sleep` (clock_nanosleep on an
absolute monotonic deadline) fails with EINVAL, which the log would take for
a failed fsync.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

_delay = 0.0
_MAIN = threading.main_thread().ident
#: delayed fsyncs so far: on the hub's (main) thread and on others
STATS = {"delayed_main": 0, "delayed_other": 0}


def set_delay(seconds: float) -> None:
    """Every fsync from now on takes `seconds` longer (0: back to normal)."""
    global _delay
    _delay = max(0.0, float(seconds))


def _slowed(real: Callable[[int], None]) -> Callable[[int], None]:
    def slow(fd: int) -> None:
        delay = _delay
        if delay > 0:
            STATS["delayed_main" if threading.get_ident() == _MAIN else "delayed_other"] += 1
            select.select([], [], [], delay)
        real(fd)

    slow.__name__ = real.__name__
    return slow


def install() -> None:
    """Wrap os.fsync and os.fdatasync (once)."""
    if not getattr(os.fsync, "_chaos_slow", False):
        os.fsync = _slowed(os.fsync)
        os.fsync._chaos_slow = True  # type: ignore[attr-defined]
        os.fdatasync = _slowed(os.fdatasync)
