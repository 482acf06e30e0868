"""`python -m paxtor cluster voters|add|remove|replace|set --seeds HOST:PORT`.

Joins the cluster through a seed as a short-lived client node (memory
durability, a name of its own), runs one `paxtor.cluster` call, prints the
result and leaves. Exit status 0 on success, 1 if the change could not be
made (the reason is printed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import gevent

__all__ = ["add_cluster_parser", "run_cluster"]

ACTIONS = ("voters", "add", "remove", "replace", "set")


def add_cluster_parser(commands: Any) -> None:
    """The ``cluster`` subcommand of the CLI."""
    parser = commands.add_parser(
        "cluster",
        help="see or change the voters of a running cluster",
        description="See or change the voters of a running cluster (README: Operations).",
    )
    parser.add_argument(
        "action", choices=ACTIONS, help="voters: list them; add/remove NAME...; replace OLD NEW; set NAME..."
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="node names (node4 or 4)")
    parser.add_argument("--seeds", action="append", required=True, metavar="HOST:PORT[,...]",
                        help="any node of the cluster")
    parser.add_argument("--cookie", default=None, help="shared secret (default: $PAXTOR_COOKIE, else ~/.paxtor.cookie)")
    parser.add_argument("--timeout", type=float, default=120.0, help="how long a change may take (default 120 s)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="error")


def _name(text: str) -> str:
    return f"node{int(text)}" if text.isdigit() else text


def run_cluster(args: argparse.Namespace) -> int:
    from paxtor.cli import configure_logging

    configure_logging(level=args.log_level)
    names = [_name(n) for n in args.names]
    wanted = {"voters": (0, 0), "add": (1, 99), "remove": (1, 99), "replace": (2, 2), "set": (1, 99)}[args.action]
    if not wanted[0] <= len(names) <= wanted[1]:
        sys.stderr.write(f"paxtor cluster {args.action}: wrong number of names ({len(names)})\n")
        return 2
    if len(set(names)) != len(names):
        sys.stderr.write(f"paxtor cluster {args.action}: a name is given twice\n")
        return 2
    seeds = [seed for group in args.seeds for seed in group.split(",") if seed.strip()]
    try:
        node = _join(seeds, args.cookie)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"paxtor cluster: cannot join through {', '.join(seeds)}: {exc}\n")
        return 2
    try:
        deadline = time.monotonic() + 15
        while node.paxos.voter_config is None:
            if time.monotonic() > deadline:
                sys.stderr.write(
                    f"paxtor cluster: no voter reached through {', '.join(seeds)} in 15 s "
                    "(is the address right, and the cookie the cluster's?)\n"
                )
                return 1
            gevent.sleep(0.05)
        ok, answer = node.run(_act, args.action, names, args.timeout, timeout=args.timeout + 30)
        if not ok:
            sys.stderr.write(f"paxtor cluster {args.action}: {answer}\n")
            return 1
        config = node.paxos.voter_config
        sys.stdout.write(f"voters: {' '.join(answer)}   (configuration version {config.version if config else '?'})\n")
        return 0
    finally:
        node.stop()


def _join(seeds: list[str], cookie: str | None) -> Any:
    from paxtor.node import start_node

    name = f"cluster-cli-{os.getpid()}"
    return start_node(name, voter=False, hidden=True, durability="memory", seeds=seeds, cookie=cookie)


def _act(action: str, names: list[str], timeout: float) -> tuple[bool, Any]:
    """Run one change in a process of the node: (True, the voters) or (False, why not).
    Every name is checked before anything changes, and the change is one change."""
    from paxtor import cluster
    from paxtor.paxos.errors import NoQuorum

    try:
        if action == "voters":
            return True, cluster.voters()
        if action == "replace":
            return True, cluster.replace_voter(names[0], names[1], timeout=timeout)
        if action == "set":
            return True, cluster.set_voters(names, timeout=timeout)
        if action == "add":
            return True, cluster.add_voters(names, timeout=timeout)
        current = cluster.voters()
        unknown = [n for n in names if n not in current]
        if unknown:
            return False, f"{', '.join(unknown)}: not a voter (the voters are {', '.join(current)})"
        return True, cluster.remove_voters(names, timeout=timeout)
    except (NoQuorum, ValueError) as exc:
        return False, str(exc)
