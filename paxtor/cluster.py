"""The cluster's voters: see them, add, remove, replace (README: Operations).

Every function acts from the current node (the node of the calling process),
which may be any node of the cluster, a client too. A change is decided by
consensus and survives crashes: see `paxtor.paxos.reconfig` for how it goes
and why no two disjoint quorums can decide during it. A new voter must be
running with an acceptor (``start_node(name, voter=True)``, or ``python -m
paxtor node N --voter``) and connected before it is added; it copies every
key during the change and votes once the change is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from paxtor.actors import call
from paxtor.actors.messages import CallError
from paxtor.actors.node import current_node
from paxtor.paxos.envelopes import MEMBERSHIP_NAME
from paxtor.paxos.errors import NoQuorum, NotRunning
from paxtor.paxos.paxos_node import PaxosNode, open_paxos_node
from paxtor.paxos.reconfig import change_voters, read_config
from paxtor.paxos.voter_config import VoterConfig

__all__ = [
    "voters",
    "config",
    "add_voter",
    "add_voters",
    "remove_voter",
    "remove_voters",
    "replace_voter",
    "set_voters",
]

#: How long a change may take by default (it copies every key once).
CHANGE_TIMEOUT = 120.0


def _node() -> PaxosNode:
    node = open_paxos_node(current_node())
    if node is None:
        raise NotRunning(f"PaxosKV is not running on node {current_node().name!r}")
    return node


def config(*, fresh: bool = True, timeout: float = 10.0) -> VoterConfig:
    """The cluster's voter configuration: read by a round (``fresh``), or as this node knows it."""
    node = _node()
    if fresh:
        return read_config(node, time.monotonic() + timeout)
    if node.voter_config is None:
        raise NoQuorum("this node does not know the cluster's voters yet")
    return node.voter_config


def voters(*, fresh: bool = True, timeout: float = 10.0) -> tuple[str, ...]:
    """The names of the cluster's voters (the new ones, while a change is under way)."""
    return config(fresh=fresh, timeout=timeout).voters


def set_voters(names: Iterable[str], *, timeout: float = CHANGE_TIMEOUT) -> tuple[str, ...]:
    """Make ``names`` the voters (add, remove and replace in one change); the new voters."""
    names = tuple(names)
    return _change(lambda _current: names, names, timeout)


def add_voter(name: str, *, timeout: float = CHANGE_TIMEOUT) -> tuple[str, ...]:
    """Add the running node ``name`` to the voters; the new voters."""
    return add_voters((name,), timeout=timeout)


def add_voters(names: Iterable[str], *, timeout: float = CHANGE_TIMEOUT) -> tuple[str, ...]:
    """Add the running nodes ``names`` to the voters, in one change; the new voters."""
    names = tuple(names)
    return _change(lambda current: (*current, *(n for n in names if n not in current)), names, timeout)


def remove_voter(name: str, *, timeout: float = CHANGE_TIMEOUT) -> tuple[str, ...]:
    """Remove ``name`` from the voters (it may be down); the new voters."""
    return remove_voters((name,), timeout=timeout)


def remove_voters(names: Iterable[str], *, timeout: float = CHANGE_TIMEOUT) -> tuple[str, ...]:
    """Remove ``names`` from the voters (they may be down), in one change; the new voters."""
    names = tuple(names)

    def without(current: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in current]
        if unknown and len(unknown) == len(names):
            raise ValueError(f"{', '.join(unknown)}: not a voter (the voters are {', '.join(current)})")
        rest = tuple(v for v in current if v not in names)
        if not rest:
            raise ValueError("the last voter cannot be removed")
        return rest

    return _change(without, (), timeout)


def replace_voter(old: str, new: str, *, timeout: float = CHANGE_TIMEOUT) -> tuple[str, ...]:
    """Put the running node ``new`` in the place of voter ``old`` (e.g. a dead machine)."""

    def replaced(current: tuple[str, ...]) -> tuple[str, ...]:
        if new in current and old not in current:
            return current  # done already (a retry)
        if old not in current:
            raise ValueError(f"{old!r} is not a voter (the voters are {', '.join(current)})")
        if new in current:
            raise ValueError(f"{new!r} is a voter already")
        return tuple(new if v == old else v for v in current)

    known = _node().voter_config
    if known is not None and not known.is_member(old) and not known.is_member(new):
        replaced(known.voters)  # says what is wrong before anything is asked of the new node
    return _change(replaced, (new,), timeout)


def _change(
    edit: Callable[[tuple[str, ...]], Sequence[str]], newcomers: Iterable[str], timeout: float
) -> tuple[str, ...]:
    """One change of the voters: ``edit`` maps the current voters to the new ones (applied
    to what is read at each attempt, so concurrent changes compose)."""
    node = _node()
    current = node.voter_config
    for name in newcomers:
        if current is None or not current.is_member(name):
            _check_can_vote(node, name)
    return change_voters(node, edit, timeout=timeout).voters


def _heard_of(node: PaxosNode, name: str) -> Any:
    """What ``name`` told the voters this node is connected to, if it is connected to one."""
    config = node.voter_config
    for voter in config.members if config is not None else ():
        if voter in node.peers:
            try:
                hello = call((MEMBERSHIP_NAME, voter), ("peer", name), timeout=5.0)
            except CallError:
                continue
            if hello is not None:
                return hello
    return None


def _check_can_vote(node: PaxosNode, name: str) -> None:
    """A new voter must be connected and have an acceptor, or the change would only
    weaken the cluster (a voter that can never answer)."""
    if name == node.name:
        if node.acceptor is None:
            raise ValueError(f"{name} has no acceptor: start it with voter=True to make it a voter")
        return
    hello = node.peers.get(name) or _heard_of(node, name)
    if hello is None:
        raise ValueError(f"{name} is not connected to any voter: start it (with voter=True) first")
    if hello.role == "client":
        raise ValueError(f"{name} has no acceptor: restart it with voter=True (--voter) to make it a voter")
    if hello.cluster and hello.cluster != node.cluster:
        raise ValueError(f"{name} belongs to another cluster ({hello.cluster})")
