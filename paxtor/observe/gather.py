"""`cluster_info()`: ask every node about itself and the voters about every held key.

Run in a process of any node (a client too). It calls the observer service
(`paxtor.observe.server`) of each node it knows of (the configured voters,
itself, and the peers each one reports), all at once; then it reads the
locks and singletons buckets from every voter that answered, page by page
(`paxtor.observe.scan`), and merges them per key. With ``via`` the whole
gathering runs on that node instead and the result streams back in parts
(a status client connected to one seed node sees what that node sees).

Cost: a few small calls per node, plus one pass over each voter's keys of
the two buckets, in pages of `PAGE_SIZE` rows: linear in the keys held (and
the tombstones not yet collected), bounded in memory per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

from paxtor.actors import Down, Err, Ok, Outcome, ReceiveTimeout, Task, call, monitor, receive, self_pid
from paxtor.actors.distribution import distributed_node
from paxtor.actors.errors import PaxtorTimeout
from paxtor.actors.node import current_node
from paxtor.actors.primitives import demonitor, make_ref
from paxtor.actors.task import TaskTimeout
from paxtor.actors.wire import decode
from paxtor.locks.messages import LOCKS_BUCKET
from paxtor.locks.register import owner_of, waiters_of
from paxtor.observe.info import (
    ClusterInfo,
    LockInfo,
    NodeInfo,
    SingletonInfo,
    VoterInfo,
)
from paxtor.observe.report import hidden_peers
from paxtor.observe.roles import configured_role, voter_set
from paxtor.observe.scan import merge_rows
from paxtor.paxos.paxos_node import open_paxos_node
from paxtor.singletons.keeper import NAMES_BUCKET
from paxtor.singletons.register import RUNNING, STARTING, state_of

__all__ = ["cluster_info", "gather", "OBSERVER", "PAGE_SIZE", "node_reports", "ask"]

#: the registered name of every node's observer service
OBSERVER = "paxtor_observe"
#: rows per page of a bucket scan, and items per streamed part
PAGE_SIZE = 2000
DEFAULT_TIMEOUT = 10.0


def cluster_info(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    locks: bool = True,
    singletons: bool = True,
    via: str | None = None,
) -> ClusterInfo:
    """The cluster as seen from this node (or from node `via`): nodes, voters, locks, singletons.

    A node is up if it is connected to the observing node and answered; the
    others (configured voters, and peers that other nodes report) show as down.
    Hidden nodes (status clients) are left out.

    Call it in a process of a running node (``node.run(paxtor.cluster_info)``
    from outside one). `locks` / `singletons` False skip the key scans (cheap:
    a few calls per node). `timeout` bounds the whole gathering; nodes that do
    not answer in time show as down, and ``complete`` is False if fewer than a
    quorum of voters could be read.
    """
    deadline = time.monotonic() + timeout
    if via is not None and via != current_node().name:
        return _gather_remote(via, locks, singletons, deadline)
    return gather(deadline, locks=locks, singletons=singletons)


# -- asking nodes -----------------------------------------------------------------------


def ask(node: str, request: tuple, deadline: float) -> Outcome[Any, str]:
    """Call `node`'s observer: ``Ok(answer)`` or ``Err(why)``; never raises."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return Err(f"{node}: no time left")
    try:
        return Ok(call((OBSERVER, node), request, timeout=remaining))
    except Exception as exc:  # noqa: BLE001 - a node that cannot answer is reported, not raised
        return Err(f"{node}: {type(exc).__name__}: {exc}"[:300])


def _in_parallel(jobs: dict[str, Callable[[], Outcome[Any, str]]], deadline: float) -> dict[str, Outcome[Any, str]]:
    """Run each job in its own task; every outcome by name (an `Err` past the deadline)."""
    tasks = {name: Task.run(job) for name, job in jobs.items()}
    outcomes: dict[str, Outcome[Any, str]] = {}
    for name, task in tasks.items():
        try:
            outcomes[name] = task.await_(max(0.0, deadline - time.monotonic()))
        except TaskTimeout:
            task.shutdown("brutal_kill")
            outcomes[name] = Err(f"{name}: no answer in time")
    return outcomes


def node_reports(names: list[str], deadline: float) -> dict[str, Outcome[Any, str]]:
    """Every named node's `node_report`, asked all at once."""
    return _in_parallel({name: _job(ask, name, ("report",), deadline) for name in names}, deadline)


def _job(fn: Callable[..., Outcome[Any, str]], *args: Any) -> Callable[[], Outcome[Any, str]]:
    return lambda: fn(*args)


# -- gathering here ------------------------------------------------------------------------


