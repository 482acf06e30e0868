"""One node's own state, read without a message round trip: what it tells observers.

`node_report` reads the state the node's services keep for each other (the
PaxosKV node's lease clock, acceptor, log and counters; the lock table; the
name cache) and returns a plain dict of scalars, lists and dicts that travels
on the wire as it is. Cheap (no scan of keys): status, metrics and the web
view's sampler call it often.
"""

from __future__ import annotations

import time
from typing import Any

from paxtor.actors.distribution import distributed_node
from paxtor.actors.node import LocalNode
from paxtor.locks.agent import lock_table
from paxtor.observe.roles import node_role, voter_set
from paxtor.paxos.paxos_node import open_paxos_node
from paxtor.singletons.name_server import name_cache

__all__ = ["node_report", "hidden_peers", "lock_table_of", "name_cache_of"]


def lock_table_of(local: LocalNode) -> Any:
    """The node's lock table, or None if its lock agent is not running (starting, stopping)."""
    try:
        return lock_table(local)
    except RuntimeError:
        return None


def name_cache_of(local: LocalNode) -> Any:
    """The node's name cache, or None if its name server is not running."""
    try:
        return name_cache(local)
    except RuntimeError:
        return None


def node_report(local: LocalNode) -> dict[str, Any]:
    """The report of the running Paxtor node `local` (see the module docstring)."""
    paxos = open_paxos_node(local)
    dist = distributed_node(local)
    if paxos is None or dist is None:
        raise RuntimeError(f"node {local.name!r} is not a running Paxtor node")
    voters, quorum, version = voter_set(paxos)
    now = time.monotonic()
    expires_at = paxos.lease.expires_at
    valid = paxos.lease.valid(now)
    connected = dist.nodes()
    return {
        "name": local.name,
        "incarnation": local.incarnation,
        "role": node_role(paxos),
        "hidden": bool(getattr(dist, "hidden", False)),
        "address": f"{dist.host}:{dist.port}",
        "voters": list(voters),
        "quorum": quorum,
        "config_version": version,
        "connected": connected,
        "hidden_peers": hidden_peers(dist),
        "lease": {
            "valid": valid,
            "remaining": round(expires_at - now, 3) if valid and expires_at is not None else None,
        },
        "acceptor": _acceptor(paxos),
        "counters": paxos.counters.as_dict(),
        "locks": _locks(local),
        "singletons": _singletons(local),
        "time": time.time(),
    }


def hidden_peers(dist: Any) -> list[str]:
    """The connected peers that announced themselves hidden (status clients and the like)."""
    return [peer for peer in dist.nodes() if (info := dist.peer_info(peer)) is not None and info.hidden]


def _acceptor(paxos: Any) -> dict[str, Any] | None:
    acceptor, log = paxos.acceptor, paxos.log
    if acceptor is None:
        return None
    report: dict[str, Any] = {"keys": acceptor.key_count(), "durability": paxos.config.durability}
    if log is not None and log.durability == "fsync":
        report.update(
            log_bytes=log.log_bytes + log.snapshot_bytes,
            fsyncs=log.fsync_count,
            fsync_ms=round(log.sync_average * 1e3, 3),
            fsync_histogram=list(log.sync_histogram),
            fsync_seconds=log.sync_seconds,
        )
    return report


def _locks(local: LocalNode) -> dict[str, int]:
    table = lock_table_of(local)
    if table is None:
        return {"held": 0, "waiting": 0, "acquired": 0, "handoffs": 0}
    return {
        "held": sum(len(keys) for keys in table.owned.values()),
        "waiting": len(table.waiting),
        "acquired": table.acquired,
        "handoffs": table.handoffs,
    }


def _singletons(local: LocalNode) -> int:
    cache = name_cache_of(local)
    return 0 if cache is None else len(cache.hosted)
