"""A node's services are found from the node: one typed slot each (`paxtor.actors.node_slot`)."""

from __future__ import annotations

from paxtor_cluster import Cluster

from paxtor.actors.node import LocalNode, current_node
from paxtor.actors.node_slot import NodeSlot
from paxtor.locks.agent import LOCK_TABLE, lock_table
from paxtor.paxos.paxos_node import PAXOS_NODE, open_paxos_node
from paxtor.singletons.name_server import NAME_CACHE, name_cache


def test_a_started_node_holds_its_services_in_their_slots(cluster: Cluster) -> None:
    def look() -> tuple[list[str], bool]:
        node = current_node()
        found = (
            node.service(PAXOS_NODE) is open_paxos_node(node)
            and node.service(LOCK_TABLE) is lock_table(node)
            and node.service(NAME_CACHE) is name_cache(node)
        )
        return sorted(node.services()), found

    names, found = cluster["node1"].run(look)
    assert {"paxos", "locks", "names"} <= set(names)
    assert found


def test_a_slot_holds_one_service_until_that_service_leaves() -> None:
    slot: NodeSlot[str] = NodeSlot("example")
    node = LocalNode("slots-node", 1)
    assert node.service(slot) is None
    first, second = "first", "second"
    node.install(slot, first)
    node.install(slot, second)  # a restarted service takes over
    node.uninstall(slot, first)  # the old one leaving does not empty it
    assert node.service(slot) is second
    node.uninstall(slot, second)
    assert node.service(slot) is None and node.services() == {}


def test_a_node_without_the_services_says_so() -> None:
    node = LocalNode("bare-node", 1)
    try:
        lock_table(node)
    except RuntimeError as exc:
        assert "lock service is not running on node 'bare-node'" in str(exc)
    else:
        raise AssertionError("lock_table found a service on a bare node")
