"""The name server's policy as a pure engine: lookups, starts and the name cache; events in, effects out.

Lookups: a key found in the cache, and not known dead, is answered at once.
Concurrent misses for one key share one resolver; a lookup that may start
the singleton (it has a name) replaces a resolver that may not, taking over
its callers (the old resolver's answer is then ignored). A resolver's answer
goes to every caller and caches the pid; a resolver that crashes answers
every caller with an error. Starts: one keeper per key at a time here; its
report goes to every requester, and a keeper that ends before reporting
sends them back to look again (``("retry", why)``). Every cached pid is
watched once: its Down evicts it (and the hosted entry it backs) and
remembers it dead.

`NameServerEngine` decides; `paxtor.singletons.name_server.NameServer`
feeds it requests, resolver and keeper messages and Downs, and carries out
the effects (`Reply`, `SpawnResolver`, `StartKeeper`, `Watch`). The engine
writes the `NameCache` itself: plain dicts that local callers read without
any message, so a cache update is state, not an effect.

What needs the node stays out. Whether a pid is known dead (is a local pid
alive, is a remote one's node connected) is a query passed to the
constructor, the same one the resolvers use; the clock comes in as ``now``.
The gates of a `Start` that read the node's configuration (does this node
host singletons, is the start function allowed here) stay in the adapter:
they are stateless, answered before any state here is touched, and as
arguments they would only move an ``if``. A spawn or a supervisor start
returns a pid, so the adapter tells the engine which (`resolver_spawned`,
`keeper_started`, `keeper_failed`) before the next event.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paxtor.actors.ids import Pid

__all__ = [
    "DEAD_MEMORY",
    "NameCache",
    "NameServerEngine",
    "Reply",
    "SpawnResolver",
    "StartKeeper",
    "Watch",
]

#: How many dead pids a node remembers (to refuse them after their Down).
DEAD_MEMORY = 4096


class NameCache:
    """key -> pid of the singletons this node has looked up (read without messages)."""

    __slots__ = ("server", "pids", "dead", "hosted", "since", "__weakref__")

    def __init__(self, server: Pid) -> None:
        self.server = server
        self.pids: dict[bytes, Pid] = {}
        #: recently dead pids -> exit reason (bounded)
        self.dead: OrderedDict[Pid, Any] = OrderedDict()
        #: singletons whose keeper runs here: key -> (user key, child pid)
        self.hosted: dict[bytes, tuple[Any, Pid]] = {}
        #: key -> when (wall clock, s) its hosted singleton took the key
        self.since: dict[bytes, float] = {}

    def remember_dead(self, pid: Pid, reason: Any) -> None:
        self.dead[pid] = reason
        while len(self.dead) > DEAD_MEMORY:
            self.dead.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer ``outcome`` to the request submitted with ``token``."""

    token: Any
    outcome: tuple


@dataclass(frozen=True, slots=True)
class SpawnResolver:
    """Spawn a linked resolver of ``key`` (from ``name``, None: start nothing); tell `resolver_spawned`."""

    key: bytes
    name: Any


@dataclass(frozen=True, slots=True)
class StartKeeper:
    """Start and monitor a keeper of ``key`` here; tell `keeper_started` or `keeper_failed`."""

    key: bytes
    start: str
    args: tuple
    user_key: Any


@dataclass(frozen=True, slots=True)
class Watch:
    """Monitor the cached ``pid``; its Down comes back as `pid_down`."""

    pid: Pid


@dataclass(slots=True)
class _Pending:
    worker: Pid | None  # the resolver or keeper (None until the adapter says which)
    tokens: list[Any]
    arg: Any  # a resolver's name; a keeper's user key


