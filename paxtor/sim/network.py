"""Virtual time and an unreliable network for the simulator.

`EventQueue` orders callbacks by (virtual real time, insertion sequence), so a
run is a pure function of the seed. `Network` decides, for each message, how
many copies arrive and after what delays (drop, duplication, reordering by
random delay, rare very long delays), and which directed links a partition
blocks. Links are checked at send AND at delivery: a partition cuts messages
already in flight, as a broken TCP connection would.

Partition shapes (each a set of blocked directed links):
  isolate(node)        one node cut from everyone
  halves(a, b)         two groups, no link between them
  bridge(a, b, x)      like halves, but node x talks to both sides
  ring(order)          nodes in a circle, each linked only to its two
                       neighbours (with 5 nodes every node sees a majority,
                       but no two majorities agree on who is in them)
  one_way(src, dst)    src's messages to dst are lost, dst -> src works
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EventQueue",
    "Link",
    "Network",
    "NetworkFaults",
    "bridge",
    "halves",
    "isolate",
    "one_way",
    "ring",
]

Link = tuple[str, str]


class EventQueue:
    """A virtual-time scheduler: callbacks run in (time, insertion) order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        if when < self.now:
            when = self.now
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def pop(self) -> tuple[float, Callable[..., Any], tuple[Any, ...]] | None:
        if not self._heap:
            return None
        when, _, fn, args = heapq.heappop(self._heap)
        self.now = when
        return when, fn, args

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    """Per-message fault probabilities and delays (virtual seconds)."""

    delay_min: float = 0.001
    delay_mean: float = 0.004  # exponential extra delay: random reordering
    drop: float = 0.0
    duplicate: float = 0.0
    long_delay: float = 0.0  # probability of a delay in [long_min, long_max]
    long_min: float = 0.5
    long_max: float = 3.0


class Network:
    """Message fate and partitions; draws only from the simulator's one RNG."""

    def __init__(self, rng: random.Random, faults: NetworkFaults) -> None:
        self.rng = rng
        self.faults = faults
        self.blocked: frozenset[Link] = frozenset()
        self.partition_name = "none"

    def partition(self, name: str, blocked: frozenset[Link]) -> None:
        self.partition_name = name
        self.blocked = blocked

    def heal(self) -> None:
        self.partition("none", frozenset())

    def is_blocked(self, src: str, dst: str) -> bool:
        return (src, dst) in self.blocked

    def delays(self, src: str, dst: str) -> list[float]:
        """Delays of the copies of one message that will arrive (empty: lost)."""
        f = self.faults
        rng = self.rng
        if src == dst:
            return [f.delay_min / 10]
        if (src, dst) in self.blocked:
            return []
        if f.drop and rng.random() < f.drop:
            return []
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        out = []
        for _ in range(copies):
            if f.long_delay and rng.random() < f.long_delay:
                out.append(rng.uniform(f.long_min, f.long_max))
            else:
                out.append(f.delay_min + rng.expovariate(1.0 / f.delay_mean))
        return out


def _cut(a: Sequence[str], b: Sequence[str]) -> frozenset[Link]:
    return frozenset([(x, y) for x in a for y in b] + [(y, x) for x in a for y in b])


def isolate(node: str, nodes: Sequence[str]) -> frozenset[Link]:
    return _cut([node], [n for n in nodes if n != node])


def halves(a: Sequence[str], b: Sequence[str]) -> frozenset[Link]:
    return _cut(a, b)


def bridge(a: Sequence[str], b: Sequence[str], x: str) -> frozenset[Link]:
    return _cut([n for n in a if n != x], [n for n in b if n != x])


def ring(order: Sequence[str]) -> frozenset[Link]:
    n = len(order)
    blocked = []
    for i, x in enumerate(order):
        for j, y in enumerate(order):
            if i != j and min((i - j) % n, (j - i) % n) > 1:
                blocked.append((x, y))
    return frozenset(blocked)


def one_way(src: str, dst: str) -> frozenset[Link]:
    return frozenset([(src, dst)])
