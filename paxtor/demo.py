"""`python -m paxtor demo`: the seed's lock and counter examples on a real cluster.

The demo starts three voters on this host as ``python -m paxtor node N
--no-shell`` OS processes (a free block of ports, a fresh cookie, durable
acceptors in a temporary directory), joins them from this process as a client
node, and then shows, with timings:

1. the cluster forming (founded once every voter is up; ``Quorum reached.``);
2. the lock example: ten processes on three nodes take ``paxtor.lock("some
   key")`` and print their digit five times, 0.1 s apart: runs of five;
3. the counter example: ``apple = paxtor.name("apple", Counter)`` and
   ``banana``, called from every node, and ``paxtor.whereis``;
4. failover: ``kill -9`` of the node hosting "apple" while a process there
   holds a lock: the lock passes to a waiter elsewhere with a larger fencing
   token, and "apple" starts again on another node.

Everything it starts is killed by pid and its directory removed at the end,
also on Ctrl-C or an error. Exit status 0 when every step showed what it
should, 1 (with the reason) otherwise, 130 on Ctrl-C.

The cluster itself is `paxtor.local_cluster.LocalCluster`, which the examples
in ``examples/`` use too.
This module prints: it is the user-facing main job, not library code.
"""

from __future__ import annotations

import itertools
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.subprocess
from greenlet import getcurrent

import paxtor
from paxtor.actors import Down, GenServer, Pid, ReceiveTimeout, call, receive, self_pid, send, spawn, spawn_monitor
from paxtor.actors.distribution import NodeDown, NodeUp, monitor_nodes
from paxtor.actors.distribution import nodes as connected_nodes
from paxtor.actors.messages import CallError
from paxtor.local_cluster import LocalCluster
from paxtor.paxos.membership import quorum_message

__all__ = [
    "Counter",
    "DemoFailed",
    "run_demo",
    "runs_of",
]

CLUSTER_SIZE = 3
LOCK_KEY = "some key"
#: Anything that should happen "soon" on a healthy cluster; a step that takes
#: longer fails the demo with a message instead of hanging.
STEP_TIMEOUT = 30.0
#: Settings every demo node gets (the lease and its silence threshold keep
#: their defaults: 3 s * 1.05**2 + 0.5 s before a dead node's keys are freed).
NODE_FLAGS = ("--durability", "fsync", "--reconnect-max", "0.5", "--heartbeat-timeout", "3")


class DemoFailed(Exception):
    """A step did not show what it should; the message says which and why."""


# -- the code that runs on the nodes (module-level: it travels as "paxtor.demo:fn") ---------


class Counter(GenServer):
    """The seed's counter: ``call(c, "inc")`` replies n and counts up, from 1."""

    def init(self) -> None:
        self.n = 1

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "inc":
            self.n += 1
            return self.n - 1
        raise ValueError(f"Counter understands 'inc', got {request!r}")


def print_digits(digit: int, out: Pid, use_lock: bool = True) -> None:
    """The seed's lock example, one process: lock, then "print" the digit 5 times.

    "Printing" is a message to `out` (the demo's process), which writes it:
    the output of every node ends up on one terminal, in arrival order.
    """
    if use_lock:
        token = paxtor.lock(LOCK_KEY)
        send(out, ("locked", digit, self_pid().node, token))
    for _ in range(5):
        gevent.sleep(0.1)
        send(out, ("digit", digit))


def count_from_here(keys: Sequence[str], times: int, out: Pid) -> None:
    """``call(paxtor.name(key, Counter), "inc")`` `times` times per key, from this node."""
    here = self_pid().node
    for key in keys:
        counter = paxtor.name(key, Counter)
        for _ in range(times):
            send(out, ("counted", here, key, call(counter, "inc", timeout=STEP_TIMEOUT)))
    send(out, ("whereis", here, {key: paxtor.whereis(paxtor.name(key, Counter)) for key in keys}))


