"""What `paxtor.cluster_info()` returns: plain frozen records of the cluster's state.

They travel on the wire (a status client asks a cluster node to gather them),
so each has an explicit wire name; ``to_json`` gives the form that
``paxtor status --json`` prints and the web view reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from paxtor.actors.ids import Pid
from paxtor.actors.wire import wire_type

__all__ = ["NodeInfo", "VoterInfo", "LockInfo", "SingletonInfo", "ClusterInfo", "show_key"]


def show_key(key: Any) -> Any:
    """A key as JSON can show it: strings, numbers, booleans and None as they are, else its repr."""
    if key is None or isinstance(key, (str, bool, int, float)):
        return key
    return repr(key)


def _pid(pid: Pid | None) -> str | None:
    return None if pid is None else repr(pid)


@wire_type(name="paxtor.NodeInfo")
@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as the observer sees it. ``up``: connected to the observer (or the observer);
    ``role``: voter, learner or client (`paxtor.observe.roles`); ``lease``: holds a valid lease."""

    name: str
    incarnation: int | None
    role: str
    address: str | None
    up: bool
    lease: bool | None = None
    connected: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "incarnation": self.incarnation, "role": self.role, "address": self.address,
            "up": self.up, "lease": self.lease, "connected": list(self.connected),
        }  # fmt: skip


@wire_type(name="paxtor.VoterInfo")
@dataclass(frozen=True, slots=True)
class VoterInfo:
    """A configured voter: whether it is up and holds a lease, its acceptor's keys and log
    size, and its recent write+fsync latency (ms, a running average; None: no data)."""

    name: str
    up: bool
    lease: bool | None
    keys: int | None
    log_bytes: int | None
    fsync_ms: float | None
    fsyncs: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "up": self.up, "lease": self.lease, "keys": self.keys,
            "log_bytes": self.log_bytes, "fsync_ms": self.fsync_ms, "fsyncs": self.fsyncs,
        }  # fmt: skip


@wire_type(name="paxtor.LockInfo")
@dataclass(frozen=True, slots=True)
class LockInfo:
    """A held lock: its user key, holder, fencing token and the waiters, first served first."""

    key: Any
    holder: Pid
    token: int
    waiters: tuple[Pid, ...] = ()

    @property
    def node(self) -> str:
        return self.holder.node

    def to_json(self) -> dict[str, Any]:
        return {
            "key": show_key(self.key), "holder": _pid(self.holder), "node": self.node, "token": self.token,
            "waiters": [_pid(p) for p in self.waiters],
        }  # fmt: skip


@wire_type(name="paxtor.SingletonInfo")
@dataclass(frozen=True, slots=True)
class SingletonInfo:
    """A singleton: its key, its pid and node, and since when it runs (wall-clock seconds;
    None if its node did not say). ``state`` "starting": its keeper holds the key."""

    key: Any
    pid: Pid
    node: str
    since: float | None
    state: str = "running"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": show_key(self.key), "pid": _pid(self.pid), "node": self.node, "since": self.since,
            "state": self.state,
        }  # fmt: skip


@wire_type(name="paxtor.ClusterInfo")
@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The cluster seen from `observer` at `taken_at` (wall clock).

    ``complete``: the locks and singletons come from a quorum of voters (each
    key as the highest ballot they accepted; a learner is not read, as it does
    not vote yet); False: fewer answered, and a key
    released on the others may still show. Not a linearizable snapshot: a round
    in flight may show on one key and not on another.
    """

    observer: str
    taken_at: float
    voters: tuple[str, ...]
    quorum: int
    nodes: tuple[NodeInfo, ...]
    voter_info: tuple[VoterInfo, ...]
    locks: tuple[LockInfo, ...]
    singletons: tuple[SingletonInfo, ...]
    complete: bool
    scanned: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def voters_up(self) -> int:
        """Voters that are up and vote (a learner, or a voter started as a client, is up
        but answers no round)."""
        voting = {n.name for n in self.nodes if n.up and n.role == "voter"}
        return sum(1 for v in self.voter_info if v.up and v.name in voting)

    @property
    def has_quorum(self) -> bool:
        return self.voters_up >= self.quorum

    @property
    def lease_holders(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.lease)

    def to_json(self) -> dict[str, Any]:
        return {
            "observer": self.observer,
            "taken_at": self.taken_at,
            "voters": list(self.voters),
            "quorum": self.quorum,
            "voters_up": self.voters_up,
            "has_quorum": self.has_quorum,
            "lease_holders": list(self.lease_holders),
            "nodes": [n.to_json() for n in self.nodes],
            "voter_info": [v.to_json() for v in self.voter_info],
            "locks": [lock.to_json() for lock in self.locks],
            "singletons": [s.to_json() for s in self.singletons],
            "complete": self.complete,
            "scanned": list(self.scanned),
            "errors": list(self.errors),
        }

    def dumps(self, **options: Any) -> str:
        """``to_json`` as a JSON document."""
        return json.dumps(self.to_json(), **options)
