"""Swarm-style fault plans: each seed turns on a random subset of fault kinds.

Turning faults on and off per seed (swarm testing, Groce et al. 2012) finds
more bugs than turning everything on every time: some bugs need a quiet
network with one crash, others need partitions without drops. Every choice is
drawn from the simulator's single RNG, up front, so the plan is part of the
seed.

Clocks: each node's monotonic clock runs at a constant rate. With the
``clock_skew`` fault, rates are drawn from [1/(1+s), 1+s] where s is
``SimConfig.clock_spread`` (the extremes are drawn on purpose). The lease
guarantee holds only while s <= ``SimConfig.max_drift``, the bound the lease
arithmetic assumes; the default configuration keeps them equal (rates from
0.5x to 2x, and the lease waits accordingly). A run with s > max_drift is
outside the guarantee and may (and, with enough seeds, does) show two live
owners: that is the documented out-of-bound behaviour, not a bug.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from paxtor.sim.network import Link, NetworkFaults, bridge, halves, isolate, one_way, ring

__all__ = ["CHANGE_KINDS", "FAULT_KINDS", "SCENARIOS", "FaultPlan", "owner_cut_plan", "plan_faults", "readd_plan"]

FAULT_KINDS = (
    "drop",
    "duplicate",
    "reorder",
    "long_delay",
    "partition",
    "crash",
    "wipe",
    "pause",
    "clock_skew",
    "reconfigure",
)

#: What a planned change of the voters does (`paxtor.sim.reconfig.pick_voters`):
#: add spare acceptors, remove voters, swap voters for spares, swap out a voter that was
#: just crashed (it stays down until the final heal), or voters just after a node was cut
#: off by a partition (alive and holding a lock if any node holds one; if it is a voter,
#: it is among those replaced: an operator takes it for dead).
CHANGE_KINDS = ("grow", "shrink", "replace", "replace_dead", "replace_cut")


@dataclass
class FaultPlan:
    """Everything random about one seed's environment, decided before the run."""

    voters: tuple[str, ...]  # the voters the cluster is founded with
    clients: tuple[str, ...]
    enabled: tuple[str, ...]
    net: NetworkFaults
    calm: NetworkFaults  # after the final heal
    clock_rates: dict[str, float]
    clock_offsets: dict[str, float]
    partitions: list[tuple[float, float, str, frozenset[Link]]] = field(default_factory=list)
    crashes: list[tuple[str, float, float]] = field(default_factory=list)  # node, at, down for
    wipes: list[tuple[str, float, float]] = field(default_factory=list)  # a voter loses its disk too
    pauses: list[tuple[str, float, float]] = field(default_factory=list)  # node, at, duration
    #: acceptors that are not voters at first: the ``reconfigure`` fault adds them
    spares: tuple[str, ...] = ()
    #: changes of the voters: at, kind (`CHANGE_KINDS`), the node that runs it, the voter
    #: crashed for a ``replace_dead`` (else None)
    changes: list[tuple[float, str, str, str | None]] = field(default_factory=list)
    #: a node isolated from ``at`` to ``end`` before a ``replace_cut``: the one named, or
    #: (None) one that holds a lock then, if any (a nemesis that targets owners)
    cuts: list[tuple[float, float, str | None]] = field(default_factory=list)
    heal_at: float = 0.0

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.voters + self.spares + self.clients

    @property
    def acceptors(self) -> tuple[str, ...]:
        """The nodes that run an acceptor (they vote once a configuration names them)."""
        return self.voters + self.spares

    def describe(self) -> str:
        parts = [f"voters={len(self.voters)}", f"clients={len(self.clients)}"]
        if self.spares:
            parts.append(f"spares={len(self.spares)}")
        parts.append("faults=" + (",".join(self.enabled) or "none"))
        if self.partitions:
            parts.append("partitions=" + ",".join(p[2] for p in self.partitions))
        if self.changes:
            parts.append("changes=" + ",".join(c[1] for c in self.changes))
        return " ".join(parts)


