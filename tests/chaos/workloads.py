"""The chaos workloads: fenced lock-protected sets, and a linearizable register.

lock-set: workers on every node (voters via remote spawn, and the client)
loop: `paxtor.lock(key)`, read a set from `FencedSetResource` (a GenServer in
the harness process that checks fencing tokens with `paxtor.Fence`), add one
element, write the set back, `unlock`. The resource logs every accepted and
refused access; the workers report their "belief" intervals to a `Recorder`.

register: workers on the console and on the client nodes run get,
put-if-empty, blind increments and compare-and-set on a few PaxosKV keys
(``mode`` "incr" or "cas" keeps one of the two writes); each tells the `Recorder` (on the
console) when it invokes an operation and when it completes, so an
operation whose worker or node died in flight is still in the history, as
"maybe" (complete=None), like a timeout or NoQuorum. Their rounds need a
quorum of the (faulted) voters.

singletons: workers on the console and the client nodes call `paxtor.name`d
counters (`CountingSingleton`, started on whichever node the name places
it); every reply carries the serving pid, its tenure's epoch and the time it
served, sent to the `Recorder`.

Every time recorded is `now()`: the host's real CLOCK_MONOTONIC read by a
raw syscall, so a node under libfaketime stamps on the same timeline.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from contextlib import suppress
from functools import partial
from typing import Any

import gevent

import paxtor
from paxtor import paxos
from paxtor.actors import (
    Down,
    GenServer,
    ReceiveTimeout,
    call,
    receive,
    self_pid,
    send,
    spawn_monitor,
)
from paxtor.locks.fence import Fence, StaleToken
from paxtor.paxos.register import Register, put_if_empty
from paxtor.rounds import paxos_key
from paxtor.sim.linearizability import Operation
from paxtor.singletons.keeper import NAMES_BUCKET
from tests.chaos.clocks import real_monotonic

RESOURCE = "chaos_resource"
RECORDER = "chaos_recorder"
LOCK_TIMEOUT = 4.0
CALL_TIMEOUT = 3.0
OP_TIMEOUT = 2.0


def now() -> float:
    """Monotonic seconds, comparable across the OS processes of one Linux host (libfaketime
    cannot skew it: see `clocks.real_monotonic`)."""
    return real_monotonic()


class FencedSetResource(GenServer):
    """A shared set per key that only accepts reads/writes carrying a fresh fencing token."""

    def init(self) -> None:
        self.fence = Fence()
        self.sets: dict[Hashable, frozenset[str]] = {}
        self.log: list[tuple[Any, ...]] = []  # (t, op, key, token, holder, elem, outcome)
        self.watches: dict[str, Any] = {}  # node -> pid to tell when a holder there reads

    def handle_call(self, request: Any, caller: Any) -> Any:
        kind = request[0]
        if kind == "watch":  # the nemesis: tell me when a holder on this node is mid-section
            self.watches[request[1]] = request[2]
            return "ok"
        if kind == "dump":
            return list(self.log), {k: sorted(v) for k, v in self.sets.items()}
        _, key, token, holder = request[:4]
        try:
            self.fence.check(key, token)
        except StaleToken as exc:
            self.log.append((now(), kind, key, token, holder, request[4] if kind == "write" else None, "stale"))
            return ("stale", exc.highest)
        if kind == "read":
            self.log.append((now(), "read", key, token, holder, None, "ok"))
            watcher = self.watches.pop(holder.node, None)
            if watcher is not None:
                send(watcher, ("in_critical_section", holder.node, holder, key, token))
            return ("ok", sorted(self.sets.get(key, frozenset())))
        if kind == "write":
            elem, members = request[4], request[5]
            self.sets[key] = frozenset(members)
            self.log.append((now(), "write", key, token, holder, elem, "ok"))
            return ("ok",)
        raise ValueError(f"unknown request {request!r}")


class Recorder(GenServer):
    """Collects the events workers send (any message), stamped on arrival."""

    def init(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def handle_info(self, msg: Any) -> None:
        if isinstance(msg, tuple):
            self.events.append(msg)

    def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.events)


def lock_set_worker(worker: str, keys: list[str], client: str, deadline: float, seed: int) -> None:
    """Runs on any node until `deadline`: lock, read-add-write through the fence, unlock."""
    rng = random.Random(f"{seed}:{worker}:{self_pid()}")
    resource = (RESOURCE, client)
    recorder = (RECORDER, client)
    me = self_pid()
    n = 0
    while now() < deadline:
        key = rng.choice(keys)
        try:
            token = paxtor.lock(key, timeout=LOCK_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - no quorum, timeout: try again
            send(recorder, ("lock_failed", worker, me, key, now(), type(exc).__name__))
            gevent.sleep(0.05)
            continue
        acquired = now()
        send(recorder, ("acquired", worker, me, key, token, acquired))
        elem = f"{worker}/{me}/{n}"
        n += 1
        outcome = "?"
        try:
            read = call(resource, ("read", key, token, me), timeout=CALL_TIMEOUT)
            if read[0] == "ok":
                gevent.sleep(rng.uniform(0, 0.1))  # a long enough critical section that pauses land in it
                wrote = call(resource, ("write", key, token, me, elem, [*read[1], elem]), timeout=CALL_TIMEOUT)
                outcome = wrote[0]
            else:
                outcome = read[0]
        except Exception as exc:  # noqa: BLE001 - the resource call failed: the add is not acked
            outcome = type(exc).__name__
        believed_until = now()
        with suppress(Exception):  # if unlock fails, the lock is released when this process exits
            paxtor.unlock(key)
        send(recorder, ("released", worker, me, key, token, acquired, believed_until, outcome))


def keep_running(node: str, deadline: float, function: Any, *args: Any) -> None:
    """Runs in the harness: keep one ``function(*args)`` process alive on `node` until `deadline`."""
    while now() < deadline:
        try:
            _, ref = spawn_monitor(function, *args, node=node)
            receive(lambda m, ref=ref: isinstance(m, Down) and m.ref == ref, timeout=max(0.1, deadline - now() + 5))
        except ReceiveTimeout:
            return  # still running well past the deadline: leave it (the node dies with the run)
        except Exception:  # noqa: BLE001 - node unreachable right now: try again shortly
            gevent.sleep(0.3)
        gevent.sleep(0.2)


def increment(register: Register) -> Register:
    """Change function: empty -> 1, n -> n + 1 (same tenure)."""
    if register.is_empty:
        return put_if_empty(1)(register)
    return register.with_value(register.value + 1)


def compare_and_set(expected: int | None, new: int, register: Register) -> Register:
    """Change function: `new` if the register holds `expected` (None: empty), else unchanged.
    A retried attempt whose earlier attempt was chosen finds `new` and changes nothing."""
    current = None if register.is_empty else register.value
    if current != expected:
        return register
    if register.is_empty:
        return put_if_empty(new)(register)
    return register.with_value(new)


def register_worker(worker: str, keys: list[str], client: str, deadline: float, seed: int, mode: str = "mixed") -> None:
    """Runs on the console or a client node: get, put, incr and cas, each invocation and
    completion sent to the recorder (`history_from` makes Operations of them).

    A blind increment is not idempotent: it checks that a retried round whose earlier
    attempt was chosen after all does not apply the change twice (`paxos.propose` marks
    its ops for that); cas (expected -> expected + 1, from this worker's last read) is
    the same load made idempotent by the caller. `mode`: "mixed", "incr" or "cas"."""
    me = self_pid()
    worker = f"{worker}/{me}"  # one sequential process of the history per incarnation
    rng = random.Random(f"{seed}:{worker}")
    recorder = (RECORDER, client)
    seq = 0
    seen: dict[str, int | None] = {}
    while now() < deadline:
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.4:
            op: tuple[Any, ...] = ("get",)
        elif roll < 0.9 and (mode == "incr" or (mode == "mixed" and roll < 0.65)):
            op = ("incr",)
        elif roll < 0.9:
            expected = seen.get(key)
            op = ("cas", expected, 1 if expected is None else expected + 1)
        else:
            op = ("put", rng.randrange(100, 1000))
        seq += 1
        start = now()
        send(recorder, ("reg_invoke", worker, seq, key, op, start))
        try:
            timeout = OP_TIMEOUT
            if op[0] == "get":
                output = paxos.get(key, default=None, timeout=timeout)
            elif op[0] == "incr":
                output = paxos.propose(key, increment, timeout=timeout).value
            elif op[0] == "cas":
                output = paxos.propose(key, partial(compare_and_set, op[1], op[2]), timeout=timeout).value
            else:
                output = paxos.put(key, op[1], timeout=timeout)
            send(recorder, ("reg_ok", worker, seq, output, now()))
            seen[key] = output
            gevent.sleep(rng.uniform(0, 0.01))
        except Exception as exc:  # noqa: BLE001 - NoQuorum/timeout: it may or may not have happened
            send(recorder, ("reg_error", worker, seq, now(), key, f"{type(exc).__name__}: {str(exc)[:120]}", start))
            gevent.sleep(0.05)


def history_from(events: list[tuple[Any, ...]]) -> tuple[list[Operation], list[tuple[float, str, str, float]]]:
    """The register history (an invocation without a reply is "maybe") and the errors
    (time, key, what, invoked), from the recorder's events."""
    invoked: dict[tuple[str, int], tuple[Any, ...]] = {}
    done: dict[tuple[str, int], tuple[Any, float]] = {}
    errors = []
    for e in events:
        if e[0] == "reg_invoke":
            invoked[(e[1], e[2])] = e
        elif e[0] == "reg_ok":
            done[(e[1], e[2])] = (e[3], e[4])
        elif e[0] == "reg_error":
            errors.append((e[3], e[4], e[5], e[6]))
    history = []
    for ident, (_, worker, _, key, op, start) in invoked.items():
        output, end = done.get(ident, (None, None))
        history.append(Operation(worker, key, tuple(op), output, start, end))
    return history, errors


def lost_records(events: list[tuple[Any, ...]]) -> dict[str, int]:
    """Register workers whose records did not all arrive (their sequence numbers have
    gaps): messages are lost when a connection to the console drops. {worker: missing}."""
    seqs: dict[str, set[int]] = {}
    for e in events:
        if e[0] in ("reg_invoke", "reg_ok", "reg_error"):
            seqs.setdefault(e[1], set()).add(e[2])
    return {w: max(s) - len(s) for w, s in seqs.items() if max(s) != len(s)}


def hold_until_killed(key: str, reply_to: Any) -> None:
    """Liveness probe, on a voter: take the lock on `key`, say so, and hold it until the node dies."""
    token = paxtor.lock(key, timeout=LOCK_TIMEOUT)
    send(reply_to, ("holding", key, self_pid(), token))
    receive()


class CountingSingleton(GenServer):
    """A `paxtor.name`d counter that answers each "inc" with (n, its pid, its epoch, serve time)."""

    def init(self, key: str) -> None:
        self.key = key
        self.n = 0
        self.epoch: int | None = None

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request != "inc":
            raise ValueError(f"CountingSingleton understands 'inc', got {request!r}")
        if self.epoch is None:  # bound by the keeper just after init: read the tenure once
            self.epoch = paxos.epoch_of(paxos_key(self.key), bucket=NAMES_BUCKET)
        self.n += 1
        return (self.n, self_pid(), self.epoch, now())


def singleton_worker(worker: str, keys: list[str], client: str, deadline: float, seed: int) -> None:
    """Runs on the console or a client node: call each named counter; tell the recorder
    who served, in which epoch (("served", key, pid, epoch, at, n, invoke, complete))."""
    rng = random.Random(f"{seed}:{worker}:{self_pid()}")
    recorder = (RECORDER, client)
    spec = ("tests.chaos.workloads:CountingSingleton",)
    while now() < deadline:
        key = rng.choice(keys)
        start = now()
        try:
            n, pid, epoch, at = call(paxtor.name(key, (*spec, key)), "inc", timeout=OP_TIMEOUT)
        except Exception:  # noqa: BLE001 - no quorum, a dead incarnation not yet seen: try again
            gevent.sleep(0.05)
            continue
        send(recorder, ("served", key, pid, epoch, at, n, start, now()))
        gevent.sleep(rng.uniform(0, 0.02))


# -- the cold probe: data nobody touches again, across a voter fault -------------------------
#
# The voter nemeses (`tests.chaos.voter_faults`) have `probe_write` put fresh keys and
# `probe_hold` take a fresh lock before a fault, and `probe_read` read every key and try the
# lock from a client node (which has no cached state of them) after it. The workloads only
# touch hot keys, which every round rewrites on the voters of the moment; a key written once
# lives only where its one round left it, so a voter change that did not move it, or a wiped
# voter that voted before it caught up, loses it (`checkers.check_cold_probe`).


def probe_write(keys: list[Any], recorder: Any, reply_to: Any, until: float, tag: Any) -> None:
    """Put ``key -> i`` for each key, recording each acked put; tell `reply_to` when done."""
    acked = 0
    for i, key in enumerate(keys):
        if now() >= until:
            break
        try:
            chosen = paxos.put(key, i, timeout=OP_TIMEOUT)
        except Exception:  # noqa: BLE001 - not acked: it proves nothing either way
            continue
        send(recorder, ("probe_put", key, chosen, now()))
        acked += 1
    send(reply_to, ("probe_written", tag, acked))


def probe_hold(key: Any, recorder: Any, reply_to: Any) -> None:
    """Take the lock on `key` and hold it until told ("probe_release",); the holder records
    its tenure only if it lived to the end of it (a holder its node killed proves nothing)."""
    try:
        token = paxtor.lock(key, timeout=LOCK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - no lock, no probe of it
        send(reply_to, ("probe_holding", key, None, type(exc).__name__))
        return
    since = now()
    send(reply_to, ("probe_holding", key, token, "ok"))
    receive(lambda m: m == ("probe_release",))
    send(recorder, ("probe_lock_held", key, self_pid(), token, since, now()))
    with suppress(Exception):
        paxtor.unlock(key)


def probe_read(keys: list[Any], lock_key: Any, recorder: Any, reply_to: Any, until: float) -> None:
    """Read every key back and try the lock (released at once if granted); record what came back."""
    me = self_pid()
    for key in keys:
        if now() >= until:
            break
        try:
            value = paxos.get(key, default=None, timeout=OP_TIMEOUT)
        except Exception:  # noqa: BLE001 - no quorum: no reading
            continue
        send(recorder, ("probe_get", key, value, now()))
    while now() < until:
        try:
            token = paxtor.try_lock(lock_key)
        except Exception:  # noqa: BLE001 - no quorum: try again until `until`
            gevent.sleep(0.2)
            continue
        send(recorder, ("probe_lock_try", lock_key, me, token, now()))
        if token is not None:
            with suppress(Exception):
                paxtor.unlock(lock_key)
        break
    send(reply_to, ("probe_read_done", lock_key))