def hold_lock(key: str, out: Pid) -> None:
    """Take the lock on `key` and keep it until this process (or its node) dies."""
    send(out, ("holding", self_pid(), paxtor.lock(key)))
    receive()


def wait_for_lock(key: str, out: Pid) -> None:
    """Queue for the lock on `key`; report the token when it arrives."""
    send(out, ("waiting", self_pid()))
    token = paxtor.lock(key)
    send(out, ("granted", self_pid(), token))
    receive()


# -- the demo ---------------------------------------------------------------------------------


class Clock:
    """Prints lines stamped with the seconds since the demo began."""

    def __init__(self, out: Any = None) -> None:
        self.t0 = time.monotonic()
        self.out = out or sys.stdout
        self.mid_line = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str = "", end: str = "\n") -> None:
        stamp = f"[{self.now():5.1f}s] " if text else ""
        self.write(f"{stamp}{text}{end}", new_line=True)

    def note(self, text: str) -> None:
        """An unstamped line, indented under the last stamped one."""
        self.write(f"         {text}\n", new_line=True)

    def write(self, text: str, new_line: bool = False) -> None:
        """`text` as is; with `new_line`, on a line of its own."""
        if new_line and self.mid_line:
            text = "\n" + text
        self.out.write(text)
        self.out.flush()
        self.mid_line = not text.endswith("\n")


def runs_of(items: Sequence[Any]) -> list[tuple[Any, int]]:
    """``[(item, how many times in a row), ...]``: "0001" -> [("0", 3), ("1", 1)]."""
    runs: list[tuple[Any, int]] = []
    for item in items:
        if runs and runs[-1][0] == item:
            runs[-1] = (item, runs[-1][1] + 1)
        else:
            runs.append((item, 1))
    return runs


def observer_name(keys: Sequence[str], voters: Sequence[str]) -> str:
    """A client node name that places none of `keys` on the demo process itself.

    Singletons go to the best node of the key by rendezvous hashing over the
    live nodes, clients included; the demo kills the node hosting "apple" and
    watches it move, so its own node must rank below every voter for the first
    key (it must not be the second home either) and not first for the others.
    """
    from paxtor.placement import rendezvous_order
    from paxtor.rounds import paxos_key

    candidates = ["console", "observer", "watcher", *(f"console{i}" for i in range(2, 200))]
    for candidate in candidates:
        nodes = [*voters, candidate]
        first = rendezvous_order(paxos_key(keys[0]), nodes)
        others = [rendezvous_order(paxos_key(key), nodes) for key in keys[1:]]
        if first.index(candidate) >= 2 and all(order[0] != candidate for order in others):
            return candidate
    return candidates[0]


def _crashed(msg: Any) -> bool:
    """A `Down` of one of the demo's monitored workers that did not end normally."""
    return isinstance(msg, Down) and msg.reason != "normal"


def _expect(
    match: Callable[[Any], bool], what: str, timeout: float = STEP_TIMEOUT, cluster: LocalCluster | None = None
) -> Any:
    """The next message `match` accepts; `DemoFailed` naming `what` after `timeout`.

    A worker that crashes (the demo monitors the ones it spawns) fails the
    step at once with its reason, and so does a node process that exits
    (looked at every half second), instead of waiting for the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        try:
            msg = receive(lambda m: match(m) or _crashed(m), timeout=min(0.5, left))
        except ReceiveTimeout:
            if cluster is not None:
                cluster.check_running()
            continue
        if _crashed(msg) and not match(msg):
            raise DemoFailed(f"{msg.pid!r} on {msg.pid.node} crashed while waiting for {what}: {msg.reason}")
        return msg


def current_node_cluster() -> str:
    """The id of the cluster the demo's own node joined."""
    from paxtor.actors.distribution import distributed_node
    from paxtor.actors.node import current_node

    dist = distributed_node(current_node())
    return dist.cluster if dist is not None else "?"


def _is(tag: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, tuple) and len(m) > 0 and m[0] == tag


