"""Simulated clients: key-value puts/gets/deletes, and lock processes that claim, hold, exit.

Per node (each incarnation), one key-value client loops over ``put``/``get``/
``delete`` on a few keys, and now and then reads a *cold* key: one written once
at the start and never again, so that its value lives only where that first
round put it (a hot key is rewritten every moment, which would hide a value
that a change of the voters failed to copy). One lock client spawns a process at a time that
claims a lock key with its pid (queueing in the register if it is held, as the
production lock register `paxtor.locks.register` does: the sim runs its
change functions),
holds it for a while once granted, then exits; its node then releases the key,
handing it to the first waiter in the same round. A waiter retries its claim
periodically (and at once on a handoff notice); when the claim shows the key
bound to a pid whose node it suspects or knows restarted, its node proposes a
release for "noconnection". Requests stop ``drain`` before the end so that the
liveness checks can demand that everything finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

from paxtor.actors.ids import Pid, Ref
from paxtor.paxos.register import Register
from paxtor.sim.cluster import Cluster, HandoffNotice, Op, SimNode

__all__ = ["Workload"]

KV = "kv"
LOCK = "lock"


def bucket_of(kind: str, key: str) -> str:
    """Each key has a bucket of its own: the epoch floor a collection raises is per
    bucket, so the key's own, and the register model stays exact (a shared floor
    only makes epochs jump further up)."""
    return f"{kind}.{key}"


@dataclass(eq=False)
class LockProc:
    client: int
    key: str
    spawned: float
    pid: Pid | None = None
    ref: Ref | None = None  # its lock request (`paxtor.locks.register.acquire`)
    claiming: bool = False
    token: int = 0  # invalidates a pending retry timer


class Workload:
    def __init__(self, sim: Cluster, drain: float = 8.0) -> None:
        cfg = sim.config
        self.sim = sim
        self.rng = sim.rng
        scale = len(sim.nodes) / 3  # keep per-key contention (and history size) similar
        self.kv_keys = [f"k{i}" for i in range(round(cfg.kv_keys * scale))]
        self.cold_keys = [f"cold{i}" for i in range(cfg.cold_keys)]
        self.lock_keys = [f"l{i}" for i in range(round(cfg.lock_keys * scale))]
        self.stop_at = sim.end - drain * cfg.lease
        self.lease = cfg.lease
        self.waiting: dict[Pid, tuple[SimNode, int, LockProc]] = {}
        self.violations: list[str] = []

    def slots(self) -> list[tuple[str, str]]:
        """Every (bucket, key) the clients use."""
        kv = self.kv_keys + self.cold_keys
        return [(bucket_of(KV, k), k) for k in kv] + [(bucket_of(LOCK, k), k) for k in self.lock_keys]

    # -- node life cycle ---------------------------------------------------------------

    def node_started(self, node: SimNode) -> None:
        node.timer(self.rng.uniform(0.0, 0.2), self.kv_loop, node, 1)
        node.timer(self.rng.uniform(0.0, 0.2), self.lock_loop, node, 1)
        if node.incarnation == 1 and node.name == self.sim.voters[0]:
            for key in self.cold_keys:
                op = Op(bucket_of(KV, key), key, ("put", self.rng.randrange(1000)), (node.name, "cold", key))
                node.timer(self.rng.uniform(0.0, 0.2), node.submit, op)

    def node_crashed(self, node: SimNode) -> None:
        for pid in node.procs:
            self.waiting.pop(pid, None)

    # -- key-value client ------------------------------------------------------------------

    def kv_loop(self, node: SimNode, client: int) -> None:
        if self.sim.q.now >= self.stop_at:
            return
        rng = self.rng
        key = rng.choice(self.kv_keys)
        roll = rng.random()
        if self.cold_keys and roll < 0.05:
            key, op_input = rng.choice(self.cold_keys), ("get",)
        elif roll < 0.4:
            op_input: tuple[object, ...] = ("get",)
        elif roll < 0.85:
            op_input = ("put", rng.randrange(1000))
        else:
            op_input = ("delete",)

        def done(_op: Op, _reg: Register) -> None:
            node.timer(rng.uniform(0.2, 1.0) * self.lease, self.kv_loop, node, client)

        node.submit(Op(bucket_of(KV, key), key, op_input, (node.name, node.incarnation, "kv", client), done))

    # -- lock client --------------------------------------------------------------------------

    def lock_loop(self, node: SimNode, client: int) -> None:
        if self.sim.q.now >= self.stop_at:
            return
        proc = LockProc(client, self.rng.choice(self.lock_keys), self.sim.q.now)
        proc.pid = node.spawn(proc)
        proc.ref = Ref(node.name, node.incarnation, proc.pid.serial)
        self.waiting[proc.pid] = (node, node.incarnation, proc)
        self.claim(node, proc)

    def claim(self, node: SimNode, proc: LockProc) -> None:
        pid = proc.pid
        assert pid is not None
        if pid not in node.procs or pid in node.owners or proc.claiming:
            return
        proc.claiming = True

        def done(_op: Op, register: Register) -> None:
            self.claimed(node, proc, register)

        node.submit(
            Op(
                bucket_of(LOCK, proc.key),
                proc.key,
                ("claim", pid, proc.ref),
                ("claim", pid),
                done,
                grant_pid=pid,
                needs_lease=True,
                keep_going=lambda: pid in node.procs,
            )
        )

    def claimed(self, node: SimNode, proc: LockProc, register: Register) -> None:
        proc.claiming = False
        pid = proc.pid
        if pid not in node.procs or pid in node.owners:
            return
        node.reap((bucket_of(LOCK, proc.key), proc.key), register)
        proc.token += 1
        node.timer(self.sim.config.claim_retry * self.lease, self.retry, node, proc, proc.token)

    def retry(self, node: SimNode, proc: LockProc, token: int) -> None:
        if token == proc.token:
            self.claim(node, proc)

    def handoff_notice(self, node: SimNode, msg: HandoffNotice) -> None:
        for proc in list(node.procs.values()):
            if isinstance(proc, LockProc) and proc.key == msg.key and proc.pid not in node.owners:
                proc.token += 1
                self.claim(node, proc)

    def granted(self, node: SimNode, pid: Pid) -> None:
        self.waiting.pop(pid, None)
        hold = self.rng.uniform(0.05, self.sim.config.hold_max) * self.lease
        node.timer(hold, self.finish, node, pid)

    def finish(self, node: SimNode, pid: Pid) -> None:
        if pid in node.procs:
            node.kill(pid, "normal")

    def proc_exited(self, node: SimNode, pid: Pid, proc: LockProc, reason: str) -> None:
        if self.waiting.pop(pid, None) is not None and proc.ref is not None:
            # as the lock agent does for a waiter that dies: a dead waiter never blocks a lock
            node.withdraw((bucket_of(LOCK, proc.key), proc.key), pid, proc.ref)
        node.timer(self.rng.uniform(0.0, 0.5) * self.lease, self.lock_loop, node, proc.client)

    # -- end of run -------------------------------------------------------------------------------

    def finish_run(self) -> None:
        for pid, (node, incarnation, proc) in self.waiting.items():
            if node.alive and node.incarnation == incarnation and pid in node.procs:
                self.violations.append(
                    f"lock waiter {pid!r} on {proc.key} (spawned {proc.spawned:.3f}) "
                    f"was never served (end {self.sim.end:.3f})"
                )
