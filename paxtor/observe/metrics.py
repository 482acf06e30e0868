"""This node's metrics in the Prometheus text exposition format (version 0.0.4).

Written here rather than with ``prometheus_client``: the values are a
handful of counters that already exist (read from `node_report` at scrape
time, nothing is recorded twice), the format is small and exactly specified,
and every user would otherwise carry a dependency (with its own global
registry) for one page. The tests parse the output with
``prometheus_client``'s own parser.

Each node exposes its own view; scrape every node. Counters count from the
node's start (a restart resets them, which Prometheus' ``rate`` handles).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from paxtor.paxos.storage import SYNC_BUCKETS

__all__ = ["CONTENT_TYPE", "Exposition", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(labels: Labels | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(str(value))}"' for name, value in labels.items()) + "}"


class Exposition:
    """A metric family at a time: ``# HELP``, ``# TYPE`` and its samples, in order."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels | None, Any]]) -> None:
        """A counter or gauge (a counter's samples are named ``<name>_total``)."""
        self._head(name, kind, help_text)
        sample_name = f"{name}_total" if kind == "counter" else name
        for labels, value in samples:
            self._lines.append(f"{sample_name}{_labels(labels)} {_value(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        bounds: Iterable[float],
        counts: list[int],
        total: float,
        labels: Labels | None = None,
    ) -> None:
        """A histogram from per-bucket counts (the last one: above every bound), made cumulative."""
        self._head(name, "histogram", help_text)
        base = dict(labels or {})
        running = 0
        for bound, count in zip(bounds, counts[:-1], strict=True):  # the last count is above them all
            running += count
            self._lines.append(f"{name}_bucket{_labels({**base, 'le': _value(float(bound))})} {running}")
        running += counts[-1]
        self._lines.append(f"{name}_bucket{_labels({**base, 'le': '+Inf'})} {running}")
        self._lines.append(f"{name}_sum{_labels(base)} {_value(float(total))}")
        self._lines.append(f"{name}_count{_labels(base)} {running}")

    def _head(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


_COUNTERS = (
    ("paxtor_paxos_rounds", "rounds", "Paxos round attempts this node started (retries included)."),
    ("paxtor_paxos_chosen", "chosen", "Requests whose change was chosen."),
    ("paxtor_paxos_conflicts", "conflicts", "Attempts lost to a competing ballot."),
    ("paxtor_paxos_nacks", "nacks", "Refusals (Nack) received from voters."),
    ("paxtor_paxos_retries", "retries", "Attempts started again after one that did not decide."),
    ("paxtor_paxos_no_quorum", "no_quorum", "Requests that failed with NoQuorum at their deadline."),
    ("paxtor_paxos_vetoed", "vetoed", "Attempts refused by the lease veto."),
)


def render_metrics(report: Mapping[str, Any]) -> str:
    """The exposition of one `node_report`."""
    out = Exposition()
    me = report["name"]
    out.family(
        "paxtor_node_info", "gauge", "This node: name, incarnation and role (always 1).",
        [({"node": me, "incarnation": str(report["incarnation"]), "role": report["role"]}, 1)],
    )  # fmt: skip
    for name, field, help_text in _COUNTERS:
        out.family(name, "counter", help_text, [(None, report["counters"][field])])
    acceptor = report.get("acceptor")
    if acceptor is not None:
        out.family("paxtor_acceptor_keys", "gauge", "Keys this voter's acceptor holds (tombstones included).",
                   [(None, acceptor["keys"])])  # fmt: skip
        if "fsync_histogram" in acceptor:
            out.family("paxtor_acceptor_log_bytes", "gauge", "Bytes of the acceptor log (snapshot and segments).",
                       [(None, acceptor["log_bytes"])])  # fmt: skip
            out.histogram(
                "paxtor_acceptor_fsync_seconds", "Write+fsync latency of the acceptor log, per batch.",
                SYNC_BUCKETS, acceptor["fsync_histogram"], acceptor["fsync_seconds"],
            )  # fmt: skip
    lease = report["lease"]
    out.family("paxtor_lease_valid", "gauge", "1 while this node holds a lease from a quorum of voters.",
               [(None, bool(lease["valid"]))])  # fmt: skip
    out.family("paxtor_lease_remaining_seconds", "gauge", "Seconds until the lease runs out without renewal.",
               [(None, float(lease["remaining"] or 0.0))])  # fmt: skip
    voters, connected = report["voters"], set(report["connected"])
    reached = sum(1 for v in voters if v in connected or (v == me and report["role"] != "client"))
    out.family("paxtor_quorum_reachable", "gauge", "1 while this node reaches a quorum of the voters.",
               [(None, reached >= report["quorum"])])  # fmt: skip
    out.family("paxtor_voters_reachable", "gauge", "Voters this node reaches (itself included when voting).",
               [(None, reached)])  # fmt: skip
    locks = report["locks"]
    out.family("paxtor_locks_held", "gauge", "Locks held by processes of this node.", [(None, locks["held"])])
    out.family("paxtor_lock_waiters", "gauge", "Processes of this node waiting for a lock.", [(None, locks["waiting"])])
    out.family("paxtor_locks_acquired", "counter", "Locks granted to processes of this node.",
               [(None, locks["acquired"])])  # fmt: skip
    out.family("paxtor_lock_handoffs", "counter",
               "Locks handed to a waiting process of this node by the owner before it.",
               [(None, locks["handoffs"])])  # fmt: skip
    out.family("paxtor_singletons", "gauge", "Singletons running on this node.", [(None, report["singletons"])])
    out.family("paxtor_connections", "gauge", "Peers this node is connected to.", [(None, len(connected))])
    peers = sorted(connected | {v for v in voters if v != me})
    out.family("paxtor_peer_up", "gauge", "1 if this node is connected to the peer (every voter is listed).",
               [({"peer": peer}, peer in connected) for peer in peers])  # fmt: skip
    return out.text()