def show_quorum_forming(cluster: LocalCluster, clock: Clock) -> None:
    """Wait for every voter to connect (a new cluster is founded once all are up), then
    for a quorum's lease."""
    connected: list[str] = []

    def arrived(voter: str) -> None:
        connected.append(voter)
        clock.say(f"{voter} is up   [cluster:{len(connected)}/{cluster.size}]")

    for voter in connected_nodes():  # connected before this process subscribed (NodeUp from now on)
        if voter in cluster.voters:
            arrived(voter)
    while len(connected) < cluster.size:
        up = _expect(
            lambda m: isinstance(m, NodeUp) and m.node in cluster.voters, "the voters to connect", cluster=cluster
        )
        if up.node not in connected:
            arrived(up.node)
    paxtor.wait_for_quorum(timeout=STEP_TIMEOUT)
    founded = current_node_cluster()
    clock.say(f"all voters up: cluster {founded} founded   {quorum_message(True, cluster.size, cluster.size)}")
    clock.say("this node holds a lease from a quorum of voters: it may lock and name (paxtor.wait_for_quorum)")
    for proc in cluster.processes.values():
        lines = [e.get("message") for e in proc.events("quorum_reached") if e.get("message")]
        if lines:
            clock.note(f"{proc.name} logged: {lines[0]}")


def show_lock(cluster: LocalCluster, clock: Clock) -> int:
    """The seed's lock example across the nodes; return the last token."""
    me = self_pid()
    nodes = cluster.voters
    clock.say("")
    clock.say(f'1. Cluster-wide lock: ten processes on {", ".join(nodes)} each call paxtor.lock("{LOCK_KEY}"),')
    clock.note("then print their digit five times, 0.1 s apart, and exit (exiting releases the lock).")

    clock.say("without the lock: ", end="")
    for digit in range(10):
        spawn_monitor(print_digits, digit, me, False, node=nodes[digit % len(nodes)])
    for _ in range(50):
        clock.write(str(_expect(_is("digit"), "the digits without the lock", cluster=cluster)[1]))
    clock.write("\n")

    clock.say("with the lock:    ", end="")
    for digit in range(10):
        spawn_monitor(print_digits, digit, me, node=nodes[digit % len(nodes)])
    digits: list[int] = []
    holders: list[tuple[int, str, int]] = []
    while len(digits) < 50:
        msg = _expect(lambda m: _is("digit")(m) or _is("locked")(m), "the digits under the lock", cluster=cluster)
        if msg[0] == "locked":
            holders.append(msg[1:])
        else:
            digits.append(msg[1])
            clock.write(str(msg[1]))
    clock.write("\n")

    runs = runs_of(digits)
    if sorted(d for d, _ in runs) != list(range(10)) or any(n != 5 for _, n in runs):
        raise DemoFailed(f"the digits under the lock are not ten runs of five: {''.join(map(str, digits))}")
    order = [d for d, _ in runs]
    tokens = [token for _, _, token in sorted(holders, key=lambda h: order.index(h[0]))]
    if any(b <= a for a, b in itertools.pairwise(tokens)):
        raise DemoFailed(f"fencing tokens did not grow with each holder: {tokens}")
    clock.say("ten runs of five: one holder at a time. Holders in order (digit@node:token):")
    clock.note("  ".join(f"{d}@{n}:{t}" for d, n, t in sorted(holders, key=lambda h: order.index(h[0]))))
    return tokens[-1]