def plan_faults(
    rng: random.Random,
    *,
    lease: float,
    fault_time: float,
    clock_spread: float,
    kinds: Sequence[str] | None = None,
) -> FaultPlan:
    """Draw one seed's topology and fault plan (``kinds``: exactly these faults, not a swarm draw)."""
    n_voters = rng.choice((3, 3, 5))
    voters = tuple(f"n{i}" for i in range(1, n_voters + 1))
    clients = ("c1",) if rng.random() < 0.3 else ()
    swarm = tuple(k for k in FAULT_KINDS if rng.random() < 0.5)
    if kinds is not None:
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
    enabled = swarm if kinds is None else tuple(k for k in FAULT_KINDS if k in kinds)
    on = set(enabled)
    spares: tuple[str, ...] = ()
    if "reconfigure" in on:
        spares = tuple(f"n{i}" for i in range(n_voters + 1, n_voters + 1 + rng.randint(1, 2)))
    nodes = voters + spares + clients
    net = NetworkFaults(
        delay_mean=0.03 * lease if "reorder" in on else 0.004 * lease,
        drop=rng.uniform(0.01, 0.2) if "drop" in on else 0.0,
        duplicate=rng.uniform(0.01, 0.2) if "duplicate" in on else 0.0,
        long_delay=rng.uniform(0.002, 0.02) if "long_delay" in on else 0.0,
        long_min=0.5 * lease,
        long_max=3.0 * lease,
    )
    calm = NetworkFaults(delay_mean=net.delay_mean, duplicate=net.duplicate)
    rates = dict.fromkeys(nodes, 1.0)
    if "clock_skew" in on:
        span = math.log1p(clock_spread)
        for n in nodes:
            roll = rng.random()
            if roll < 0.25:
                rates[n] = 1.0 / (1.0 + clock_spread)
            elif roll < 0.5:
                rates[n] = 1.0 + clock_spread
            else:
                rates[n] = math.exp(rng.uniform(-span, span))
    offsets = {n: rng.uniform(0.0, 1000.0) for n in nodes}
    plan = FaultPlan(voters, clients, enabled, net, calm, rates, offsets, spares=spares, heal_at=fault_time)
    if "partition" in on:
        plan.partitions = _partitions(rng, nodes, lease, fault_time)
    if "crash" in on:
        for _ in range(rng.randint(1, 3)):
            at = rng.uniform(1.0, fault_time - 1.0)
            down = min(rng.uniform(0.2, 4.0) * lease, fault_time - at)
            plan.crashes.append((rng.choice(nodes), at, down))
    if "wipe" in on:
        for _ in range(rng.randint(1, 2)):
            at = rng.uniform(1.0, fault_time - 1.0)
            down = min(rng.uniform(0.2, 2.0) * lease, fault_time - at)
            plan.wipes.append((rng.choice(plan.acceptors), at, down))
    if "pause" in on:
        for _ in range(rng.randint(1, 3)):
            at = rng.uniform(1.0, fault_time - 1.0)
            length = min(rng.uniform(0.2, 3.0) * lease, fault_time - at)
            plan.pauses.append((rng.choice(nodes), at, length))
    if "reconfigure" in on:
        _changes(rng, plan, lease, fault_time)
    return plan


def _changes(rng: random.Random, plan: FaultPlan, lease: float, fault_time: float) -> None:
    """One to three changes of the voters, each run by a random node (a client too, as the
    CLI's short-lived client does); sometimes that node crashes half-way, so that a voter
    must finish the change."""
    nodes = plan.nodes
    for _ in range(rng.randint(1, 3)):
        at = rng.uniform(1.0, fault_time - 1.0)
        kind = rng.choice(CHANGE_KINDS)
        victim = None
        if kind == "replace_dead":
            victim = rng.choice(plan.acceptors)
            plan.crashes.append((victim, at, fault_time - at))  # back (removed) at the final heal
            at = min(at + rng.uniform(0.2, 1.5) * lease, fault_time - 0.5)
        elif kind == "replace_cut":  # the node cut off is chosen when it happens
            plan.cuts.append((at, min(at + rng.uniform(1.0, 3.0) * lease, fault_time), None))
            at = min(at + rng.uniform(0.1, 0.6) * lease, fault_time - 0.5)
        coordinator = rng.choice(nodes)
        plan.changes.append((at, kind, coordinator, victim))
        if rng.random() < 0.3:
            crash_at = min(at + rng.uniform(0.0, 5.0) * lease, fault_time - 0.1)
            down = min(rng.uniform(0.2, 3.0) * lease, fault_time - crash_at)
            plan.crashes.append((coordinator, crash_at, down))


