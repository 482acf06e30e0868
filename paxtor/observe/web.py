"""The read-only web view and ``/metrics`` of a node, served by gevent's own WSGI server.

Off by default: ``start_node(..., http="127.0.0.1:8080")`` or ``python -m
paxtor node ... --http 127.0.0.1:8080`` turns it on (a bare port binds to
127.0.0.1). Nothing is monkey-patched: `gevent.pywsgi` serves from the
node's hub. Routes:

    /              the page: nodes (down ones in red), voters, locks (stuck ones
                   first, in red), singletons, and a plot of lock handoffs and
                   Paxos rounds per second, refreshed every REFRESH seconds
    /api/cluster   what the page shows, as JSON
    /metrics       this node's metrics (Prometheus text format)

A sampler process on the node does the cluster's reading, never a request:
every `SAMPLE_INTERVAL` it asks each node for its report (a few small
calls) to plot the rates over the last `HISTORY` samples, and while someone
looked at the page in the last `VIEW_IDLE` seconds it gathers the whole
`cluster_info` every `REFRESH` seconds or slower (five times what the last
gathering took, so a cluster with many keys is read less often). Any
number of open pages cost the cluster the same.
"""

from __future__ import annotations

import json
import time
from collections import deque
from importlib import resources
from typing import Any

import structlog
from gevent.pywsgi import WSGIServer

from paxtor.actors.messages import ReceiveTimeout
from paxtor.actors.node import LocalNode
from paxtor.actors.outcome import Ok
from paxtor.actors.primitives import receive
from paxtor.observe.gather import gather, node_reports
from paxtor.observe.info import ClusterInfo
from paxtor.observe.metrics import CONTENT_TYPE, render_metrics
from paxtor.observe.report import node_report

__all__ = ["WebView", "start_web", "parse_address", "REFRESH", "SAMPLE_INTERVAL", "HISTORY", "STUCK_AFTER"]

log = structlog.get_logger(__name__)

DEFAULT_HOST = "127.0.0.1"
SAMPLE_INTERVAL = 1.0
HISTORY = 600  # samples: ten minutes at one a second
REFRESH = 2.0
VIEW_IDLE = 30.0
#: a lock with waiters whose holder has not changed for this long is shown as stuck
STUCK_AFTER = 10.0
#: locks and singletons listed on the page (the JSON says how many there are in all)
MAX_ROWS = 500
GATHER_TIMEOUT = 10.0


def parse_address(text: str | tuple[str, int]) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"PORT"`` or ``(host, port)``; the host defaults to loopback."""
    if isinstance(text, tuple):
        host, port = text
    else:
        host, sep, port_text = str(text).rpartition(":")
        if not port_text.isdigit():
            raise ValueError(f"an HTTP address is HOST:PORT or PORT, got {text!r}")
        host, port = (host.strip("[]") or DEFAULT_HOST) if sep else DEFAULT_HOST, int(port_text)
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, int(port)


class _ErrorLog:
    """pywsgi's error log, as structlog events."""

    def write(self, text: str) -> None:
        text = text.strip()
        if text:
            log.warning("http_error", detail=text[:500])

    def flush(self) -> None:
        pass


class _RateHistory:
    """Cluster-wide rounds and handoffs per second, from successive node reports."""

    def __init__(self, size: int = HISTORY) -> None:
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=size)  # (wall time, rounds/s, handoffs/s)
        self._last: dict[str, tuple[int, float, int, int]] = {}  # node -> (incarnation, t, rounds, handoffs)

    def add(self, reports: dict[str, dict[str, Any]], now: float, wall: float) -> None:
        rounds = handoffs = 0.0
        seen = False
        for name, report in reports.items():
            cur = (report["incarnation"], now, report["counters"]["rounds"], report["locks"]["handoffs"])
            last = self._last.get(name)
            self._last[name] = cur
            if last is None or last[0] != cur[0] or now <= last[1]:
                continue  # first sample of this node (incarnation): no rate yet
            seen = True
            rounds += max(0, cur[2] - last[2]) / (now - last[1])
            handoffs += max(0, cur[3] - last[3]) / (now - last[1])
        for gone in set(self._last) - set(reports):
            del self._last[gone]
        if seen:
            self.samples.append((wall, round(rounds, 2), round(handoffs, 2)))


