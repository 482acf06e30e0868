"""The singleton example of the Paxtor README: an ordinary Counter, one per key, cluster-wide.

    .venv/bin/python examples/counters.py

``apple = paxtor.name("apple", Counter)`` starts nothing. The first
``call(apple, "inc")`` on any node starts exactly one Counter for "apple" on
one node of the cluster; every node then reaches that one process, so the
replies from all nodes together count 1, 2, 3, ... with no gaps and no
repeats. "banana" is another key, so another Counter, counting on its own.
When the process behind a name exits, the next use starts a new one
(a new pid; its state starts over, Paxtor does not replicate state).

Three nodes start in this OS process (TCP over loopback); for separate OS
processes, see ``python -m paxtor demo``.
"""

from __future__ import annotations

import sys
from typing import Any

import paxtor
from paxtor.actors import GenServer, call, exit, monitor, receive, self_pid, send, spawn
from paxtor.cli import configure_logging
from paxtor.testing import nodes_in_this_process


class Counter(GenServer):
    """An ordinary GenServer: ``call(counter, "inc")`` replies n and counts up, from 1."""

    def init(self) -> None:
        self.n = 1

    def handle_call(self, request: Any, caller: Any) -> int:
        if request != "inc":
            raise ValueError(f"unknown request {request!r}")
        self.n += 1
        return self.n - 1


def inc(counter: Any) -> int:
    """The Counter's API, as in the README's ``Counter.inc(name)``."""
    return call(counter, "inc")


def increment_from_here(out: Any, times: int) -> None:
    """Runs on each node: increment both counters, report the replies and where they run."""
    apple = paxtor.name("apple", Counter)  # the same name, built on this node
    banana = paxtor.name("banana", Counter)
    got = [("apple", inc(apple)) for _ in range(times)] + [("banana", inc(banana)) for _ in range(times)]
    send(out, ("counted", self_pid().node, got, paxtor.whereis(apple), paxtor.whereis(banana)))


def main() -> int:
    configure_logging(level="error")
    times = 4
    with nodes_in_this_process(3) as nodes:
        apple = paxtor.name("apple", Counter)
        banana = paxtor.name("banana", Counter)
        print(f"apple = {apple!r}")
        print("(nothing runs yet: registered() on every node ->",
              [node.run(paxtor.registered) for node in nodes], ")")  # fmt: skip

        me = self_pid()
        for node in nodes:
            spawn(increment_from_here, me, times, node=node.name)
        replies = {"apple": [], "banana": []}
        where = set()
        for _ in nodes:
            _, node_name, got, apple_pid, banana_pid = receive(lambda m: m[0] == "counted", timeout=30)
            print(f"{node_name}: " + "; ".join(
                f'inc({key}) -> {" ".join(str(n) for k, n in got if k == key)}' for key in replies))  # fmt: skip
            for key, n in got:
                replies[key].append(n)
            where.add((apple_pid, banana_pid))
        apple_pid, banana_pid = paxtor.whereis(apple), paxtor.whereis(banana)
        print(f"paxtor.whereis(apple) = {apple_pid!r} on {apple_pid.node}")
        print(f"paxtor.whereis(banana) = {banana_pid!r} on {banana_pid.node}")
        expected = list(range(1, len(nodes) * times + 1))
        ok = sorted(replies["apple"]) == expected == sorted(replies["banana"]) and where == {(apple_pid, banana_pid)}
        print(f"each counter counted 1..{len(expected)} exactly once, and every node saw the same pids: {ok}")

        ref = monitor(apple_pid)
        exit(apple_pid, "kill")  # the Counter dies; its key is released
        receive(lambda m: getattr(m, "ref", None) == ref, timeout=10)
        first = inc(apple)  # ... and the next use starts a new one
        new_pid = paxtor.whereis(apple)
        print(f"after killing it: inc(apple) -> {first}, a new process {new_pid!r} on {new_pid.node}")
        ok = ok and first == 1 and new_pid != apple_pid
    return 0 if ok else 1


if __name__ == "__main__":
    import counters  # the nodes find this file's Counter as "counters:Counter", not "__main__:Counter"

    sys.exit(counters.main())
