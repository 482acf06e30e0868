"""Simulated clients: key-value puts/gets/deletes, lock processes, and singletons.

Per node (each incarnation):

- One key-value client loops over ``put``/``get``/``delete`` on a few keys, and
  now and then reads a *cold* key: one written once at the start and never
  again, so that its value lives only where that first round put it (a hot
  key is rewritten every moment, which would hide a value that a change of
  the voters failed to copy).
- One lock client spawns a process at a time that locks a key as
  `paxtor.locks.api.lock` does: it reads its node's lease term, runs an
  ``acquire`` as `paxtor.locks.home.run_op` does (`SimNode.run_lock_op`: at the
  key's home once the key is contended, where the home's
  `paxtor.locks.home_engine.LockHomeEngine` batches it with the other requests
  on the key), and owns the lock if the answer binds it and the lease is still
  in that term; else, queued, it waits for the wake-up (`LockWake`, from the
  round that handed it the lock) and holds the lock on it in the same way (a
  wake-up for an epoch no later than its last answer is stale), or re-reads
  the lock after ``claim_retry`` leases without one. It holds the lock for a while, then either unlocks (a
  release at the home, the lease keeper told first) and exits, or just exits
  and its node releases the lock (PaxosKV's binding machinery). A waiter that
  dies is withdrawn, and the lock released if it had reached it, as
  `paxtor.locks.agent` does. When a lock's answer shows it bound to a pid whose
  node this one suspects or knows restarted, the node proposes a release for
  "noconnection".
- A resolver looks a singleton up now and then (a read round of its name
  key); if it is free, a keeper starts it as `paxtor.singletons.keeper` does:
  ``claim_for_start`` bound to the keeper, held in the lease term of its
  round; then the child starts, and ``bind_child`` hands the key to it, held
  in its round's term. The child runs for a while and exits; its node
  releases the key (``ended_binding``, the names bucket's empty release). The
  keeper and its child are linked: either's death ends the other (the keeper
  waits for its bind round first). A key bound to a pid on a node the
  resolver suspects, or on a dead incarnation, is released for "noconnection".
  The singleton checker (`Cluster.singleton_checker`) counts a child live from
  its start to its exit: never two at once per key.

Requests stop ``drain`` before the end so that the liveness checks can demand
that everything finishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from paxtor.actors.ids import Pid, Ref
from paxtor.locks.messages import LockWake
from paxtor.locks.register import UNLOCKED, grant_of, is_queued, owner_of
from paxtor.locks.register import Op as LockOp
from paxtor.paxos.register import Binding, Register
from paxtor.sim.cluster import KV, LOCK, NAME, Cluster, Op, SimNode, bucket_of
from paxtor.singletons.register import STARTED, ended_binding, state_of

__all__ = ["Workload"]

#: Why a request is withdrawn when its process is alive but no longer waits (`paxtor.locks.agent`).
ABANDONED = "abandoned"


@dataclass(eq=False)
class LockProc:
    """A process in ``lock`` (``waiting``), then owning the lock, then unlocking."""

    client: int
    key: bytes
    spawned: float
    pid: Pid | None = None
    ref: Ref | None = None  # its request (`paxtor.locks.register.acquire`)
    term: int | None = None  # the lease term its request was sent in
    waiting: bool = True  # not granted yet
    busy: bool = False  # not in its ``receive`` for a wake-up (a round or a lease wait of its own)
    wake: LockWake | None = None  # a wake-up that came while it was busy (its mailbox)
    token: int = 0  # invalidates a pending recheck
    seen: int = 0  # the epoch of the last answer that showed it queued
    epoch: int = 0  # its tenure, once granted


@dataclass(eq=False)
class Keeper:
    """The keeper of one start of a singleton (`paxtor.singletons.keeper`)."""

    key: str
    pid: Pid | None = None
    child: Pid | None = None
    handing_over: bool = False  # its bind round has not answered yet
    checked: ClassVar[bool] = False  # its claim is not counted by the owner checker (`SimNode.hold`)


@dataclass(eq=False)
class Singleton:
    """A singleton's child process, started under its keeper's claim ``epoch``."""

    key: str
    keeper: Pid
    epoch: int


class Workload:
    def __init__(self, sim: Cluster, drain: float = 8.0) -> None:
        cfg = sim.config
        self.sim = sim
        self.rng = sim.rng
        scale = len(sim.nodes) / 3  # keep per-key contention (and history size) similar
        self.kv_keys = [f"k{i}" for i in range(round(cfg.kv_keys * scale))]
        self.cold_keys = [f"cold{i}" for i in range(cfg.cold_keys)]
        self.lock_keys = [f"l{i}".encode() for i in range(round(cfg.lock_keys * scale))]
        self.name_keys = [f"s{i}" for i in range(round(cfg.name_keys * scale))]
        self.stop_at = sim.end - drain * cfg.lease
        self.lease = cfg.lease
        self.waiting: dict[Pid, tuple[SimNode, int, LockProc]] = {}
        self.violations: list[str] = []
        self._slots = self._all_slots()

    def slots(self) -> list[tuple[str, Any]]:
        """Every (bucket, key) the clients use."""
        return self._slots

    def _all_slots(self) -> list[tuple[str, Any]]:
        kv = self.kv_keys + self.cold_keys
        return (
            [(bucket_of(KV, k), k) for k in kv]
            + [(bucket_of(LOCK, k), k) for k in self.lock_keys]
            + [(bucket_of(NAME, k), k) for k in self.name_keys]
        )

    # -- node life cycle ---------------------------------------------------------------

    def node_started(self, node: SimNode) -> None:
        node.timer(self.rng.uniform(0.0, 0.2), self.kv_loop, node, 1)
        node.timer(self.rng.uniform(0.0, 0.2), self.lock_loop, node, 1)
        if self.name_keys:
            node.timer(self.rng.uniform(0.0, self.sim.config.resolve_every) * self.lease, self.name_loop, node)
        if node.incarnation == 1 and node.name == self.sim.voters[0]:
            for key in self.cold_keys:
                op = Op(bucket_of(KV, key), key, ("put", self.rng.randrange(1000)), (node.name, "cold", key))
                node.timer(self.rng.uniform(0.0, 0.2), node.submit, op)

    def node_crashed(self, node: SimNode) -> None:
        for pid, proc in node.procs.items():
            self.waiting.pop(pid, None)
            if type(proc) is Singleton:
                self.sim.singleton_checker.stop((bucket_of(NAME, proc.key), proc.key), pid)

    def node_paused(self, node: SimNode) -> None:
        """A frozen singleton does nothing: it is not counted while its node is paused."""
        for pid, proc in node.procs.items():
            if type(proc) is Singleton:
                self.sim.singleton_checker.stop((bucket_of(NAME, proc.key), proc.key), pid)

    def node_resumed(self, node: SimNode) -> None:
        """Called once the resumed node has checked its lease (killing what it must)."""
        for pid, proc in node.procs.items():
            if type(proc) is Singleton:
                slot = (bucket_of(NAME, proc.key), proc.key)
                self.sim.singleton_checker.start(slot, pid, proc.epoch, self.sim.q.now)

    def proc_exited(self, node: SimNode, pid: Pid, proc: Any, reason: str) -> None:
        kind = type(proc)
        if kind is LockProc:
            if self.waiting.pop(pid, None) is not None and proc.ref is not None:
                # as the lock agent does for a waiter that dies: a dead waiter never blocks a lock
                self.withdraw(node, proc.key, pid, proc.ref, reason)
            node.timer(self.rng.uniform(0.0, 0.5) * self.lease, self.lock_loop, node, proc.client)
        elif kind is Keeper:
            if proc.child is not None and proc.child in node.procs:
                node.kill(proc.child, "shutdown")  # linked: the keeper's death ends its child
        elif kind is Singleton:
            self.sim.singleton_checker.stop((bucket_of(NAME, proc.key), proc.key), pid)
            keeper = node.procs.get(proc.keeper)
            if keeper is not None and not keeper.handing_over:
                node.kill(proc.keeper, "normal")  # its child is gone: the keeper's work is done

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

    # -- lock client (paxtor.locks.api.lock / unlock) ---------------------------------------------

    def lock_loop(self, node: SimNode, client: int) -> None:
        if self.sim.q.now >= self.stop_at:
            return
        proc = LockProc(client, self.rng.choice(self.lock_keys), self.sim.q.now)
        proc.pid = node.spawn(proc)
        proc.ref = Ref(node.name, node.incarnation, proc.pid.serial)
        self.waiting[proc.pid] = (node, node.incarnation, proc)
        self.with_term(node, proc, self.enqueue)

    def with_term(self, node: SimNode, proc: LockProc, then: Callable[[SimNode, LockProc], None]) -> None:
        """``lease_term(deadline)``: note this node's lease term, waiting while it has none."""
        if proc.pid not in node.procs:
            return
        proc.busy = True
        term = node.lease.term_at(node.local())
        if term is None:
            node.timer(self.sim.config.quorum_wait * self.lease, self.with_term, node, proc, then)
            return
        proc.term = term
        then(node, proc)

    def enqueue(self, node: SimNode, proc: LockProc) -> None:
        self.run_op(node, proc, ("acquire", proc.pid, proc.ref), self.acquired)

    def reread(self, node: SimNode, proc: LockProc) -> None:
        self.run_op(node, proc, ("read",), self.acquired)

    def run_op(
        self, node: SimNode, proc: LockProc, op: LockOp, then: Callable[[SimNode, LockProc, Register], None]
    ) -> None:
        """`paxtor.locks.home.run_op` for a process (`SimNode.run_lock_op`); a process that
        died takes its call with it."""
        pid = proc.pid
        if pid not in node.procs:
            return
        proc.busy = True
        node.run_lock_op(proc.key, op, lambda register: then(node, proc, register), lambda: pid in node.procs)

    def acquired(self, node: SimNode, proc: LockProc, register: Register) -> None:
        """One pass of ``lock``'s loop over the answer of its last round."""
        pid, ref = proc.pid, proc.ref
        assert pid is not None and ref is not None
        if not proc.waiting:
            return
        if owner_of(register) == pid:
            if not self.hold(node, proc, register.epoch):
                self.with_term(node, proc, self.reread)  # the term moved on during the round: confirm
            return
        if not is_queued(register, pid, ref):
            # it left the queue without winning (the lock reached it outside its term and
            # passed on): queue up again
            self.with_term(node, proc, self.enqueue)
            return
        node.reap((bucket_of(LOCK, proc.key), proc.key), register)
        proc.seen = register.epoch
        self.await_wakeup(node, proc)

    def await_wakeup(self, node: SimNode, proc: LockProc) -> None:
        proc.busy = False
        wake, proc.wake = proc.wake, None
        if wake is not None:
            self.woken(node, proc, wake)
            return
        proc.token += 1
        node.timer(self.sim.config.claim_retry * self.lease, self.recheck, node, proc, proc.token)

    def recheck(self, node: SimNode, proc: LockProc, token: int) -> None:
        if token == proc.token and proc.waiting and not proc.busy:
            self.with_term(node, proc, self.reread)

    def lock_wake(self, node: SimNode, wake: LockWake) -> None:
        """The lock agent's ``_wake``: hand it to the process still waiting for that request."""
        proc = node.procs.get(wake.pid)
        if type(proc) is not LockProc:
            return  # dead: its withdrawal takes care of the lock
        if proc.waiting and proc.key == wake.key and proc.ref == wake.ref:
            if proc.busy:
                proc.wake = wake  # read when it waits again
            else:
                proc.busy = True
                self.woken(node, proc, wake)
        elif proc.epoch == wake.epoch and wake.pid in node.owners:
            pass  # it knows: its own round told it
        else:
            self.withdraw(node, proc.key, wake.pid, wake.ref, ABANDONED, wake.epoch)  # it gave up on it

    def woken(self, node: SimNode, proc: LockProc, wake: LockWake) -> None:
        """A wake-up for a handoff the process's last answer already showed it queued after is
        stale (the lock reached the request, then left it: released for noconnection while
        its node's lease had lapsed); any other is trusted if the lease is still in the term."""
        proc.token += 1
        self.sim.count("lock_wakes")
        if wake.epoch <= proc.seen or not self.hold(node, proc, wake.epoch):
            self.with_term(node, proc, self.reread)  # a wake-up that cannot be trusted in this term

    def hold(self, node: SimNode, proc: LockProc, epoch: int) -> bool:
        """``_hold``: the lock is the process's if its node's lease is still in the term its
        request was sent in."""
        pid = proc.pid
        assert pid is not None
        if not node.hold(pid, (bucket_of(LOCK, proc.key), proc.key), epoch, Binding(pid=pid), proc.term):
            return False
        proc.waiting = proc.busy = False
        proc.epoch = epoch
        self.waiting.pop(pid, None)
        hold = self.rng.uniform(0.05, self.sim.config.hold_max) * self.lease
        node.timer(hold, self.finish, node, proc)
        return True

    def finish(self, node: SimNode, proc: LockProc) -> None:
        """The owner is done: it unlocks and then exits, or it just exits."""
        pid = proc.pid
        assert pid is not None
        if pid not in node.owners:
            return
        if self.rng.random() < self.sim.config.unlock_share:
            node.unhold(pid)  # the lease keeper first: the round that ends the tenure may kill a holder
            self.run_op(node, proc, ("release", proc.epoch, pid, UNLOCKED), self.unlocked)
        else:
            node.kill(pid, "normal")

    def unlocked(self, node: SimNode, proc: LockProc, _register: Register) -> None:
        assert proc.pid is not None
        node.unlocking.pop(proc.pid, None)
        node.kill(proc.pid, "normal")

    def withdraw(
        self, node: SimNode, key: bytes, pid: Pid, ref: Ref, reason: Any, epoch: int | None = None
    ) -> None:
        """The lock agent's ``withdraw_request``, until done: take the request out of the
        queue, and release the lock if it had reached it (at ``epoch``, if given)."""

        def withdrawn(register: Register) -> None:
            if owner_of(register) == pid and grant_of(register) == ref and epoch in (None, register.epoch):
                self.agent_op(node, key, ("release", register.epoch, pid, reason), lambda _r: None)

        self.agent_op(node, key, ("withdraw", pid, ref), withdrawn)

    def agent_op(self, node: SimNode, key: bytes, op: LockOp, then: Callable[[Register], None]) -> None:
        node.run_lock_op(key, op, then, lambda: True)

    # -- singletons (paxtor.singletons: the resolver and the keeper) -------------------------

    def name_loop(self, node: SimNode) -> None:
        if self.sim.q.now >= self.stop_at:
            return
        rng = self.rng
        key = rng.choice(self.name_keys)

        def done(_op: Op, register: Register) -> None:
            self.resolved(node, key, register)
            node.timer(rng.uniform(0.5, 1.5) * self.sim.config.resolve_every * self.lease, self.name_loop, node)

        node.submit(Op(bucket_of(NAME, key), key, ("get",), (node.name, node.incarnation, "resolve"), done))

    def resolved(self, node: SimNode, key: str, register: Register) -> None:
        """A free key gets a keeper here (unless one is starting it here already); a key
        bound to a pid this node believes gone is released."""
        if state_of(register) is None:
            if not any(type(p) is Keeper and p.key == key for p in node.procs.values()):
                self.start_keeper(node, key)
        else:
            node.reap((bucket_of(NAME, key), key), register)

    def start_keeper(self, node: SimNode, key: str) -> None:
        keeper = Keeper(key)
        pid = keeper.pid = node.spawn(keeper)

        def claimed(_op: Op, register: Register) -> None:
            self.keeper_claimed(node, keeper)

        node.submit(
            Op(
                bucket_of(NAME, key),
                key,
                ("claim_start", pid, node.name),
                ("keeper", node.name, node.incarnation, pid.serial),
                claimed,
                grant_pid=pid,
                needs_lease=True,
                keep_going=lambda: pid in node.procs,
            )
        )

    def keeper_claimed(self, node: SimNode, keeper: Keeper) -> None:
        """The claim round answered (and its grant was decided): start the child and hand the
        key over to it, or stop if the key is taken."""
        pid = keeper.pid
        assert pid is not None
        if pid not in node.procs:
            return
        owner = node.owners.get(pid)
        if owner is None:
            node.kill(pid, "normal")  # taken: another keeper owns the start
            return
        key, epoch = keeper.key, owner.epoch
        slot = (bucket_of(NAME, key), key)
        child = keeper.child = node.spawn(Singleton(key, pid, epoch))
        self.sim.singleton_checker.start(slot, child, epoch, self.sim.q.now)
        self.sim.count("singletons_started")
        runs = self.rng.uniform(0.05, self.sim.config.singleton_hold_max) * self.lease
        node.timer(runs, self.stop_singleton, node, child)
        keeper.handing_over = True

        def bound(_op: Op, _register: Register) -> None:
            self.bound(node, keeper)

        change = self.sim.mutations.bind_child(epoch, pid, child, node.name)
        node.submit(
            Op(
                slot[0],
                key,
                ("bind", epoch, pid, child, node.name),
                ("keeper", node.name, node.incarnation, pid.serial),
                bound,
                grant_pid=child,
                needs_lease=True,
                keep_going=lambda: pid in node.procs,
                given=(change, ended_binding(epoch, pid, STARTED)),
            )
        )

    def bound(self, node: SimNode, keeper: Keeper) -> None:
        """The bind round answered: the child owns the key (the keeper parents it), or it
        exited already, or the claim was lost (the child is stopped); either way the keeper's
        claim is given back if it still holds it."""
        keeper.handing_over = False
        pid, child = keeper.pid, keeper.child
        assert pid is not None and child is not None
        if pid not in node.procs or child in node.owners:
            return
        if child in node.procs:
            node.kill(child, "shutdown")
        node.kill(pid, "normal")

    def stop_singleton(self, node: SimNode, child: Pid) -> None:
        if child in node.procs:
            node.kill(child, "normal")

    # -- end of run -------------------------------------------------------------------------------

    def finish_run(self) -> None:
        for pid, (node, incarnation, proc) in self.waiting.items():
            if node.alive and node.incarnation == incarnation and pid in node.procs:
                self.violations.append(
                    f"lock waiter {pid!r} on {proc.key!r} (spawned {proc.spawned:.3f}) "
                    f"was never served (end {self.sim.end:.3f})"
                )
