"""Numbered nodes on their own loopback addresses (`hosts=`), dialing from them.

What the chaos suite's iptables partitions rely on: with ``hosts={N: addr}``
``nodeN`` listens on its address, is dialed there, and dials from it, so a
rule on a (source, destination) address pair cuts exactly one direction of
one node pair. Also `Connection.connect(source_address=...)`, the --hosts
flag and the checks on a bad mapping.
"""

from __future__ import annotations

from typing import Any

import pytest

from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ConnectionConfig
from paxtor.actors.cookie import resolve_cookie
from paxtor.actors.distribution import host_map, start_distributed
from paxtor.actors.listener import Listener
from paxtor.cli import build_parser
from paxtor.testing import free_base_port

from .conftest import COOKIE, WAIT

FAST: dict[str, Any] = {"cookie": COOKIE, "heartbeat_interval": 0.1, "heartbeat_timeout": 0.6,
                        "handshake_timeout": 0.5, "reconnect_min": 0.05, "reconnect_max": 0.3}
HOSTS = {1: "127.0.0.11", 2: "127.0.0.12", 3: "127.0.0.13"}


def peer_host(conn: Any) -> str:
    """The address the other end of `conn` is bound to, as the kernel sees it."""
    return conn._sock.getpeername()[0]


def test_numbered_nodes_listen_dial_and_are_dialed_at_their_own_addresses() -> None:
    base = free_base_port(range(1, 4), host="127.0.0.11")
    dists = [start_distributed(f"node{n}", base_port=base, cluster_size=3, hosts=HOSTS, **FAST) for n in (1, 2, 3)]
    for dist in dists:
        assert dist.wait_for_nodes(["node1", "node2", "node3"], WAIT), dist.nodes()
    for dist, number in zip(dists, (1, 2, 3)):
        assert dist.address == (HOSTS[number], base + number)
        for name, conn in dist.peers.up.items():
            # whichever side dialed, the far end of every connection is the peer's own address
            assert peer_host(conn) == HOSTS[int(name[4:])], (dist.name, name, conn.role)


def test_a_client_off_the_map_dials_from_its_host_and_finds_the_voters() -> None:
    base = free_base_port(range(1, 3), host="127.0.0.11")
    hosts = {1: "127.0.0.11", 2: "127.0.0.12"}
    voters = [start_distributed(f"node{n}", base_port=base, cluster_size=2, hosts=hosts, **FAST) for n in (1, 2)]
    client = start_distributed("probe", host="127.0.0.20", base_port=base, cluster_size=2, hosts=hosts, **FAST)
    assert client.wait_for_nodes(["node1", "node2"], WAIT)
    for voter in voters:
        assert voter.wait_for_nodes(["probe"], WAIT)
        assert peer_host(voter.peers.up["probe"]) == "127.0.0.20"


def test_without_hosts_nothing_changes() -> None:
    base = free_base_port(range(1, 3))
    a, _ = (start_distributed(f"node{n}", base_port=base, cluster_size=2, **FAST) for n in (1, 2))
    assert a.wait_for_nodes(["node2"], WAIT)
    assert a.address == ("127.0.0.1", base + 1) and a.peers._source is None


def test_connection_connect_binds_its_source_address() -> None:
    seen: list[str] = []
    server = Listener(ConnectionConfig("a", 1, resolve_cookie(COOKIE)), on_message=lambda c, m: None,
                      on_close=lambda c, r: None, on_up=lambda c: seen.append(peer_host(c)), host="127.0.0.1", port=0)
    server.start()
    try:
        conn = Connection.connect(ConnectionConfig("b", 1, resolve_cookie(COOKIE)), "127.0.0.1", server.port,
                                  on_message=lambda c, m: None, on_close=lambda c, r: None,
                                  source_address=("127.0.0.33", 0))
        assert conn.wait_up(WAIT), conn.close_reason
        assert conn._sock.getsockname()[0] == "127.0.0.33"
        assert seen == ["127.0.0.33"]
        conn.close("test_over")
    finally:
        server.stop()


def test_host_map_accepts_numbers_and_names_and_refuses_the_rest() -> None:
    assert host_map({1: "127.0.0.11", "node2": " 127.0.0.12 "}) == {1: "127.0.0.11", 2: "127.0.0.12"}
    assert host_map(None) == {}
    for bad in ({0: "127.0.0.1"}, {"console": "127.0.0.1"}, {1: ""}, {True: "127.0.0.1"}):
        with pytest.raises(ValueError):
            host_map(bad)


def test_the_node_command_takes_hosts() -> None:
    args = build_parser().parse_args(["node", "1", "--hosts", "1=127.0.0.11,2=127.0.0.12", "--hosts", "node3=127.0.0.13"])
    assert dict(pair for group in args.hosts for pair in group) == HOSTS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "1", "--hosts", "x=127.0.0.1"])