def show_counters(cluster: LocalCluster, clock: Clock) -> dict[str, Pid]:
    """The seed's counters: every node increments "apple" and "banana"; one process each."""
    me = self_pid()
    keys = ("apple", "banana")
    nodes = [*cluster.voters, cluster.node.name]
    clock.say("")
    clock.say('2. Singletons: apple = paxtor.name("apple", Counter); banana = paxtor.name("banana", Counter)')
    clock.note('(that starts nothing; the first call(apple, "inc") on any node starts one Counter for "apple")')
    times = 3
    for node in nodes:
        spawn_monitor(count_from_here, keys, times, me, node=node)
    counted: dict[str, dict[str, list[int]]] = {node: {key: [] for key in keys} for node in nodes}
    where: dict[str, dict[str, Pid]] = {}
    while len(where) < len(nodes):
        msg = _expect(lambda m: _is("counted")(m) or _is("whereis")(m), "the counters", cluster=cluster)
        if msg[0] == "counted":
            counted[msg[1]][msg[2]].append(msg[3])
        else:
            where[msg[1]] = msg[2]
    for node in nodes:
        parts = "   ".join(f"call({key}, 'inc') -> {' '.join(f'{n:>2}' for n in counted[node][key])}" for key in keys)
        clock.note(f'from {node:<8} {parts}')
    pids: dict[str, Pid] = {}
    for key in keys:
        seen = sorted(n for node in nodes for n in counted[node][key])
        if seen != list(range(1, len(nodes) * times + 1)):
            raise DemoFailed(f"{key!r} did not count 1..{len(nodes) * times} exactly once: {seen}")
        found = {where[node][key] for node in nodes}
        if len(found) != 1:
            raise DemoFailed(f"nodes disagree on where {key!r} runs: {sorted(map(repr, found))}")
        pids[key] = found.pop()
    clock.say(f"each counter counted 1..{len(nodes) * times} once: one process per key, reached from every node")
    for key in keys:
        pid = paxtor.whereis(paxtor.name(key, Counter))
        assert pid is not None  # a name always starts its process
        clock.note(f'paxtor.whereis({key}) -> {pid!r} on {pid.node} (the same pid on every node)')
    return pids


def show_failover(cluster: LocalCluster, clock: Clock, pids: dict[str, Pid], last_token: int) -> None:
    """kill -9 the node of "apple" while a process there holds a lock: both move on."""
    me = self_pid()
    victim = pids["apple"].node
    if victim not in cluster.processes:
        raise DemoFailed(f'"apple" runs on {victim}, not on a node the demo can kill')
    other = next(n for n in cluster.voters if n != victim)
    clock.say("")
    clock.say(f'3. Failover: kill -9 {victim}, which hosts "apple" and a lock holder')
    spawn(hold_lock, LOCK_KEY, me, node=victim)  # not monitored: it dies with its node
    held = _expect(_is("holding"), f"the lock holder on {victim}", cluster=cluster)[2]
    clock.say(
        f'a process on {victim} holds lock "{LOCK_KEY}" with token {held} (was {last_token}); one on {other} waits'
    )
    spawn_monitor(wait_for_lock, LOCK_KEY, me, node=other)
    _, waiter = _expect(_is("waiting"), f"the waiter on {other}", cluster=cluster)

    proc = cluster.processes[victim]  # NodeDown comes: demo_scenario subscribed this process
    killed_at = time.monotonic()
    cluster.kill(victim)
    clock.say(f"kill -9 {proc.pid} ({victim})")
    _expect(lambda m: isinstance(m, NodeDown) and m.node == victim, f"{victim} to be seen down", cluster=cluster)
    alive = sum(1 for n in cluster.voters if n != victim)
    clock.say(
        f"{victim} is down; {alive} of {cluster.size} voters remain: still a quorum [cluster:{alive}/{cluster.size}]"
    )
    clock.note("its lock and names stay bound until its lease must have run out (silence > lease*(1+drift)^2 + margin)")

    _, granted_to, token = _expect(
        lambda m: _is("granted")(m) and m[1] == waiter, f"the lock to pass to {other}", cluster=cluster
    )
    if token <= held:
        raise DemoFailed(f"the new holder's token {token} is not larger than the dead holder's {held}")
    clock.say(f"the lock passed to {granted_to!r} on {other} with token {token} > {held}, "
              f"{time.monotonic() - killed_at:.1f} s after the kill")  # fmt: skip

    apple = paxtor.name("apple", Counter)
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        try:
            first = call(apple, "inc", timeout=STEP_TIMEOUT)
            break
        except CallError as exc:  # the old pid, until this node has seen it die: look again
            if time.monotonic() > deadline:
                raise DemoFailed(f'"apple" did not come back: {exc}') from None
            gevent.sleep(0.1)
    new = paxtor.whereis(apple)
    assert new is not None  # a name always starts its process
    if new == pids["apple"] or new.node == victim:
        raise DemoFailed(f'"apple" is still {new!r} after its node was killed')
    clock.say(f'"apple" is back: {new!r} on {new.node} (was {pids["apple"]!r}), '
              f'{time.monotonic() - killed_at:.1f} s after the kill')  # fmt: skip
    clock.note(f'call(apple, "inc") -> {first}: a new process, so its count starts over (state is not replicated)')
    banana = paxtor.whereis(paxtor.name("banana", Counter))
    assert banana is not None  # a name always starts its process
    if pids["banana"].node != victim and banana != pids["banana"]:
        raise DemoFailed(f'"banana" moved although its node lives: {pids["banana"]!r} -> {banana!r}')
    clock.note(f'"banana" is still {banana!r} on {banana.node}')


