"""The order of a round's work on the proposing node: its messages to the other voters
are written to their sockets before this node's own vote, so the other voters' write
and fsync start first (the proposer server's `_perform`; docs/speed.md gives the
latency this takes off a round)."""

from __future__ import annotations

from typing import Any

from paxtor import paxos
from paxtor.actors.distribution import distributed_node
from paxtor.actors.node import current_node
from paxtor.paxos.acceptor import Accept
from paxtor.paxos.paxos_node import open_paxos_node

from .conftest import WAIT, Cluster


def _unwritten() -> dict[str, int]:
    """Per peer, the bytes queued for it and not yet written."""
    dist = distributed_node(current_node())
    assert dist is not None
    return {name: conn.unwritten_bytes for name, conn in dist.peers.up.items()}


def _put_watching_the_local_vote(key: Any) -> list[dict[str, int]]:
    """put ``key`` here; what was still unwritten to each peer at each local vote on one of
    the round's accepts."""
    local_acceptor = open_paxos_node(current_node()).local_acceptor
    assert local_acceptor is not None
    handle = local_acceptor.handle
    at_vote: list[dict[str, int]] = []

    def watching(sender: Any, msg: Any) -> Any:
        if isinstance(msg, Accept) and msg.key == key:
            at_vote.append(_unwritten())
        return handle(sender, msg)

    local_acceptor.handle = watching  # type: ignore[method-assign]
    try:
        paxos.put(key, "v")
    finally:
        del local_acceptor.handle
    return at_vote


def test_the_other_voters_get_a_rounds_accept_before_this_node_votes(cluster: Cluster):
    nodes = cluster.start_all()
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)
    at_vote = nodes[0].run(_put_watching_the_local_vote, ("ordered", 1))
    assert at_vote, "node1 never voted on its own round's accept"
    assert at_vote[0] == {"node2": 0, "node3": 0}, "node1 voted while its accept still waited to be written"