def gather(deadline: float, *, locks: bool = True, singletons: bool = True) -> ClusterInfo:
    """`cluster_info` run on this node (see the module docstring)."""
    local = current_node()
    paxos = open_paxos_node(local)
    if paxos is None:
        raise RuntimeError(f"node {local.name!r} runs no Paxtor services: start it with paxtor.start_node")
    dist = distributed_node(local)
    peers = set(dist.nodes()) - set(hidden_peers(dist)) if dist is not None else set()
    reachable = {local.name, *peers}
    reports = node_reports(sorted(reachable), deadline)
    own_voters, own_quorum, _ = voter_set(paxos)
    known = {*reachable, *own_voters}
    answered = {name: o.value for name, o in reports.items() if isinstance(o, Ok)}
    errors = [o.reason for o in reports.values() if isinstance(o, Err)]
    for report in answered.values():  # the peers the others see: down if this node does not
        known.update(set(report["connected"]) - set(report["hidden_peers"]))
    voters, quorum = _voter_config(answered, own_voters, own_quorum)
    nodes = tuple(_node_info(name, answered.get(name), voters) for name in sorted(known, key=_node_order))
    voter_info = tuple(_voter_info(name, answered.get(name)) for name in voters)
    lock_list: list[LockInfo] = []
    singleton_list: list[SingletonInfo] = []
    scanned: list[str] = []
    buckets = [b for b, wanted in ((LOCKS_BUCKET, locks), (NAMES_BUCKET, singletons)) if wanted]
    if buckets:
        # a learner (a voter that lost its state and catches up) is not read: it votes on
        # nothing yet, so its rows must not count towards `complete`
        voting = [v for v in voters if v in answered and answered[v]["role"] == "voter"]
        merged, scanned, scan_errors = _scan_voters(voting, buckets, deadline)
        errors += scan_errors
        if locks:
            lock_list = _locks(merged[LOCKS_BUCKET])
        if singletons:
            since = _since([n for n, r in answered.items() if r["singletons"]], deadline, errors)
            singleton_list = _singletons(merged[NAMES_BUCKET], since)
    return ClusterInfo(
        observer=local.name,
        taken_at=time.time(),
        voters=tuple(voters),
        quorum=quorum,
        nodes=nodes,
        voter_info=voter_info,
        locks=tuple(lock_list),
        singletons=tuple(singleton_list),
        complete=not buckets or len(scanned) >= quorum,
        scanned=tuple(scanned),
        errors=tuple(errors),
    )


def _node_order(name: str) -> tuple[int, str]:
    """node1, node2, ..., node10 in number order; other names after, alphabetically."""
    digits = name[4:] if name.startswith("node") else ""
    return (int(digits), "") if digits.isdigit() else (1 << 30, name)


def _voter_config(answered: dict[str, dict], voters: tuple[str, ...], quorum: int) -> tuple[tuple[str, ...], int]:
    """The newest voter configuration any node reports (this node's own otherwise)."""
    best: tuple[int, tuple[str, ...], int] = (-1, voters, quorum)
    for report in answered.values():
        version = report.get("config_version")
        if version is not None and version > best[0]:
            best = (version, tuple(report["voters"]), int(report["quorum"]))
    return best[1], best[2]


def _node_info(name: str, report: dict[str, Any] | None, voters: tuple[str, ...]) -> NodeInfo:
    if report is None:
        return NodeInfo(name, None, configured_role(name, voters), None, False)
    return NodeInfo(
        name,
        report["incarnation"],
        report["role"],
        report["address"],
        True,
        report["lease"]["valid"],
        tuple(report["connected"]),
    )


def _voter_info(name: str, report: dict[str, Any] | None) -> VoterInfo:
    if report is None:
        return VoterInfo(name, False, None, None, None, None, None)
    acceptor = report.get("acceptor") or {}
    return VoterInfo(
        name,
        True,
        report["lease"]["valid"],
        acceptor.get("keys"),
        acceptor.get("log_bytes"),
        acceptor.get("fsync_ms"),
        acceptor.get("fsyncs"),
    )


# -- the key scans ----------------------------------------------------------------------------


def _scan_voter(voter: str, buckets: list[str], deadline: float) -> Outcome[dict[str, list], str]:
    """Every row of `buckets` on `voter`: ``Ok({bucket: [rows]})`` or ``Err(why)``."""
    found: dict[str, list] = {}
    for bucket in buckets:
        opened = ask(voter, ("scan_open", bucket), deadline)
        if isinstance(opened, Err):
            return opened
        if opened.value is None:
            return Err(f"{voter}: holds no acceptor")
        cursor, rows = opened.value, found.setdefault(bucket, [])
        while True:
            page = ask(voter, ("scan_page", cursor, PAGE_SIZE), deadline)
            if isinstance(page, Err):
                return page
            if page.value is None:
                return Err(f"{voter}: the scan expired")
            chunk, done = page.value
            rows.extend(chunk)
            if done:
                break
    return Ok(found)


