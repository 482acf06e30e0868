"""``python -m paxtor status``: join the cluster as a client, print its state, leave.

The command starts a hidden client node (it votes for nothing, hosts no
singleton, is named to no other node, and keeps nothing on disk), connects to the seeds (and the numbered nodes of
``--base-port``, as any node does), and asks one connected node, a voter if
it can, to gather `cluster_info` (the result streams back in parts, so a
cluster with 100,000 held locks is read in pages, never in one message).
Text output lists the first ``--limit`` locks (those with waiters first) and
singletons; ``--json`` prints everything. ``--watch`` repeats every few
seconds until Ctrl-C or SIGTERM (one JSON document per line with ``--json``):
either signal ends it as a clean stop of its node, so its peers log a
leaving node, not a lost connection.

Exit status: 0, 1 when no node could be reached or asked in time, 2 for bad
flags.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import gevent
from greenlet import getcurrent

from paxtor.observe.gather import cluster_info
from paxtor.observe.info import ClusterInfo

__all__ = ["add_status_parser", "run_status", "format_status"]

DEFAULT_LIMIT = 50


def add_status_parser(commands: Any, positive: Any, seeds_help: str) -> None:
    status = commands.add_parser(
        "status", help="print the cluster's nodes, voters, locks and singletons",
        description=__doc__.split("\n\n")[1],
    )  # fmt: skip
    status.add_argument("--seeds", action="append", default=[], metavar="HOST:PORT[,...]", help=seeds_help)
    status.add_argument("--cluster-size", type=int, default=3, help="voters are node1..nodeN (default 3)")
    status.add_argument("--host", default="127.0.0.1", help="where numbered nodes are found")
    status.add_argument("--base-port", type=int, default=4370, help="nodeN listens on base-port + N (default 4370)")
    status.add_argument("--cookie", default=None, help="shared secret (default: $PAXTOR_COOKIE, else ~/.paxtor.cookie)")
    status.add_argument("--json", action="store_true", help="print JSON (everything, no limit)")
    status.add_argument("--watch", nargs="?", type=positive, const=2.0, default=None, metavar="SECONDS",
                        help="print again every SECONDS (default 2) until Ctrl-C")  # fmt: skip
    status.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"locks and singletons listed in text output "
                             f"(default {DEFAULT_LIMIT}, 0: all)")  # fmt: skip
    status.add_argument("--timeout", type=positive, default=10.0, metavar="SECONDS",
                        help="to connect, and to gather (default 10)")  # fmt: skip


def run_status(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    import paxtor

    out = stdout or sys.stdout
    seeds = [seed for group in args.seeds for seed in group.split(",") if seed.strip()]
    name = f"status-{os.getpid()}-{secrets.token_hex(2)}"
    try:
        node = paxtor.start_node(
            name, cluster_size=args.cluster_size, host=args.host, base_port=args.base_port, seeds=seeds,
            cookie=args.cookie, durability="memory", voter=False, hidden=True, reconnect_max=0.5,
        )  # fmt: skip
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"paxtor status: error: {exc}\n")
        return 2
    disarm = _interrupt_on_signals()
    try:
        via = _first_peer(node, args.cluster_size, args.timeout)
        if via is None:
            sys.stderr.write(f"paxtor status: no node answered within {args.timeout:g} s "
                             f"(seeds: {', '.join(seeds) or 'none'}; "
                             f"numbered nodes on {args.host} from port {args.base_port + 1})\n")  # fmt: skip
            return 1
        while True:
            try:
                info = node.run(_gather_via, via, args.timeout, timeout=args.timeout + 5)
            except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                sys.stderr.write(f"paxtor status: error: {exc}\n")
                return 1
            if args.json:
                out.write(json.dumps(info.to_json()) + "\n")
            else:
                if args.watch and out.isatty():
                    out.write("\x1b[H\x1b[2J")
                out.write(format_status(info, args.limit))
            out.flush()
            if not args.watch:
                return 0
            gevent.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
    finally:
        disarm()
        node.stop()


def _interrupt_on_signals() -> Callable[[], None]:
    """Make SIGINT and SIGTERM a KeyboardInterrupt in this (the main) greenlet, so the
    client node stops cleanly (without this SIGTERM killed the process mid-connection,
    and gevent printed the interrupt to stderr); returns the function that undoes it."""
    main = getcurrent()
    loop = gevent.get_hub().loop
    armed = [True]

    def interrupt() -> None:
        if armed[0]:
            main.throw(KeyboardInterrupt)

    handlers = [gevent.signal_handler(sig, loop.run_callback, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)]

    def disarm() -> None:
        armed[0] = False
        for handler in handlers:
            handler.cancel()

    return disarm


def _gather_via(via: str, timeout: float) -> ClusterInfo:
    return cluster_info(timeout=timeout, via=via)


def _first_peer(node: Any, cluster_size: int, timeout: float) -> str | None:
    """A connected node to gather through: a voter if one connects in time, else any peer."""
    voters = [f"node{n}" for n in range(1, cluster_size + 1)]
    deadline = time.monotonic() + timeout
    while True:
        peers = node.nodes()
        for voter in voters:
            if voter in peers:
                return voter
        if time.monotonic() >= deadline:
            return peers[0] if peers else None
        gevent.sleep(0.05 if not peers else 0.2)


# -- text ------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()  # noqa: E731
    return [line(headers), *(line(r) for r in cells)]


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("held" if value else "none")


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


def format_status(info: ClusterInfo, limit: int = DEFAULT_LIMIT) -> str:
    """The text of ``paxtor status``."""
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.taken_at))
    quorum = "quorum held" if info.has_quorum else "NO QUORUM"
    down = [n.name for n in info.nodes if not n.up]
    lines = [
        f"cluster: {len(info.voters)} voters, quorum {info.quorum}: {info.voters_up} up, {quorum}"
        + (f"; DOWN: {', '.join(down)}" if down else ""),
        f"seen from {info.observer} at {taken}"
        + ("" if info.complete else " (INCOMPLETE: fewer than a quorum of voters read)"),
        "",
    ]
    lines += _table(
        ["NODE", "STATE", "ROLE", "INCARNATION", "ADDRESS", "LEASE"],
        [
            [n.name, "up" if n.up else "DOWN", n.role, _show(n.incarnation), _show(n.address), _yes(n.lease)]
            for n in info.nodes
        ],
    )
    lines.append("")
    lines += _table(
        ["VOTER", "STATE", "LEASE", "KEYS", "LOG BYTES", "FSYNC MS", "FSYNCS"],
        [
            [
                v.name,
                "up" if v.up else "DOWN",
                _yes(v.lease),
                _show(v.keys),
                _show(v.log_bytes),
                _show(v.fsync_ms),
                _show(v.fsyncs),
            ]
            for v in info.voter_info
        ],
    )
    contended = sum(1 for lock in info.locks if lock.waiters)
    lines += ["", f"LOCKS: {len(info.locks)} held, {contended} with waiters"]
    shown = info.locks if limit <= 0 else info.locks[:limit]
    if shown:
        lines += _table(
            ["KEY", "HOLDER", "NODE", "TOKEN", "WAITERS (first served first)"],
            [
                [_key(lock.key), repr(lock.holder), lock.node, lock.token, " ".join(map(repr, lock.waiters))]
                for lock in shown
            ],
        )
    lines += _more(len(info.locks) - len(shown))
    lines += ["", f"SINGLETONS: {len(info.singletons)}"]
    singles = info.singletons if limit <= 0 else info.singletons[:limit]
    if singles:
        lines += _table(
            ["KEY", "PID", "NODE", "STATE", "SINCE"],
            [[_key(s.key), repr(s.pid), s.node, s.state, _since(s.since)] for s in singles],
        )
    lines += _more(len(info.singletons) - len(singles))
    if info.errors:
        lines += ["", "errors:", *(f"  {e}" for e in info.errors)]
    return "\n".join(lines) + "\n"


def _key(key: Any) -> str:
    return json.dumps(key) if isinstance(key, str) else repr(key)


def _since(since: float | None) -> str:
    return "-" if since is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))


def _more(hidden: int) -> list[str]:
    return [f"... and {hidden} more (--limit 0 lists all, --json prints everything)"] if hidden > 0 else []