class NameServerEngine:
    """See the module docstring."""

    def __init__(self, cache: NameCache, known_death: Callable[[Pid], Any]) -> None:
        self.cache = cache
        self.known_death = known_death  # why a pid is known dead here (None: it may live)
        self.watched: dict[Pid, bytes] = {}  # cached pids -> the key they were watched for
        self.resolving: dict[bytes, _Pending] = {}
        self.starting: dict[bytes, _Pending] = {}
        self.keepers: dict[Pid, bytes] = {}  # until their Down
        self._out: list[Any] = []

    # -- lookups ------------------------------------------------------------------------

    def resolve(self, token: Any, key: bytes, name: Any) -> list[Any]:
        """The pid of ``key``, started from ``name`` (None: a lookup that starts nothing)."""
        pid = self.cache.pids.get(key)
        if pid is not None and self.known_death(pid) is None:
            return [Reply(token, ("ok", pid))]
        pending = self.resolving.get(key)
        if pending is not None and (name is None or pending.arg is not None):
            pending.tokens.append(token)
            return []
        tokens = pending.tokens if pending is not None else []
        tokens.append(token)
        self.resolving[key] = _Pending(None, tokens, name)
        return [SpawnResolver(key, name)]

    def resolver_spawned(self, key: bytes, resolver: Pid) -> None:
        """The resolver asked for by `SpawnResolver` of ``key`` runs as ``resolver``."""
        self.resolving[key].worker = resolver

    def resolved(self, key: bytes, resolver: Pid, outcome: tuple) -> list[Any]:
        """A resolver answered ``("ok", pid or None)`` or ``("error", exc)``."""
        pending = self.resolving.get(key)
        if pending is None or pending.worker != resolver:
            return self._flush()  # replaced by another resolver: its callers moved there
        del self.resolving[key]
        if outcome[0] == "ok" and outcome[1] is not None:
            self._cache(key, outcome[1])
        self._reply_all(pending.tokens, outcome)
        return self._flush()

    def resolver_exit(self, resolver: Pid, reason: Any) -> list[Any]:
        """A linked process exited: if it is a resolver that crashed, its callers get an error."""
        if reason == "normal":
            return []  # its answer came first (sent before it exited)
        for key, pending in self.resolving.items():
            if pending.worker == resolver:
                del self.resolving[key]
                self._reply_all(pending.tokens, ("error", RuntimeError(f"singleton lookup crashed: {reason!r}")))
                break
        return self._flush()

    # -- starts -------------------------------------------------------------------------

    def start(self, token: Any, key: bytes, start: str, args: tuple, user_key: Any) -> list[Any]:
        """Start ``key`` here (already checked: this node hosts singletons and allows ``start``)."""
        pending = self.starting.get(key)
        if pending is not None:
            pending.tokens.append(token)
            return []
        self.starting[key] = _Pending(None, [token], user_key)
        return [StartKeeper(key, start, args, user_key)]

    def keeper_started(self, key: bytes, keeper: Pid) -> None:
        """The keeper asked for by `StartKeeper` of ``key`` runs (monitored) as ``keeper``."""
        self.starting[key].worker = keeper
        self.keepers[keeper] = key

    def keeper_failed(self, key: bytes, error: BaseException) -> list[Any]:
        """The supervisor refused the keeper of ``key``: the requesters' error."""
        pending = self.starting.pop(key)
        self._reply_all(pending.tokens, ("error", error))
        return self._flush()

    def keeper_report(self, key: bytes, keeper: Pid, outcome: tuple, now: float) -> list[Any]:
        """A keeper's start ended (`KeeperReport`); ``now``: the wall clock, for `NameCache.since`."""
        pending = self.starting.get(key)
        if pending is None or pending.worker != keeper:
            return []
        del self.starting[key]
        if outcome[0] == "ok":
            child = outcome[1]
            self.cache.hosted[key] = (pending.arg, child)  # until the child's Down
            self.cache.since[key] = now
            self._cache(key, child)
        self._reply_all(pending.tokens, outcome)
        return self._flush()

    def keeper_down(self, keeper: Pid, reason: Any) -> list[Any]:
        """A keeper ended: if before its report, its requesters look again."""
        key = self.keepers.pop(keeper, None)
        if key is not None:
            pending = self.starting.get(key)
            if pending is not None and pending.worker == keeper:
                del self.starting[key]
                self._reply_all(pending.tokens, ("retry", f"keeper exited: {reason!r}"))
        return self._flush()

    # -- the cache ----------------------------------------------------------------------

    def pid_down(self, pid: Pid, reason: Any) -> None:
        """A watched pid ended: evict it, and remember it dead."""
        key = self.watched.pop(pid, None)
        if key is None:
            return
        self.cache.remember_dead(pid, reason)
        if self.cache.pids.get(key) == pid:
            del self.cache.pids[key]
        hosted = self.cache.hosted.get(key)
        if hosted is not None and hosted[1] == pid:
            del self.cache.hosted[key]
            self.cache.since.pop(key, None)

    def _cache(self, key: bytes, pid: Pid) -> None:
        self.cache.pids[key] = pid
        if pid not in self.watched:
            self.watched[pid] = key
            self._out.append(Watch(pid))

    def _reply_all(self, tokens: list[Any], outcome: tuple) -> None:
        self._out.extend(Reply(token, outcome) for token in tokens)

    def _flush(self) -> list[Any]:
        out, self._out = self._out, []
        return out
