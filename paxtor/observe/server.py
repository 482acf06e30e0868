"""The observer service of a node: what `cluster_info` asks each node, and its scans.

One `ObserveServer` runs on every Paxtor node, registered as
``paxtor_observe``. It answers calls, all read-only:

    ("report",)                    this node's `node_report`
    ("scan_open", bucket)          a cursor over the local acceptor's keys of
                                   the bucket (None on a node that does not vote)
    ("scan_page", cursor, size)    ``(rows, done)``; None for an expired cursor
    ("since",)                     {key: wall-clock start} of the singletons hosted here
    ("gather", timeout, locks, singletons, reply_to, tag)
                                   start `gather` here in a new process that
                                   streams the result to ``reply_to``; its pid

Anything else is answered ``("bad_request", ...)`` (and logged): the service
keeps running.

The streamed parts are ``("info_head", tag, ClusterInfo without locks and
singletons)``, then ``("info_part", tag, "locks" | "singletons", items)`` of
at most `PAGE_SIZE` items, then ``("info_end", tag)``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import structlog

from paxtor.actors import ChildSpec, GenServer, Pid, send, spawn
from paxtor.actors.messages import Caller
from paxtor.actors.node import current_node
from paxtor.observe.gather import OBSERVER, PAGE_SIZE, gather
from paxtor.observe.info import ClusterInfo
from paxtor.observe.report import name_cache_of, node_report
from paxtor.observe.scan import ScanCursors
from paxtor.paxos.paxos_node import open_paxos_node

__all__ = ["ObserveServer", "stream_info"]

log = structlog.get_logger(__name__)

MAX_PAGE = 10_000


class ObserveServer(GenServer):
    """See the module docstring."""

    @classmethod
    def child_spec(cls, arg: Any = None) -> ChildSpec:
        return ChildSpec(cls, start=(_start, ()))

    def init(self) -> None:
        self.local = current_node()
        self.paxos = open_paxos_node(self.local)
        self.cursors = ScanCursors()

    def handle_call(self, request: Any, caller: Caller) -> Any:
        match request:
            case ("report",):
                return node_report(self.local)
            case ("scan_open", str(bucket)):
                acceptor = self.paxos.acceptor if self.paxos is not None else None
                if acceptor is None:
                    return None
                now = time.monotonic()
                self.cursors.expire(now)
                return self.cursors.open(acceptor, bucket, now)
            case ("scan_page", int(cursor), int(size)) if 0 < size <= MAX_PAGE:
                return self.cursors.page(cursor, size, time.monotonic())
            case ("since",):
                cache = name_cache_of(self.local)
                return {} if cache is None else dict(cache.since)
            case ("gather", float(timeout) | int(timeout), bool(locks), bool(singletons), Pid() as to, tag):
                return spawn(stream_info, to, tag, time.monotonic() + timeout, locks, singletons)
        log.warning("observer_bad_request", request=repr(request)[:200], caller=repr(caller.pid))
        return ("bad_request", repr(request)[:200])  # answered: a bad request must not restart the service


def stream_info(to: Pid, tag: Any, deadline: float, locks: bool, singletons: bool) -> None:
    """Gather here and send the result to `to` in parts (see the module docstring)."""
    info = gather(deadline, locks=locks, singletons=singletons)
    send(to, ("info_head", tag, _without_keys(info)))
    for kind, items in (("locks", info.locks), ("singletons", info.singletons)):
        for start in range(0, len(items), PAGE_SIZE):
            send(to, ("info_part", tag, kind, items[start : start + PAGE_SIZE]))
    send(to, ("info_end", tag))


def _without_keys(info: ClusterInfo) -> ClusterInfo:
    return replace(info, locks=(), singletons=())


def _start() -> Pid | None:
    return ObserveServer.start_link(name=OBSERVER)