class _Stuck:
    """How long each contended lock has had its holder: key -> (token, first seen)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, float]] = {}

    def mark(self, locks: list[dict[str, Any]], now: float) -> None:
        current: dict[str, tuple[int, float]] = {}
        for lock in locks:
            ident = json.dumps(lock["key"])
            known = self.seen.get(ident)
            first = known[1] if known is not None and known[0] == lock["token"] else now
            current[ident] = (lock["token"], first)
            lock["held_for"] = round(now - first, 1)
            lock["stuck"] = bool(lock["waiters"]) and now - first >= STUCK_AFTER
        self.seen = current


class WebView:
    """A running web view of one node (made by `start_web`); `stop` ends it."""

    def __init__(self, local: LocalNode, address: tuple[str, int], refresh: float | None = None) -> None:
        self.local = local
        self.refresh = REFRESH if refresh is None else refresh
        self.history = _RateHistory()
        self.stuck = _Stuck()
        self.cluster: dict[str, Any] | None = None
        self.viewed_at = -VIEW_IDLE
        self.gathered_at = -float("inf")
        self.gather_took = 0.0
        self._page = resources.files("paxtor.observe").joinpath("view.html").read_bytes()
        self.server = WSGIServer(address, self.app, log=None, error_log=_ErrorLog())
        try:
            self.server.start()
        except OSError as exc:  # a bad flag, said in one line: not the node's own port
            raise ValueError(f"cannot serve the web view on {address[0]}:{address[1]}: {exc.strerror or exc}") from exc
        self.sampler = local.spawn(self._sample_forever)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.address[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        self.server.stop(timeout=1)
        if self.sampler.alive:
            self.sampler.kill("shutdown")

    # -- HTTP ----------------------------------------------------------------------------

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", "text/plain", b"read-only\n")
        if path == "/":
            return _respond(start_response, "200 OK", "text/html; charset=utf-8", self._page)
        if path == "/api/cluster":
            self.viewed_at = time.monotonic()
            return _respond(start_response, "200 OK", "application/json", json.dumps(self.snapshot()).encode())
        if path == "/metrics":
            try:
                body = render_metrics(node_report(self.local)).encode()
            except RuntimeError as exc:  # the node is stopping
                return _respond(start_response, "503 Service Unavailable", "text/plain", f"{exc}\n".encode())
            return _respond(start_response, "200 OK", CONTENT_TYPE, body)
        return _respond(start_response, "404 Not Found", "text/plain", b"not found\n")

    def snapshot(self) -> dict[str, Any]:
        """What ``/api/cluster`` returns: the latest gathering and the rate history."""
        return {
            "node": self.local.name,
            "cluster": self.cluster,
            "rates": list(self.history.samples),
            "refresh": self.refresh,
            "stuck_after": STUCK_AFTER,
        }

    # -- the sampler process -----------------------------------------------------------------

    def _sample_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self._sample(started)
            except Exception:  # noqa: BLE001 - the view must outlive a bad sample
                log.exception("web_view_sample_failed", node=self.local.name)
            try:
                receive(lambda m: False, timeout=max(0.05, SAMPLE_INTERVAL - (time.monotonic() - started)))
            except ReceiveTimeout:
                pass

    def _sample(self, now: float) -> None:
        known = self._known_nodes()
        outcomes = node_reports(known, now + SAMPLE_INTERVAL * 2)
        reports = {name: o.value for name, o in outcomes.items() if isinstance(o, Ok)}
        self.history.add(reports, time.monotonic(), time.time())
        viewed = now - self.viewed_at < VIEW_IDLE
        due = now - self.gathered_at >= max(self.refresh, 5 * self.gather_took)
        if self.cluster is None or (viewed and due):
            self._gather()

    def _known_nodes(self) -> list[str]:
        names = {self.local.name}
        if self.cluster is not None:
            names.update(n["name"] for n in self.cluster["nodes"])
        report = node_report(self.local)
        names.update(report["voters"])
        names.update(report["connected"])
        return sorted(names)

    def _gather(self) -> None:
        started = time.monotonic()
        info: ClusterInfo = gather(started + GATHER_TIMEOUT)
        self.gather_took = time.monotonic() - started
        self.gathered_at = time.monotonic()
        data = info.to_json()
        data["lock_count"] = len(data["locks"])
        data["singleton_count"] = len(data["singletons"])
        self.stuck.mark(data["locks"], self.gathered_at)
        data["locks"].sort(key=lambda lock: (not lock["stuck"], -len(lock["waiters"])))
        data["locks"] = data["locks"][:MAX_ROWS]
        data["singletons"] = data["singletons"][:MAX_ROWS]
        data["gather_seconds"] = round(self.gather_took, 3)
        self.cluster = data


def _respond(start_response: Any, status: str, content_type: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return [body]


def start_web(
    local: LocalNode, address: str | tuple[str, int] = "127.0.0.1:0", refresh: float | None = None
) -> WebView:
    """Serve the web view and ``/metrics`` of the running Paxtor node `local` at `address`."""
    view = WebView(local, parse_address(address), refresh)
    log.info("web_view_started", node=local.name, url=view.url)
    return view
