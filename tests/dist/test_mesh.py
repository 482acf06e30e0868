"""The full mesh (connect_all): nodes learn each other from their peers and dial
them; hidden nodes connect only where they dial; one-way reachability.

The pure view (`paxtor.actors.mesh.MeshView`) first, then real nodes on
127.0.0.1 in this OS process."""

from __future__ import annotations

import itertools

import pytest

from paxtor.actors.distribution import DistributedNode, start_distributed
from paxtor.actors.faults import FaultInjector
from paxtor.actors.mesh import MeshView, NodeInfo, announced_host, info_from_wire, info_to_wire, view_from_wire

from .conftest import COOKIE, WAIT, free_port_block

FAST = dict(cookie=COOKIE, heartbeat_interval=0.1, heartbeat_timeout=1.0, handshake_timeout=1.0, reconnect_max=0.3)


def info(name: str, port: int = 1000, *, hidden: bool = False, host: str = "127.0.0.1", inc: int = 1) -> NodeInfo:
    return NodeInfo(name, inc, host, port, hidden, {"singletons": not hidden})


# -- the pure view ----------------------------------------------------------------------------


def test_a_view_names_the_peers_peers_to_dial_but_never_hidden_ones_nor_ourselves() -> None:
    view = MeshView(info("a"))
    view.on_view("b", info("b"), [info("a"), info("c", 1003), info("h", 1009, hidden=True)], "127.0.0.1")
    assert set(view.known()) == {"c"}
    assert view.to_dial(["b"]) == {"c": info("c", 1003)}
    assert view.to_dial(["b", "c"]) == {}
    assert view.listed_by_peers("c") == ["b"]


def test_a_lost_peer_takes_what_it_said_with_it() -> None:
    view = MeshView(info("a"))
    view.on_view("b", info("b"), [info("c", 1003)], "127.0.0.1")
    view.on_peer_down("b")
    assert view.known() == {} and view.direct == {}


def test_the_newest_incarnation_of_a_node_wins() -> None:
    view = MeshView(info("a"))
    view.on_view("b", info("b"), [info("c", 1003, inc=5)], "127.0.0.1")
    view.on_view("d", info("d"), [info("c", 1004, inc=7)], "127.0.0.1")
    assert view.known()["c"].port == 1004


def test_announcement_lists_visible_direct_peers_and_a_hidden_node_lists_none() -> None:
    view = MeshView(info("a"))
    view.on_view("b", info("b", 1002), [], "127.0.0.1")
    view.on_view("h", info("h", 1009, hidden=True), [], "127.0.0.1")
    own, peers = view.announcement()
    assert own.name == "a" and [p.name for p in peers] == ["b"]
    hidden = MeshView(info("h", hidden=True))
    hidden.on_view("b", info("b"), [info("c", 1003)], "127.0.0.1")
    assert hidden.announcement()[1] == [] and hidden.to_dial([]) == {}
    assert set(hidden.known()) == {"c"}  # it still learns the cluster


def test_a_wildcard_listener_is_announced_empty_and_filled_in_where_it_is_seen() -> None:
    assert announced_host("0.0.0.0") == "" and announced_host("::") == "" and announced_host("127.0.0.5") == "127.0.0.5"
    view = MeshView(info("a"))
    view.on_view("b", info("b", 1002, host=""), [info("x", 1005, host="")], "127.0.0.7")
    assert view.direct["b"].address == ("127.0.0.7", 1002)
    assert view.known() == {}  # an unresolved listing is left to x's own peers
    assert view.announcement()[1][0].address == ("127.0.0.7", 1002)


def test_a_peer_cannot_announce_itself_under_another_name() -> None:
    view = MeshView(info("a"))
    with pytest.raises(ValueError):
        view.on_view("b", info("c"), [], "127.0.0.1")


@pytest.mark.parametrize(
    "wire",
    [
        ("b", 1, "127.0.0.1", 0, False, {}),  # port 0
        ("b", -1, "127.0.0.1", 5, False, {}),
        ("", 1, "127.0.0.1", 5, False, {}),
        ("b", 1, "127.0.0.1", 5, 1, {}),  # not a bool
        ("b", 1, "127.0.0.1", 5, False, {1: 2}),
        ("b", 1, "127.0.0.1", 5, False, {"x": [1]}),
        ("b", 1, "127.0.0.1", 5, False),
        ["b", 1, "127.0.0.1", 5, False, {}],
    ],
)
def test_malformed_node_infos_are_refused(wire: object) -> None:
    with pytest.raises(ValueError):
        info_from_wire(wire)


