"""The node's name server: the per-node cache of singleton pids, lookups, and starts.

One `NameServer` runs on every Paxtor node (see `paxtor.singletons.services`), registered
as `NAME_SERVER`. Two jobs:

- *Lookups for local callers.* The `NameCache` (key -> pid) is read by
  `paxtor.name` without any message, so a steady-state call through a name
  costs about what a call to the pid costs. A miss becomes one `Resolve`
  call here; concurrent misses for one key share one resolver process,
  which reads the key (a linearizable round) and, if it is free, asks the
  key's home node to start it. Every cached pid is monitored: its Down
  evicts it, and remembers it dead, so a pid known dead is never returned
  again (its stale binding is released instead).
- *Starts for any node.* A `Start` request (from a resolver anywhere) starts
  a keeper (`paxtor.singletons.keeper`) under this node's singleton
  supervisor, unless one is already starting the key here, and answers
  every requester with the keeper's outcome. A node that hosts no
  singletons (`paxtor.placement`) answers ``("not_here", why)``.

A singleton bound to a pid on a node this one cannot reach, while some peer
still can (the mesh says so), is `SingletonUnreachable` at once: a call
through a partition cannot get through, and waiting would end in a timeout
that names the wrong cause. When nobody reaches that node any more, it is
presumed down: the binding is released once its lease must have run out,
and the next use starts the singleton elsewhere.

The server's policy (who waits on which resolver or keeper, what is cached,
what is answered) is the pure `NameServerEngine` (`paxtor.singletons.name_engine`);
`NameServer` is its adapter. The resolvers' work (rounds, asking a home
node to start the key, reachability) is here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gevent
import structlog

from paxtor.actors import (
    ChildSpec,
    Down,
    GenServer,
    NoReply,
    Pid,
    ReceiveTimeout,
    Ref,
    call,
    demonitor,
    monitor,
    receive,
    reply,
    self_pid,
    send,
    spawn_link,
    trap_exits,
)
from paxtor.actors.distribution import distributed_node
from paxtor.actors.dynamic_supervisor import start_child
from paxtor.actors.errors import PaxtorError
from paxtor.actors.function_ref import FunctionRefRefused, check_allowed
from paxtor.actors.messages import NOCONNECTION, NOPROC, Caller, CallError, CallTimeout, Exit
from paxtor.actors.node import LocalNode, current_node
from paxtor.actors.node_slot import NodeSlot
from paxtor.actors.primitives import is_alive
from paxtor.actors.wire import wire_type
from paxtor.paxos.register import empty_released, identity, release_if_bound
from paxtor.placement import rendezvous_order, singleton_hosts
from paxtor.rounds import Deadline, end_tenure, propose
from paxtor.singletons.keeper import (
    NAMES_BUCKET,
    AwaitStart,
    KeeperReport,
    Started,
    allowed_here,
    keeper_child_spec,
)
from paxtor.singletons.name_engine import NameCache, NameServerEngine, Reply, SpawnResolver, StartKeeper, Watch
from paxtor.singletons.register import ended_binding, running_pid, starting_keeper

__all__ = [
    "NAME_SERVER",
    "SINGLETON_SUPERVISOR",
    "NameServer",
    "NameCache",
    "Resolve",
    "Start",
    "SingletonStartError",
    "SingletonUnreachable",
    "name_cache",
    "RESOLVE_TIMEOUT",
]

log = structlog.get_logger(__name__)

NAME_SERVER = "paxtor_names"
SINGLETON_SUPERVISOR = "paxtor_singletons"
#: How long a lookup may take to find or start a singleton before it fails.
RESOLVE_TIMEOUT = 30.0
#: Longest single wait for a node to start a singleton (a slow ``init``).
START_CALL_TIMEOUT = 15.0
#: Backoff bounds between looks at a key whose state cannot move yet.
BACKOFF_MIN, BACKOFF_MAX = 0.02, 1.0
#: A stale binding whose node is unreachable is released once that node's lease
#: must have run out; one attempt waits at most this long before looking again.
STALE_RELEASE_TIMEOUT = 2.0

#: The node's name cache, while its name server runs.
NAME_CACHE: NodeSlot[NameCache] = NodeSlot("names")


class SingletonStartError(PaxtorError):
    """The singleton's child could not be started (its claim on the key was released)."""

    def __init__(self, key: Any, reason: Any) -> None:
        super().__init__(f"the singleton {key!r} failed to start: {reason!r}")
        self.key = key
        self.reason = reason


class SingletonUnreachable(PaxtorError, ConnectionError):
    """The singleton runs (or is starting) on a node this one cannot reach, though others do."""

    def __init__(self, key: Any, node: str, here: str, reached_by: list[str]) -> None:
        super().__init__(
            f"the singleton {key!r} runs on node {node!r}, which node {here!r} cannot reach "
            f"(connected to it: {', '.join(reached_by)}); it is not down, so it is not restarted here"
        )
        self.key = key
        self.node = node


@wire_type(name="paxtor.StartSingleton")
@dataclass(frozen=True, slots=True)
class Start:
    """To a key's home node: start a keeper for `key` (``start``/``args``: the child spec)."""

    key: bytes
    start: str
    args: tuple
    user_key: Any