def _partitions(
    rng: random.Random, nodes: Sequence[str], lease: float, fault_time: float
) -> list[tuple[float, float, str, frozenset[Link]]]:
    out = []
    t = rng.uniform(0.5, 2.0) * lease
    while t < fault_time:
        length = min(rng.uniform(0.5, 6.0) * lease, fault_time - t)
        name, blocked = _shape(rng, nodes)
        out.append((t, t + length, name, blocked))
        t += length + rng.uniform(0.0, 3.0) * lease
    return out


def _shape(rng: random.Random, nodes: Sequence[str]) -> tuple[str, frozenset[Link]]:
    kind = rng.choice(("isolate", "halves", "bridge", "ring", "one_way"))
    order = list(nodes)
    rng.shuffle(order)
    if kind == "isolate":
        return f"isolate({order[0]})", isolate(order[0], nodes)
    if kind == "one_way":
        return f"one_way({order[0]}->{order[1]})", one_way(order[0], order[1])
    if kind == "ring":
        return "ring", ring(order)
    cut = rng.randint(1, len(order) - 1)
    a, b = order[:cut], order[cut:]
    if kind == "bridge" and len(order) >= 3:
        x = a[-1] if len(a) > 1 else b[0]
        return f"bridge({x})", bridge(a, b, x)
    return "halves", halves(a, b)


# -- scenarios: fault plans written by hand (the seed draws the workload) ---------------------


def owner_cut_plan(lease: float = 1.0, fault_time: float = 10.0) -> FaultPlan:
    """Client ``c1`` is cut off at 6 leases, most likely holding a lock (locks are held
    up to 3 leases in this scenario); right after, an operator replaces two of the three
    voters with the spares ``n4`` and ``n5``, which never heard from ``c1`` since they
    started. Only the wait before the final configuration keeps them from releasing
    ``c1``'s lock while its lease, counted by the old voters, still holds."""
    voters, spares, clients = ("n1", "n2", "n3"), ("n4", "n5"), ("c1",)
    nodes = voters + spares + clients
    calm = NetworkFaults()
    plan = FaultPlan(
        voters, clients, ("reconfigure",), calm, calm,
        dict.fromkeys(nodes, 1.0), dict.fromkeys(nodes, 0.0), spares=spares, heal_at=fault_time,
    )  # fmt: skip
    plan.cuts.append((6.0 * lease, 9.0 * lease, "c1"))
    plan.changes.append((6.1 * lease, "replace_cut", "n3", None))
    return plan


def readd_plan(lease: float = 1.0, fault_time: float = 20.0) -> FaultPlan:
    """The spare ``n4`` is added to the three voters, removed once that change is done, and
    added back once the voters have had time to collect tombstones of keys it still holds
    values of (the change must refuse it until it is wiped). Runs 20 leases of faults."""
    voters, spares = ("n1", "n2", "n3"), ("n4",)
    nodes = voters + spares
    calm = NetworkFaults()
    plan = FaultPlan(
        voters, (), ("reconfigure",), calm, calm,
        dict.fromkeys(nodes, 1.0), dict.fromkeys(nodes, 0.0), spares=spares, heal_at=fault_time,
    )  # fmt: skip
    plan.changes += [(0.5 * lease, "grow", "n1", None), (5.0 * lease, "shrink", "n2", "n4")]
    plan.changes.append((15.0 * lease, "grow", "n3", None))
    return plan


#: name -> (the plan, the `SimConfig` fields it needs)
SCENARIOS: dict[str, tuple[Callable[[], FaultPlan], dict[str, Any]]] = {
    "owner_cut": (owner_cut_plan, {"hold_max": 3.0}),
    "readd": (readd_plan, {"fault_time": 20.0, "kv_keys": 8}),
}
