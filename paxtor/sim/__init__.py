"""Deterministic simulation of PaxosKV clusters, and the linearizability checker.

``run_seed(seed)`` builds a `Cluster` from one ``random.Random(seed)`` (fault
plan, network fates, workload choices, backoff draws: every random choice
comes from it, in event order, and nothing iterates over hash-ordered sets),
runs it in virtual time and returns a `SimResult` with every checker's
violations and a trace hash: the same seed gives the same hash, in any
process, under any ``PYTHONHASHSEED``.

The cluster runs the production engines and registers: the proposer engine,
the lock home's batching engine, the lock register's and the name register's
change functions (`paxtor.sim.cluster`, `paxtor.sim.workload`).

Checkers (see `paxtor.sim.checkers`): one value per ballot, promises
kept across restarts, epochs along
the chosen values, at most one live owner per key (``owners``: lock owners
and singletons bound to their child), at most one live singleton per key
(``singletons``: a singleton's child counts from its start, before the key is
handed to it), linearizability of every client operation (a lock home's batch
is one) against `paxtor.sim.model.RegisterModel`, and liveness
after the final heal. ``driver`` reports what the cluster itself refused (a
change rejected by the register rules, a lock operation that failed). The linearizability search has a budget per key
(`SimConfig.linearizability_budget`); a history it cannot decide within it is
reported in `SimResult.undecided`, never as a pass or a failure.

Command line: ``python -m paxtor.sim --seeds N [--seed S] [--verbose]
[--mutation NAME] [--faults KIND,...] [--scenario NAME]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from paxtor.sim.cluster import Cluster, SimConfig
from paxtor.sim.faults import SCENARIOS, FaultPlan
from paxtor.sim.linearizability import Operation, check_history
from paxtor.sim.model import RegisterModel
from paxtor.sim.mutations import CONTROLS, MUTATIONS, UNCAUGHT, Mutations

__all__ = [
    "CONTROLS",
    "MUTATIONS",
    "UNCAUGHT",
    "Catch",
    "Mutations",
    "SimConfig",
    "SimResult",
    "first_catch",
    "replay_command",
    "run_seed",
    "scenario",
]


@dataclass
class SimResult:
    """What one seed did and what the checkers found."""

    seed: int
    trace_hash: str
    violations: list[tuple[str, str]]  # (checker, description)
    plan: str
    events: int = 0
    messages: int = 0
    operations: int = 0
    chosen: int = 0
    grants: int = 0
    mutation: tuple[str, ...] = field(default_factory=tuple)
    undecided: str | None = None  # the linearizability search hit its budget: not proven either way
    stats: dict[str, int] = field(default_factory=dict)  # round outcomes, lease losses, ...

    @property
    def ok(self) -> bool:
        return not self.violations

    def checkers(self) -> list[str]:
        """The distinct checkers that reported something, in first-report order."""
        return list(dict.fromkeys(name for name, _ in self.violations))


def replay_command(seed: int, mutations: Mutations = Mutations(), scenario: str | None = None) -> str:
    extra = "".join(f" --mutation {m}" for m in mutations.active())
    if scenario is not None:
        extra += f" --scenario {scenario}"
    return f"python -m paxtor.sim --seed {seed}{extra} --verbose"


def scenario(name: str, config: SimConfig = SimConfig()) -> tuple[SimConfig, FaultPlan]:
    """The configuration and fault plan of a scenario written by hand (`faults.SCENARIOS`)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    make_plan, fields = SCENARIOS[name]
    return dataclasses.replace(config, **fields), make_plan()


def run_seed(
    seed: int, config: SimConfig = SimConfig(), mutations: Mutations = Mutations(), plan: FaultPlan | None = None
) -> SimResult:
    """Run one seed to the end and check everything (``plan``: a fault plan written by hand
    instead of the seed's draw)."""
    cluster = Cluster(seed, config, mutations, plan)
    cluster.run()
    cluster.chosen.finish()
    cluster.workload.finish_run()
    cluster.liveness.finish(cluster.end)
    violations: list[tuple[str, str]] = []
    sources = (
        ("driver", cluster.violations),
        ("ballot", cluster.ballots.violations),
        ("promises", cluster.promises.violations),
        ("epochs", cluster.chosen.violations),
        ("owners", cluster.owner_checker.violations),
        ("singletons", cluster.singleton_checker.violations),
        ("liveness", cluster.liveness.violations),
        ("liveness", cluster.workload.violations),
    )
    for name, found in sources:
        violations.extend((name, text) for text in found)
    history = [Operation(*entry) for entry in cluster.client_history()]
    verdict = check_history(history, RegisterModel(), max_states=config.linearizability_budget)
    undecided = None
    if verdict.unknown:
        undecided = f"key {verdict.key}: {verdict.message}"
    elif not verdict.ok:
        violations.append(("linearizability", f"key {verdict.key}: {verdict.message}"))
    return SimResult(
        seed=seed,
        trace_hash=cluster.trace_hash(),
        violations=violations,
        plan=cluster.plan.describe(),
        events=cluster.events,
        messages=cluster.messages,
        operations=len(history),
        chosen=sum(len(c) for c in cluster.chosen.chosen.values()),
        grants=cluster.owner_checker.grants,
        mutation=mutations.active(),
        undecided=undecided,
        stats=dict(cluster.stats),
    )


@dataclass(frozen=True)
class Catch:
    """Where a negative control was first caught: by which checkers, on which seed, after how many."""

    mutation: str
    seed: int | None  # None: not caught in ``seeds`` seeds
    checkers: tuple[str, ...]
    seeds: int  # seeds run (up to and including the catch)
    scenario: str | None


def first_catch(mutation: str, seeds: int, first: int = 0) -> Catch:
    """Run seeds with ``mutation`` on (in its scenario, `CONTROLS`) until a checker that
    should catch it reports it; a seed that catches it must be clean without the bug."""
    checkers, name = CONTROLS.get(mutation, (frozenset(), None))
    config, plan = scenario(name) if name is not None else (SimConfig(), None)
    mutations = Mutations.only(mutation)
    for i, seed in enumerate(range(first, first + seeds), 1):
        found = run_seed(seed, config, mutations, plan).checkers()
        caught = [c for c in found if not checkers or c in checkers]
        if caught and run_seed(seed, config, plan=plan).ok:
            return Catch(mutation, seed, tuple(caught), i, name)
    return Catch(mutation, None, (), seeds, name)