def demo_scenario(cluster: LocalCluster, clock: Clock) -> str | None:
    """Steps 1..4 (the module docstring), run in a process of the client node:
    None if every step showed what it should, else what went wrong."""
    try:
        monitor_nodes(True)
        show_quorum_forming(cluster, clock)
        last_token = show_lock(cluster, clock)
        pids = show_counters(cluster, clock)
        show_failover(cluster, clock, pids, last_token)
    except DemoFailed as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - reported as the demo's failure, with its type
        return f"{type(exc).__name__}: {exc}"
    return None


def run_demo(out: Any = None) -> int:
    """The whole demo; the exit status (0: every step showed what it should)."""
    clock = Clock(out)
    main = getcurrent()
    loop = gevent.get_hub().loop
    handlers = [  # Ctrl-C or SIGTERM: unwind the main greenlet, so the cluster is stopped
        gevent.signal_handler(sig, lambda: loop.run_callback(main.throw, KeyboardInterrupt))
        for sig in (signal.SIGINT, signal.SIGTERM)
    ]
    try:
        with LocalCluster(CLUSTER_SIZE, flags=NODE_FLAGS, prefix="paxtor-demo-") as cluster:
            clock.say(
                f"Paxtor demo: {CLUSTER_SIZE} voters on 127.0.0.1 (ports {cluster.base_port + 1}.."
                f"{cluster.base_port + CLUSTER_SIZE}), durable state in {cluster.workdir}"
            )
            cluster.start_all()
            procs = ", ".join(f"{p.name} (pid {p.pid})" for p in cluster.processes.values())
            clock.say(f"started python -m paxtor node N --no-shell: {procs}")
            name = observer_name(("apple", "banana"), cluster.voters)
            node = cluster.join(name)
            clock.say(f"this process joined as client node {node.name!r} (it proposes, it does not vote)")
            failure = node.run(demo_scenario, cluster, clock)
            if failure is not None:
                clock.say(f"DEMO FAILED: {failure}")
                for proc in cluster.processes.values():
                    clock.note(f"-- last log lines of {proc.name} ({proc.log_path.name}) --")
                    clock.write(proc.tail() + "\n", new_line=True)
                return 1
            clock.say("")
            clock.say(f"demo done in {clock.now():.1f} s; stopping the cluster")
        return 0
    except Exception as exc:  # noqa: BLE001 - setting up: no ports, a node that cannot start...
        clock.say(f"DEMO FAILED: {exc if isinstance(exc, DemoFailed) else f'{type(exc).__name__}: {exc}'}")
        return 1
    except KeyboardInterrupt:
        clock.say("interrupted: cluster stopped")
        return 130
    finally:
        for handler in handlers:
            handler.cancel()
