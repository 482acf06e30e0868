"""A seeded, swarm-style fault schedule and the nemesis process that plays it.

Swarm testing (Groce et al.): each run enables a random subset of the fault
kinds, so faults that mask each other are not always mixed. Faults come one at
a time: a gap, a fault held for a while, its undoing. Every run ends with a
heal of every link, SIGCONT and a restart of anything down: the quiet period
that follows is when the checkers expect progress.

Kinds, through the transport's fault injection: isolate (one voter cut from
the other voters), halves (a minority of voters cut from the rest), one_way
(frames src -> dst dropped), bridge (two halves of the voters that only
one voter, the bridge, still connects), ring (5 voters: each reaches only its
two ring neighbours, so each sees a majority, and no two see the same one),
client_cut (a client node cut from some voters). Through iptables (each node on its own loopback address; skipped,
with one message, where iptables cannot run): ipt_isolate (one node, voter or
client, cut both ways from every other node), ipt_one_way (packets src -> dst
dropped). On processes: kill (kill -9, restart later: durable state), pause
(SIGSTOP longer than the lease, then SIGCONT), pause_holder (the same, timed
to land inside a lock holder's critical section, just after it read the
fenced resource). slow_disk: every fsync of one voter delayed. On who
votes (`tests.chaos.voter_faults`): wipe (kill -9, delete the data
directory, start again), wipe_holder (wipe a voter that holds writes the
others missed, then read through it and them), reconfigure (replace a dead
voter, or grow by two voters and shrink again, under load). The console
(this process) is never cut off: it is the control channel.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from typing import Any

import gevent

from paxtor.actors import ReceiveTimeout, call, receive, self_pid
from tests.chaos.firewall import Firewall
from tests.chaos.harness import ChaosCluster
from tests.chaos.voter_faults import EXTRA_SECONDS, VoterFaults
from tests.chaos.workloads import RESOURCE

KINDS = ("isolate", "halves", "one_way", "bridge", "ring", "kill", "pause", "pause_holder", "client_cut",
         "slow_disk", "ipt_isolate", "ipt_one_way", "wipe", "wipe_holder", "reconfigure")  # fmt: skip
#: Kinds that need a client node (they act from one).
CLIENT_KINDS = ("client_cut", "wipe_holder")
IPT_KINDS = ("ipt_isolate", "ipt_one_way")
LINK_KINDS = ("isolate", "halves", "one_way", "bridge", "ring", "client_cut")


@dataclass(frozen=True)
class Fault:
    kind: str
    #: isolate/kill/pause/slow_disk/ipt_isolate/wipe: (node,); halves: the minority;
    #: one_way/ipt_one_way: (src, dst); client_cut: (client, *the voters it is cut from);
    #: wipe_holder: (the voter to wipe, *the minority stopped first, *the others);
    #: reconfigure: ("replace", the voter that dies) or ("resize",)
    targets: tuple[str, ...]
    gap: float  # seconds of calm before it
    hold: float  # seconds it lasts
    param: float = 0.0  # slow_disk: seconds added to each fsync; reconfigure: which voters leave

    @property
    def planned(self) -> float:
        """Seconds it takes, its gap included (the runner plans the workloads' end with it)."""
        extra = 1.0 if self.kind == "pause_holder" else EXTRA_SECONDS.get(self.kind, 0.0)
        return self.gap + self.hold + extra


def schedule(seed: int, voters: list[str], window: float, lease: float, kinds: tuple[str, ...] | None = None,
             clients: list[str] = ()) -> tuple[tuple[str, ...], list[Fault]]:  # type: ignore[assignment]
    """The enabled kinds and the faults of a run, from `seed` alone; they fit in `window` s.
    (Whether iptables works does not change it: the nemesis skips what it cannot play.)"""
    clients = list(clients)
    kinds_possible = KINDS if clients else tuple(k for k in KINDS if k not in CLIENT_KINDS)
    rng = random.Random(seed)
    if kinds is None:
        enabled = tuple(k for k in kinds_possible if rng.random() < 0.6) or (rng.choice(kinds_possible),)
    else:
        enabled = tuple(kinds)
    faults: list[Fault] = []
    used = 0.0
    while True:
        kind = enabled[len(faults) % len(enabled)] if kinds is not None else rng.choice(enabled)
        gap = rng.uniform(0.5, 1.5)
        if kind in ("pause", "pause_holder"):
            hold = rng.uniform(1.3 * lease, 2.5 * lease)  # longer than the lease: holders there must be fenced
        elif kind in ("kill", "wipe"):
            hold = rng.uniform(1.0, 3.0)  # down time before the restart
        elif kind == "wipe_holder":
            hold = rng.uniform(1.5, 3.0)  # reading through the wiped voter and the minority
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
        elif kind == "ring" and len(voters) >= 5:
            shuffled = voters[:]
            rng.shuffle(shuffled)
            targets = tuple(shuffled)  # the ring's order
        elif kind in ("bridge", "ring"):  # (a ring of 3 is no partition: a bridge instead)
            kind = "bridge"
            shuffled = voters[:]
            rng.shuffle(shuffled)
            rest = shuffled[1:]
            targets = (shuffled[0], *sorted(rest[: len(rest) // 2]))  # the bridge, then one half
        elif kind == "ipt_one_way":
            src, dst = rng.sample([*voters, *clients], 2)
            targets = (src, dst)
        elif kind == "ipt_isolate":
            targets = (rng.choice([*voters, *clients]),)
        elif kind == "client_cut":
            cut = sorted(rng.sample(voters, rng.randint(1, len(voters))))
            targets = (rng.choice(clients), *cut)
        elif kind == "wipe_holder":
            shuffled = voters[:]
            rng.shuffle(shuffled)
            targets = tuple(shuffled)  # the voter to wipe, the minority, the others
        elif kind == "reconfigure":
            targets = ("replace", node) if rng.random() < 0.5 else ("resize",)
        else:
            targets = (node,)
        param = round(rng.uniform(0.05, 0.6), 3) if kind == "slow_disk" else 0.0
        param = rng.random() if kind == "reconfigure" else param
        faults.append(Fault(kind, targets, gap, hold, param))
        used += gap + hold
        if used >= window:
            break
    return enabled, faults


class Nemesis:
    """Plays a schedule against a `ChaosCluster`, logging each step with its time."""

    def __init__(self, cluster: ChaosCluster, t0: float, firewall: Firewall | None = None,
                 no_firewall: str | None = None) -> None:
        self.cluster = cluster
        self.t0 = t0
        self.firewall = firewall
        self.no_firewall = no_firewall  # why iptables faults are skipped
        self.log: list[tuple[float, str]] = []
        #: (kind, start, end, label) per fault played, in seconds since t0: the plot's shading
        self.windows: list[tuple[str, float, float, str]] = []
        self.last_heal: float | None = None  # monotonic time of the final heal
        self._skipped_ipt = False
        self.voter_faults = VoterFaults(cluster, self.note)

    def note(self, text: str) -> None:
        self.log.append((time.monotonic() - self.t0, text))

    def _links(self, ops: list[tuple[Any, ...]], what: str) -> None:
        acks = self.cluster.apply_links(ops, self.cluster.nodes)
        bad = {n: a for n, a in acks.items() if a != "ok"}
        self.note(what + (f"  (not applied on: {bad})" if bad else ""))

    def play(self, faults: list[Fault]) -> None:
        for fault in faults:
            gevent.sleep(fault.gap)
            fault = replace(fault, targets=tuple(self.voter_faults.voter(t) for t in fault.targets))
            began = time.monotonic() - self.t0
            played = self.start(fault)
            gevent.sleep(fault.hold)
            if played:
                self.end(fault)
                self.windows.append((fault.kind, began, time.monotonic() - self.t0, self.label(fault)))
        self.final_heal()

    @staticmethod
    def label(fault: Fault) -> str:
        if fault.kind in ("one_way", "ipt_one_way"):
            return f"{fault.kind} {fault.targets[0]}->{fault.targets[1]}"
        if fault.kind == "client_cut":
            return f"client_cut {fault.targets[0]}|{','.join(fault.targets[1:])}"
        return f"{fault.kind} {','.join(fault.targets)}"

    def start(self, fault: Fault) -> bool:
        """Begin `fault`; False if it cannot be played here (an iptables fault without iptables)."""
        voters = self.cluster.voters
        kind, targets = fault.kind, fault.targets
        if kind in IPT_KINDS and self.firewall is None:
            if not self._skipped_ipt:
                self.note(f"iptables faults skipped: {self.no_firewall}")
                self._skipped_ipt = True
            return False
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
        elif kind == "bridge":
            bridge, left = targets[0], targets[1:]
            right = [v for v in voters if v != bridge and v not in left]
            ops = [("partition", a, b) for a in left for b in right]
            self._links(ops, f"partition: bridge {bridge} between {list(left)} and {right}")
        elif kind == "ring":
            n = len(targets)
            near = {frozenset((targets[i], targets[(i + 1) % n])) for i in range(n)}
            ops = [("partition", a, b) for i, a in enumerate(targets) for b in targets[i + 1:]
                   if frozenset((a, b)) not in near]  # fmt: skip
            self._links(ops, f"partition: majorities ring {' - '.join(targets)} - {targets[0]}")
        elif kind == "kill":
            pid = self.cluster.kill9(targets[0])
            self.note(f"kill -9 {targets[0]} (pid {pid})")
        elif kind == "pause":
            self.cluster.sigstop(targets[0])
            self.note(f"SIGSTOP {targets[0]} (pid {self.cluster.pid_of(targets[0])}) for {fault.hold:.1f} s")
        elif kind == "pause_holder":
            self.pause_holder(targets[0], fault.hold)
        elif kind == "client_cut":
            client, cut = targets[0], targets[1:]
            self._links([("partition", client, v) for v in cut], f"partition: client {client} cut from {list(cut)}")
        elif kind == "slow_disk":
            acks = self.cluster.apply_links([("fsync_delay", fault.param)], [targets[0]])
            self.note(f"slow disk: every fsync of {targets[0]} +{fault.param * 1000:.0f} ms  ({acks[targets[0]]})")
        elif kind in IPT_KINDS:
            self.ipt_start(fault)
        elif kind == "wipe":
            self.voter_faults.wipe(targets[0])
        elif kind == "wipe_holder":
            self.voter_faults.wipe_holder_start(targets, fault.hold)
        elif kind == "reconfigure":
            self.voter_faults.reconfigure_start(targets)
        return True

    def ipt_start(self, fault: Fault) -> None:
        assert self.firewall is not None
        addr = self.cluster.addresses.of
        if fault.kind == "ipt_one_way":
            src, dst = fault.targets
            self.firewall.drop(addr(src), addr(dst))
            self.note(f"iptables: one-way {src} -> {dst} dropped ({addr(src)} -> {addr(dst)})")
        else:
            node = fault.targets[0]
            for other in self.cluster.nodes:
                if other != node:
                    self.firewall.drop(addr(node), addr(other))
                    self.firewall.drop(addr(other), addr(node))
            self.note(f"iptables: isolate {node} ({addr(node)}) from every other node")

    def end(self, fault: Fault) -> None:
        if fault.kind in LINK_KINDS:
            self._links([("heal",)], "heal links")
        elif fault.kind in IPT_KINDS:
            assert self.firewall is not None
            self.firewall.heal()
            self.note("iptables: heal (chain flushed)")
        elif fault.kind == "slow_disk":
            acks = self.cluster.apply_links([("fsync_delay", 0.0)], [fault.targets[0]])
            self.note(f"slow disk over on {fault.targets[0]} ({acks[fault.targets[0]]})")
        elif fault.kind == "kill":
            pid = self.cluster.restart(fault.targets[0])
            self.note(f"restart {fault.targets[0]} (pid {pid})")
        elif fault.kind in ("pause", "pause_holder"):
            self.cluster.cont(fault.targets[0])
            self.note(f"SIGCONT {fault.targets[0]}")
        elif fault.kind == "wipe":
            self.voter_faults.wipe_end(fault.targets[0])
        elif fault.kind == "wipe_holder":
            self.voter_faults.wipe_holder_end()
        elif fault.kind == "reconfigure":
            self.voter_faults.reconfigure_end(fault.param)

    def pause_holder(self, node: str, hold: float) -> None:
        """SIGSTOP `node` right after one of its lock holders read the fenced resource: it
        resumes, past its lease, believing it holds the lock and about to write."""
        call(RESOURCE, ("watch", node, self_pid()))
        try:
            _, _, holder, key, token = receive(
                lambda m: isinstance(m, tuple) and m[:2] == ("in_critical_section", node), timeout=3.0
            )
            what = f"while {holder!r} holds {key!r} with token {token}, mid critical section"
        except ReceiveTimeout:
            what = "(no holder there read within 3 s: a plain pause)"
        self.cluster.sigstop(node)
        self.note(f"SIGSTOP {node} for {hold:.1f} s {what}")

    def final_heal(self) -> None:
        """Heal everything, whatever the schedule left: SIGCONT, restart the dead, clear links."""
        for name in self.cluster.nodes:
            proc = self.cluster.process(name)
            if name in self.cluster.stopped:
                self.cluster.cont(name)
            if not proc.alive():
                self.cluster.restart(name)
        if self.firewall is not None:
            self.firewall.heal()
        self.last_heal = time.monotonic()
        self._links(
            [("heal",), ("fsync_delay", 0.0)],
            "final heal (all links, iptables, disks; all nodes running); quiet period",
        )
