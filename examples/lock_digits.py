"""The lock example of the Paxtor README: ten processes, one key, runs of five digits.

    .venv/bin/python examples/lock_digits.py

Three nodes (node1..node3) start in this OS process, talking TCP over
loopback; ten processes are spread over them. Each one calls
``paxtor.lock("some key")``, then prints its digit five times, 0.1 s apart,
and exits, which releases the lock. Only one holds it at a time, so the
digits come out in runs of five::

    without the lock: 01234567890123456789...   (mixed)
    with the lock:    33333000006666699999...   (runs of five)

Move the lock call into the inner loop and nothing changes: the lock is
reentrant. For nodes in separate OS processes, see ``python -m paxtor demo``.
"""

from __future__ import annotations

import sys

import gevent

import paxtor
from paxtor.actors import receive, self_pid, send, spawn
from paxtor.cli import configure_logging
from paxtor.testing import nodes_in_this_process

KEY = "some key"


def print_digit(digit: int, out, use_lock: bool) -> None:
    """One of the ten processes. It "prints" by sending to `out`, so that the
    output of every node lands on one terminal in order."""
    if use_lock:
        token = paxtor.lock(KEY)  # blocks until this process owns the lock
        send(out, ("token", digit, token))
    for _ in range(5):
        gevent.sleep(0.1)
        send(out, ("digit", digit))


def run(nodes, use_lock: bool) -> str:
    me = self_pid()
    for digit in range(10):
        spawn(print_digit, digit, me, use_lock, node=nodes[digit % len(nodes)].name)
    printed = ""
    while len(printed) < 50:
        msg = receive(lambda m: m[0] == "digit", timeout=30)
        printed += str(msg[1])
        sys.stdout.write(str(msg[1]))
        sys.stdout.flush()
    print()
    return printed


def main() -> int:
    configure_logging(level="error")
    with nodes_in_this_process(3) as nodes:
        print("without the lock: ", end="", flush=True)
        run(nodes, use_lock=False)
        print("with the lock:    ", end="", flush=True)
        printed = run(nodes, use_lock=True)
        tokens = []
        while len(tokens) < 10:
            tokens.append(receive(lambda m: m[0] == "token", timeout=5)[1:])
        print("fencing tokens (digit:token):", "  ".join(f"{d}:{t}" for d, t in tokens))
    runs = [printed[i : i + 5] for i in range(0, 50, 5)]
    ok = all(len(set(run)) == 1 for run in runs) and len({run[0] for run in runs}) == 10
    print("ten runs of five: one holder at a time" if ok else "NOT runs of five: the lock failed")
    return 0 if ok else 1


if __name__ == "__main__":
    import lock_digits  # the nodes find this file's functions as "lock_digits:...", not "__main__:..."

    sys.exit(lock_digits.main())
