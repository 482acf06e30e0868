"""Waiting on a node's own events: quorum, peers up, peers down (never a sleep)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from paxtor import paxos
from paxtor.local_cluster import WAIT

__all__ = ["wait_for_nodes", "wait_for_quorum", "wait_node_down", "wait_node_up"]


def wait_for_quorum(nodes: Iterable[Any], timeout: float = WAIT) -> None:
    """Block until every node of `nodes` holds a lease from a quorum of voters
    (`paxos.NoQuorum` on timeout)."""
    for node in nodes:
        node.run(paxos.wait_for_quorum, timeout)


def wait_for_nodes(node: Any, names: Iterable[str], timeout: float = WAIT) -> None:
    """Block until `node` is connected to every node of `names`; TimeoutError otherwise."""
    names = list(names)
    dist = getattr(node, "dist", node)
    if not dist.wait_for_nodes(names, timeout):
        raise TimeoutError(
            f"{dist.name} is not connected to {sorted(set(names) - set(dist.nodes()))} after {timeout} s"
        )


def wait_node_up(node: Any, name: str, timeout: float = WAIT) -> None:
    """Block until `node` is connected to `name`; TimeoutError otherwise."""
    wait_for_nodes(node, [name], timeout)


def wait_node_down(node: Any, name: str, timeout: float = WAIT) -> None:
    """Block until `node` has seen `name` go down (woken by its peer events); TimeoutError otherwise."""
    dist = getattr(node, "dist", node)
    if not dist.peers.wait_until(lambda: name not in dist.peers.up, timeout):
        raise TimeoutError(f"{dist.name} still sees {name} up after {timeout} s")