@dataclass(frozen=True, slots=True)
class Resolve:
    """From a local caller: the pid of `key`, started from `name` (a SingletonName) if needed."""

    key: bytes
    name: Any  # SingletonName, or None for a lookup that starts nothing


@dataclass(frozen=True, slots=True)
class _Resolved:
    key: bytes
    resolver: Pid
    outcome: tuple


def name_cache(node: LocalNode | None = None) -> NameCache:
    """The name cache of `node` (default: the current node)."""
    return (node or current_node()).require(NAME_CACHE, "name service")


class NameServer(GenServer):
    """The gevent adapter of `NameServerEngine` (`paxtor.singletons.name_engine`), which
    decides. This process answers the gates of a `Start` (does this node host singletons,
    is its start function allowed here) and carries out the engine's effects."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        return ChildSpec(cls, start=(cls.start_link, ()))

    @classmethod
    def start_link(cls, *args: Any, name: Any = NAME_SERVER) -> Pid:  # type: ignore[override]
        return super().start_link(*args, name=name)

    def init(self) -> None:
        trap_exits(True)
        self.node = current_node()
        self.me = self_pid()
        self.cache = NameCache(self.me)
        self.node.install(NAME_CACHE, self.cache)
        self.engine = NameServerEngine(self.cache, _known_death)
        self.watches: dict[Ref, Pid] = {}  # monitors of cached pids (any other Down: a keeper's)

    def handle_call(self, request: Any, caller: Caller) -> Any:
        cls = request.__class__
        if cls is Resolve:
            self._perform(self.engine.resolve(caller, request.key, request.name))
            return NoReply
        if cls is Start:
            return self._start(request, caller)
        raise ValueError(f"unknown request {request!r}")

    def _start(self, request: Start, caller: Caller) -> Any:
        if self.node.name not in singleton_hosts():
            return ("not_here", f"node {self.node.name!r} hosts no singletons")
        try:
            check_allowed(request.start, allowed_here())
        except FunctionRefRefused as exc:  # before any claim: nothing to undo
            log.warning("singleton_start_refused", node=self.node.name, start=str(request.start)[:200],
                        caller=repr(caller.pid), reason=str(exc))
            return ("error", exc)
        self._perform(self.engine.start(caller, request.key, request.start, request.args, request.user_key))
        return NoReply

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is _Resolved:
            self._perform(self.engine.resolved(msg.key, msg.resolver, msg.outcome))
        elif cls is KeeperReport:
            self._perform(self.engine.keeper_report(msg.key, msg.keeper, msg.outcome, time.time()))
        elif cls is Down:
            pid = self.watches.pop(msg.ref, None)
            if pid is not None:
                self.engine.pid_down(pid, msg.reason)
            else:
                self._perform(self.engine.keeper_down(msg.pid, msg.reason))
        elif cls is Exit:
            self._perform(self.engine.resolver_exit(msg.pid, msg.reason))
        else:
            super().handle_info(msg)

    def _perform(self, effects: list[Any]) -> None:
        for effect in effects:
            cls = effect.__class__
            if cls is Reply:
                reply(effect.token, effect.outcome)
            elif cls is Watch:
                self.watches[monitor(effect.pid)] = effect.pid
            elif cls is SpawnResolver:
                resolver = spawn_link(resolver_main, self.me, effect.key, effect.name)
                self.engine.resolver_spawned(effect.key, resolver)
            elif cls is StartKeeper:
                spec = keeper_child_spec(effect.key, effect.start, effect.args, effect.user_key, self.me)
                try:
                    keeper = start_child(SINGLETON_SUPERVISOR, spec)
                except Exception as exc:  # noqa: BLE001 - the supervisor refused: the caller's error
                    self._perform(self.engine.keeper_failed(effect.key, exc))
                    continue
                assert keeper is not None
                monitor(keeper)  # its Down: `keeper_down`
                self.engine.keeper_started(effect.key, keeper)

    def terminate(self, reason: Any) -> None:
        self.node.uninstall(NAME_CACHE, self.cache)


# -- the resolver: find a key's pid, starting it if needed --------------------------------


def resolver_main(server: Pid, key: bytes, name: Any) -> None:
    """Body of a resolver process: report ``("ok", pid or None)`` or ``("error", exc)``."""
    try:
        outcome: tuple = ("ok", resolve_key(key, name, Deadline(RESOLVE_TIMEOUT)))
    except TimeoutError as exc:
        outcome = ("error", TimeoutError(f"singleton {_describe(name, key)}: {exc or 'timed out'}"))
    except (SingletonStartError, SingletonUnreachable) as exc:
        outcome = ("error", exc)
    send(server, _Resolved(key, self_pid(), outcome))


def _describe(name: Any, key: bytes) -> str:
    return repr(name.key) if name is not None else key.hex()


def resolve_key(key: bytes, name: Any, deadline: Deadline) -> Pid | None:
    """The live pid bound to `key`; if the key is free, have its home node start
    it from `name` (None: start nothing, return None)."""
    backoff = BACKOFF_MIN
    while True:
        reg = propose(NAMES_BUCKET, key, identity, deadline)
        pid = running_pid(reg)
        if pid is not None:
            reason = _known_death(pid)
            if reason is None and not _connected(pid.node):
                reason = NOCONNECTION  # never connected, or lost before its Down came
            if reason is None:
                return pid
            if reason == NOCONNECTION:
                _check_reachable(name, key, pid.node)
            _release_stale(key, reg.epoch, pid, reason, deadline)
            continue
        keeper = starting_keeper(reg)
        if keeper is not None:
            _check_reachable(name, key, keeper.node)
            if not _await_keeper(keeper, deadline):
                gevent.sleep(deadline.cap(backoff))
                backoff = min(BACKOFF_MAX, backoff * 2)
            continue
        if name is None:
            return None
        outcome = _ask_home_to_start(key, name, deadline)
        if outcome[0] == "ok":
            return outcome[1]
        if outcome[0] == "error":
            raise SingletonStartError(name.key, outcome[1])
        gevent.sleep(deadline.cap(backoff))  # taken or lost meanwhile: look again
        backoff = min(BACKOFF_MAX, backoff * 2)


def _known_death(pid: Pid) -> Any:
    """Why `pid` is known dead here (None if it may be alive)."""
    node = current_node()
    if pid.node == node.name:
        return None if is_alive(pid) else NOPROC
    cache = node.service(NAME_CACHE)
    reason = cache.dead.get(pid) if cache is not None else None
    if reason == NOCONNECTION and _connected(pid.node):
        del cache.dead[pid]  # type: ignore[union-attr]  # its node is back: it may live
        return None
    return reason


def _connected(node_name: str) -> bool:
    if node_name == current_node().name:
        return True
    dist = distributed_node()
    return dist is not None and node_name in dist.peers.up


def _check_reachable(name: Any, key: bytes, node_name: str) -> None:
    """SingletonUnreachable if `node_name` is not connected here but some peer is connected to it.

    An attempt to connect it that is in flight (a node just heard of) is waited
    for first, for one handshake timeout at most; one that failed is not retried here.
    """
    if _connected(node_name):
        return
    dist = distributed_node()
    if dist is not None and dist.peers.reaching(node_name):
        peers = dist.peers
        peers.wait_until(lambda: node_name in peers.up or not peers.reaching(node_name), dist.config.handshake_timeout)
        if _connected(node_name):
            return
    reached_by = dist.reached_by_others(node_name) if dist is not None else []
    if reached_by:
        assert dist is not None
        user_key = name.key if name is not None else key
        raise SingletonUnreachable(user_key, node_name, dist.name, reached_by)


def _release_stale(key: bytes, epoch: int, pid: Pid, reason: Any, deadline: Deadline) -> None:
    """End a binding to a pid known dead (PaxosKV's binding watchers do it too; rounds are idempotent).

    For "noconnection" the acceptors refuse until the owner's lease must have
    run out; this waits a little at a time and lets the caller look again.
    """
    ended = ended_binding(epoch, pid, reason)
    attempt = Deadline(deadline.cap(STALE_RELEASE_TIMEOUT))
    try:
        end_tenure(NAMES_BUCKET, key, release_if_bound(ended, empty_released), ended, attempt)
    except TimeoutError:
        if deadline.expired():
            raise


def _await_keeper(keeper: Pid, deadline: Deadline) -> bool:
    """Wait until `keeper` has handed the key to its child, or has exited.

    False if it could not be asked (its node is unreachable): look again later.
    """
    ref = monitor(keeper)
    send(keeper, AwaitStart(self_pid(), ref))
    try:
        msg = receive(
            lambda m: (m.__class__ is Started and m.tag == ref) or (m.__class__ is Down and m.ref == ref),
            timeout=deadline.remaining(),
        )
    except ReceiveTimeout:
        demonitor(ref, flush=True)
        raise TimeoutError("a singleton start elsewhere took too long") from None
    demonitor(ref, flush=True)
    return not (msg.__class__ is Down and msg.reason == NOCONNECTION)


def _ask_home_to_start(key: bytes, name: Any, deadline: Deadline) -> tuple:
    """Ask the key's home node (rendezvous hashing over the nodes that host
    singletons: `paxtor.placement`) to start it; the next ones if it cannot."""
    request = Start(key, name.start, name.args, name.key)
    hosts = singleton_hosts()
    if not hosts:
        return ("retry", "no connected node hosts singletons")
    for node in rendezvous_order(key, hosts):
        try:
            outcome = call((NAME_SERVER, node), request, timeout=deadline.cap(START_CALL_TIMEOUT))
        except CallTimeout:
            return ("retry", "start timed out")
        except CallError as exc:
            if exc.reason in (NOPROC, NOCONNECTION):
                log.info("singleton_home_unavailable", node=node, reason=exc.reason)
                continue
            raise
        if outcome[0] != "not_here":
            return outcome
        log.info("singleton_home_unavailable", node=node, reason=outcome[1])
    return ("retry", "no node could start it")
