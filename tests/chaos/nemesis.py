"""A seeded, swarm-style fault schedule and the nemesis process that plays it.

Swarm testing (Groce et al.): each run enables a random subset of the fault
kinds, so faults that mask each other are not always mixed. Faults come one at
a time: a gap, a fault held for a while, its undoing. Every run ends with a
heal of every link, SIGCONT and a restart of anything down: the quiet period
that follows is when the checkers expect progress.

Kinds: isolate (one voter cut from the other voters), halves (a minority of
voters cut from the rest), one_way (frames src -> dst dropped), kill (kill -9,
restart later: durable state), pause (SIGSTOP longer than the lease, then
SIGCONT), pause_holder (the same, timed to land inside a lock holder's
critical section, just after it read the fenced resource). The client node
(this process) is never cut off: it is the control channel.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import gevent

from paxtor.actors import ReceiveTimeout, call, receive, self_pid
from tests.chaos.harness import ChaosCluster
from tests.chaos.workloads import RESOURCE

KINDS = ("isolate", "halves", "one_way", "kill", "pause", "pause_holder")


@dataclass(frozen=True)
class Fault:
    kind: str
    targets: tuple[str, ...]  # isolate/kill/pause: (node,); halves: the minority; one_way: (src, dst)
    gap: float  # seconds of calm before it
    hold: float  # seconds it lasts


def schedule(seed: int, voters: list[str], window: float, lease: float, kinds: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], list[Fault]]:
    """The enabled kinds and the faults of a run, from `seed` alone; they fit in `window` s."""
    rng = random.Random(seed)
    if kinds is None:
        enabled = tuple(k for k in KINDS if rng.random() < 0.6) or (rng.choice(KINDS),)
    else:
        enabled = tuple(kinds)
    faults: list[Fault] = []
    used = 0.0
    while True:
        kind = enabled[len(faults) % len(enabled)] if kinds is not None else rng.choice(enabled)
        gap = rng.uniform(0.5, 1.5)
        if kind in ("pause", "pause_holder"):
            hold = rng.uniform(1.3 * lease, 2.5 * lease)  # longer than the lease: holders there must be fenced
        elif kind == "kill":
            hold = rng.uniform(1.0, 3.0)  # down time before the restart
        else:
            hold = rng.uniform(1.5, 4.0)
        if used + gap + hold > window and faults and {f.kind for f in faults} >= set(enabled):
            break  # full, and every enabled kind came up at least once
        node = rng.choice(voters)
        if kind == "halves":
            shuffled = voters[:]
            rng.shuffle(shuffled)
            targets = tuple(sorted(shuffled[: (len(voters) - 1) // 2]))
        elif kind == "one_way":
            src, dst = rng.sample(voters, 2)
            targets = (src, dst)
        else:
            targets = (node,)
        faults.append(Fault(kind, targets, gap, hold))
        used += gap + hold
        if used >= window:
            break
    return enabled, faults


class Nemesis:
    """Plays a schedule against a `ChaosCluster`, logging each step with its time."""

    def __init__(self, cluster: ChaosCluster, t0: float) -> None:
        self.cluster = cluster
        self.t0 = t0
        self.log: list[tuple[float, str]] = []
        self.last_heal: float | None = None  # monotonic time of the final heal

    def note(self, text: str) -> None:
        self.log.append((time.monotonic() - self.t0, text))

    def _links(self, ops: list[tuple[Any, ...]], what: str) -> None:
        acks = self.cluster.apply_links(ops, self.cluster.voters)
        bad = {n: a for n, a in acks.items() if a != "ok"}
        self.note(what + (f"  (not applied on: {bad})" if bad else ""))

    def play(self, faults: list[Fault]) -> None:
        for fault in faults:
            gevent.sleep(fault.gap)
            self.start(fault)
            gevent.sleep(fault.hold)
            self.end(fault)
        self.final_heal()

    def start(self, fault: Fault) -> None:
        voters = self.cluster.voters
        kind, targets = fault.kind, fault.targets
        if kind == "isolate":
            node = targets[0]
            self._links([("partition", node, o) for o in voters if o != node], f"partition: isolate {node}")
        elif kind == "halves":
            rest = [v for v in voters if v not in targets]
            ops = [("partition", a, b) for a in targets for b in rest]
            self._links(ops, f"partition: halves {list(targets)} | {rest}")
        elif kind == "one_way":
            src, dst = targets
            self._links([("block", src, dst)], f"partition: one-way {src} -> {dst} dropped")
        elif kind == "kill":
            pid = self.cluster.kill9(targets[0])
            self.note(f"kill -9 {targets[0]} (pid {pid})")
        elif kind == "pause":
            self.cluster.sigstop(targets[0])
            self.note(f"SIGSTOP {targets[0]} (pid {self.cluster.pid_of(targets[0])}) for {fault.hold:.1f} s")
        elif kind == "pause_holder":
            self.pause_holder(targets[0], fault.hold)

    def end(self, fault: Fault) -> None:
        if fault.kind in ("isolate", "halves", "one_way"):
            self._links([("heal",)], "heal links")
        elif fault.kind == "kill":
            pid = self.cluster.restart(fault.targets[0])
            self.note(f"restart {fault.targets[0]} (pid {pid})")
        elif fault.kind in ("pause", "pause_holder"):
            self.cluster.cont(fault.targets[0])
            self.note(f"SIGCONT {fault.targets[0]}")

    def pause_holder(self, node: str, hold: float) -> None:
        """SIGSTOP `node` right after one of its lock holders read the fenced resource: it
        resumes, past its lease, believing it holds the lock and about to write."""
        call(RESOURCE, ("watch", node, self_pid()))
        try:
            _, _, holder, key, token = receive(lambda m: isinstance(m, tuple) and m[:2] == ("in_critical_section", node),
                                               timeout=3.0)
            what = f"while {holder!r} holds {key!r} with token {token}, mid critical section"
        except ReceiveTimeout:
            what = "(no holder there read within 3 s: a plain pause)"
        self.cluster.sigstop(node)
        self.note(f"SIGSTOP {node} for {hold:.1f} s {what}")

    def final_heal(self) -> None:
        """Heal everything, whatever the schedule left: SIGCONT, restart the dead, clear links."""
        for name in self.cluster.voters:
            proc = self.cluster.process(name)
            if name in self.cluster.stopped:
                self.cluster.cont(name)
            if not proc.alive():
                self.cluster.restart(name)
        self.last_heal = time.monotonic()
        self._links([("heal",)], "final heal (all links, all nodes running); quiet period")