def test_node_infos_round_trip_and_views_are_bounded() -> None:
    original = info("b", 1002)
    assert info_from_wire(info_to_wire(original)) == original
    with pytest.raises(ValueError):
        view_from_wire(info_to_wire(original), tuple(info_to_wire(info(f"n{i}")) for i in range(5000)))


# -- real nodes -------------------------------------------------------------------------------


def _seed(node: DistributedNode) -> list[str]:
    return [f"127.0.0.1:{node.port}"]


def _all_connected(nodes: list[DistributedNode]) -> None:
    for node in nodes:
        others = [n.name for n in nodes if n is not node]
        assert node.wait_for_nodes(others, WAIT), f"{node.name} sees {node.nodes()}, wants {others}"


def test_nodes_joining_through_one_seed_each_end_up_connected_to_all() -> None:
    a = start_distributed("a", port=0, **FAST)
    b = start_distributed("b", port=0, seeds=_seed(a), **FAST)
    c = start_distributed("c", port=0, seeds=_seed(a), **FAST)
    d = start_distributed("d", port=0, seeds=_seed(b), **FAST)
    e = start_distributed("e", port=0, seeds=_seed(d), **FAST)
    nodes = [a, b, c, d, e]
    _all_connected(nodes)
    assert b.peer_info("c") is not None and b.peer_info("c").port == c.port
    assert e.known_nodes().keys() == {"a", "b", "c", "d"}


def test_without_connect_all_a_node_stays_with_its_seeds() -> None:
    a = start_distributed("a", port=0, **FAST)
    b = start_distributed("b", port=0, seeds=_seed(a), **FAST)
    c = start_distributed("c", port=0, seeds=_seed(a), connect_all=False, **FAST)
    assert a.wait_for_nodes(["b", "c"], WAIT)
    assert c.peers.wait_until(lambda: "b" in c.known_nodes(), WAIT)
    assert c.peers.dialing_learned() == []  # c learns of b, and dials nobody it learns of
    assert b.wait_for_nodes(["c"], WAIT)  # b (connect_all) dials c all the same
    assert b.peers.up["c"].role == "initiator"


def test_a_hidden_node_connects_only_where_it_dials_and_is_named_to_nobody() -> None:
    a = start_distributed("a", port=0, attrs={"singletons": True}, **FAST)
    b = start_distributed("b", port=0, seeds=_seed(a), **FAST)
    _all_connected([a, b])
    h = start_distributed("status-1", port=0, seeds=_seed(a), hidden=True, **FAST)
    assert h.wait_for_nodes(["a"], WAIT)
    assert a.peers.wait_until(lambda: a.peer_info("status-1") is not None, WAIT)
    assert a.peer_info("status-1").hidden and "status-1" in a.nodes() and "status-1" not in a.visible_nodes()
    # b learns of the cluster's changes from a, but never of the hidden node
    assert h.peers.wait_until(lambda: "b" in h.known_nodes(), WAIT)
    c = start_distributed("c", port=0, seeds=_seed(b), **FAST)
    _all_connected([a, b, c])
    assert h.nodes() == ["a"] and "status-1" not in b.nodes() + c.nodes()
    assert "status-1" not in b.known_nodes() and "status-1" not in c.known_nodes()
    assert h.peer_info("a").attrs == {"singletons": True}


def test_one_way_reachability_connects_through_the_direction_that_works() -> None:
    faults = FaultInjector()
    a = start_distributed("a", port=0, faults=faults, **FAST)
    faults.block_dials("b", "c")  # b cannot reach c's listener; c can reach b's
    faults.block_dials("d", "b")
    b = start_distributed("b", port=0, seeds=_seed(a), faults=faults, **FAST)
    c = start_distributed("c", port=0, seeds=_seed(a), faults=faults, **FAST)
    d = start_distributed("d", port=0, seeds=_seed(a), faults=faults, **FAST)
    _all_connected([a, b, c, d])
    assert b.peers.up["c"].role == "acceptor" and d.peers.up["b"].role == "acceptor"