def _scan_voters(
    voters: list[str], buckets: list[str], deadline: float
) -> tuple[dict[str, dict[Hashable, Any]], list[str], list[str]]:
    """The merged rows per bucket, the voters fully read, and what went wrong."""
    outcomes = _in_parallel({v: _job(_scan_voter, v, buckets, deadline) for v in voters}, deadline)
    merged: dict[str, dict[Hashable, Any]] = {bucket: {} for bucket in buckets}
    scanned, errors = [], []
    for voter in voters:
        outcome = outcomes[voter]
        if isinstance(outcome, Err):
            errors.append(outcome.reason)
            continue
        scanned.append(voter)
        for bucket in buckets:
            merge_rows(merged[bucket], outcome.value[bucket])
    return merged, scanned, errors


def user_key(key: Any) -> Any:
    """The user's key of a Paxtor key (its wire encoding); the raw key if it does not decode."""
    if key.__class__ is not bytes:
        return key
    try:
        return decode(key)
    except Exception:  # noqa: BLE001 - a key written by something else: shown as it is
        return key


def _locks(merged: dict[Hashable, Any]) -> list[LockInfo]:
    found = []
    for key, (_, register) in merged.items():
        if register is None:
            continue
        holder = owner_of(register)
        if holder is None:
            continue
        try:
            waiters = tuple(pid for pid, _ in waiters_of(register))
        except ValueError:  # not a lock value
            continue
        found.append(LockInfo(user_key(key), holder, register.epoch, waiters))
    found.sort(key=lambda lock: (-len(lock.waiters), repr(lock.key)))
    return found


def _since(hosts: list[str], deadline: float, errors: list[str]) -> dict[bytes, float]:
    since: dict[bytes, float] = {}
    for outcome in _in_parallel({n: _job(ask, n, ("since",), deadline) for n in hosts}, deadline).values():
        if isinstance(outcome, Ok):
            since.update(outcome.value)
        else:
            errors.append(outcome.reason)
    return since


def _singletons(merged: dict[Hashable, Any], since: dict[Any, float]) -> list[SingletonInfo]:
    found = []
    for key, (_, register) in merged.items():
        if register is None or register.binding is None or register.binding.pid is None:
            continue
        state = state_of(register)
        if state not in (RUNNING, STARTING):
            continue
        pid = register.binding.pid
        found.append(SingletonInfo(user_key(key), pid, pid.node, since.get(key), state))
    found.sort(key=lambda s: repr(s.key))
    return found


# -- gathering on another node -----------------------------------------------------------------


def _gather_remote(via: str, locks: bool, singletons: bool, deadline: float) -> ClusterInfo:
    """`gather` on node `via`, its result streamed back in parts (see `paxtor.observe.server`)."""
    tag = make_ref()
    started = ask(via, ("gather", deadline - time.monotonic(), locks, singletons, self_pid(), tag), deadline)
    if isinstance(started, Err):
        raise PaxtorTimeout(f"cannot gather the cluster's state through {started.reason}")
    worker = started.value
    ref = monitor(worker)
    head: ClusterInfo | None = None
    parts: dict[str, list] = {"locks": [], "singletons": []}

    def ours(msg: Any) -> bool:
        return (msg.__class__ is tuple and len(msg) >= 2 and msg[1] == tag) or (
            msg.__class__ is Down and msg.ref == ref
        )

    try:
        while True:
            try:
                msg = receive(ours, timeout=max(0.0, deadline - time.monotonic()) + 1.0)
            except ReceiveTimeout:
                raise PaxtorTimeout(f"{via} did not finish gathering the cluster's state in time") from None
            if msg.__class__ is Down:
                raise PaxtorTimeout(f"{via}'s gathering ended early: {msg.reason!r}")
            kind = msg[0]
            if kind == "info_head":
                head = msg[2]
            elif kind == "info_part":
                parts[msg[2]].extend(msg[3])
            elif kind == "info_end":
                break
    finally:
        demonitor(ref, flush=True)
    assert head is not None
    return _with_parts(head, tuple(parts["locks"]), tuple(parts["singletons"]))


def _with_parts(head: ClusterInfo, locks: tuple, singletons: tuple) -> ClusterInfo:
    return replace(head, locks=locks, singletons=singletons)