def test_a_partitioned_pair_redials_while_the_others_still_see_both() -> None:
    faults = FaultInjector()
    a = start_distributed("a", port=0, faults=faults, **FAST)
    b = start_distributed("b", port=0, seeds=_seed(a), faults=faults, **FAST)
    c = start_distributed("c", port=0, seeds=_seed(a), faults=faults, **FAST)
    _all_connected([a, b, c])
    faults.partition("b", "c")
    faults.block_dials("b", "c")
    faults.block_dials("c", "b")
    assert b.peers.wait_until(lambda: "c" not in b.peers.up, WAIT)
    assert b.reached_by_others("c") == ["a"]
    assert "c" in b.peers.dialing_learned()  # a still names it: keep trying
    faults.heal()
    _all_connected([a, b, c])


def test_a_node_nobody_names_any_more_is_no_longer_dialed() -> None:
    a = start_distributed("a", port=0, **FAST)
    b = start_distributed("b", port=0, seeds=_seed(a), **FAST)
    c = start_distributed("c", port=0, seeds=_seed(a), **FAST)
    _all_connected([a, b, c])
    assert "c" in b.peers.dialing_learned()
    c.stop()
    assert b.peers.wait_until(lambda: "c" not in b.peers.up and "c" not in b.peers.dialing_learned(), WAIT)
    assert "c" not in b.known_nodes()


def test_many_nodes_through_a_chain_of_seeds_form_one_mesh() -> None:
    first = start_distributed("m0", port=0, **FAST)
    nodes = [first]
    for i in itertools.islice(itertools.count(1), 7):
        nodes.append(start_distributed(f"m{i}", port=0, seeds=_seed(nodes[-1]), **FAST))
    _all_connected(nodes)


def test_a_hidden_node_given_one_seed_finds_the_numbered_voters_where_they_announce_themselves() -> None:
    base = free_port_block(3)
    hosts = {1: "127.0.0.11", 2: "127.0.0.12", 3: "127.0.0.13"}
    voters = [start_distributed(f"node{n}", base_port=base, cluster_size=3, hosts=hosts, **FAST) for n in (1, 2, 3)]
    _all_connected(voters)
    # its guess by number (127.0.0.1 + base + N) finds nothing: the voters' announcements correct it
    status = start_distributed("status-2", port=0, base_port=base, cluster_size=3, hidden=True,
                               seeds=[f"{hosts[2]}:{base + 2}"], **FAST)  # fmt: skip
    assert status.wait_for_nodes(["node1", "node2", "node3"], WAIT)
    assert status.peers.dialing_learned() == []
    assert all("status-2" not in v.known_nodes() or v.peer_info("status-2").hidden for v in voters)


def test_a_hidden_node_connects_on_request_to_a_node_it_only_heard_of() -> None:
    a = start_distributed("a", port=0, **FAST)
    b = start_distributed("b", port=0, seeds=_seed(a), **FAST)
    _all_connected([a, b])
    h = start_distributed("status-3", port=0, seeds=_seed(a), hidden=True, **FAST)
    assert h.peers.wait_until(lambda: "b" in h.known_nodes(), WAIT)
    assert "b" not in h.nodes()
    assert h.connect("b", WAIT) and "status-3" in b.nodes()


def test_a_hidden_node_also_dials_the_nodes_its_filter_accepts() -> None:
    s = start_distributed("s", port=0, **FAST)
    v = start_distributed("v", port=0, seeds=_seed(s), attrs={"voter": True}, **FAST)
    c = start_distributed("c", port=0, seeds=_seed(s), attrs={"voter": False}, **FAST)
    _all_connected([s, v, c])
    h = start_distributed("status-4", port=0, seeds=_seed(s), hidden=True,
                          dials=lambda info: info.attrs.get("voter") is True, **FAST)  # fmt: skip
    assert h.wait_for_nodes(["s", "v"], WAIT)
    assert h.peers.wait_until(lambda: "c" in h.known_nodes(), WAIT)
    assert "c" not in h.nodes() and "status-4" not in c.nodes()
