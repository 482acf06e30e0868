"""The full mesh: what nodes tell each other about themselves and their peers.

Erlang's ``connect_all``: every node learns the other nodes from the nodes
it is connected to, and dials them, so a node that joins through any one
seed ends up connected to all. Each node sends every peer a *view* when the
connection comes up and again whenever its own connections change:

    its own `NodeInfo`    name, incarnation, where it listens, hidden or not,
                          and opaque attributes set by the layer above (e.g.
                          whether it hosts singletons)
    its visible peers     the `NodeInfo` of each node it is connected to,
                          hidden ones left out

A node knows every node some peer lists (`MeshView.known`), dials those it
is not connected to (`MeshView.to_dial`), and forgets a node once no peer
lists it and it is not connected. Only direct connections are reported, so
what a node knows of X is at most one hop old: when X dies, its peers drop
it from their views as their connections to it drop.

Hidden nodes (Erlang's ``-hidden``) connect only to the nodes they dial
themselves: they are never listed in a view, and they dial nobody they learn
of. They still receive views (a status tool learns the cluster that way).

A node that listens on a wildcard address (``0.0.0.0``, ``::``) announces
an empty host: its peers fill in the address they see it at.

Pure: no sockets, greenlets or clocks. `paxtor.actors.distribution` drives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NodeInfo",
    "MeshView",
    "announced_host",
    "info_to_wire",
    "info_from_wire",
    "view_from_wire",
    "WILDCARD_HOSTS",
    "MAX_VIEW_PEERS",
]

#: Listen addresses that say "every interface": announced as "" (the peer fills in).
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
#: A view listing more peers than this is malformed (a bound on what one frame may make us dial).
MAX_VIEW_PEERS = 4096
#: At most this many attributes per node, each a short str key with a plain value.
MAX_ATTRS = 32
_MAX_TEXT = 255
_ATTR_VALUE_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class NodeInfo:
    """What a node says about itself: who, where it listens, and its role.

    `host` "" means "the address you see me at". `attrs` are set by the
    layer above and carried as they are (str keys; str, int, float, bool or
    None values).
    """

    name: str
    incarnation: int
    host: str
    port: int
    hidden: bool = False
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def seen_at(self, host: str) -> NodeInfo:
        """This info with an empty `host` replaced by `host` (where its peer sees it)."""
        if self.host:
            return self
        return NodeInfo(self.name, self.incarnation, host, self.port, self.hidden, self.attrs)


def announced_host(listen_host: str) -> str:
    """The host a node announces for its listen address ("" for a wildcard)."""
    return "" if listen_host in WILDCARD_HOSTS else listen_host


def info_to_wire(info: NodeInfo) -> tuple[Any, ...]:
    """The flat tuple a `NodeInfo` travels as."""
    return (info.name, info.incarnation, info.host, info.port, info.hidden, dict(info.attrs))


def info_from_wire(value: Any) -> NodeInfo:
    """A `NodeInfo` from its wire tuple; ValueError if it is not one."""
    if value.__class__ is not tuple or len(value) != 6:
        raise ValueError("a node info is a 6-tuple")
    name, incarnation, host, port, hidden, attrs = value
    if name.__class__ is not str or not name or len(name) > _MAX_TEXT:
        raise ValueError("bad node name in a node info")
    if incarnation.__class__ is not int or incarnation < 0:
        raise ValueError("bad incarnation in a node info")
    if host.__class__ is not str or len(host) > _MAX_TEXT:
        raise ValueError("bad host in a node info")
    if port.__class__ is not int or not 0 < port <= 65535:
        raise ValueError("bad port in a node info")
    if hidden.__class__ is not bool:
        raise ValueError("bad hidden flag in a node info")
    if attrs.__class__ is not dict or len(attrs) > MAX_ATTRS:
        raise ValueError("bad attributes in a node info")
    for key, item in attrs.items():
        if key.__class__ is not str or len(key) > _MAX_TEXT or not isinstance(item, _ATTR_VALUE_TYPES):
            raise ValueError("bad attribute in a node info")
        if item.__class__ is str and len(item) > _MAX_TEXT:
            raise ValueError("attribute value too long in a node info")
    return NodeInfo(name, incarnation, host, port, hidden, attrs)


def view_from_wire(own: Any, peers: Any) -> tuple[NodeInfo, list[NodeInfo]]:
    """A peer's view (its own info and its peers') from the wire; ValueError if malformed."""
    if peers.__class__ is not tuple or len(peers) > MAX_VIEW_PEERS:
        raise ValueError(f"a view's peers are a tuple of at most {MAX_VIEW_PEERS} node infos")
    return info_from_wire(own), [info_from_wire(p) for p in peers]


class MeshView:
    """One node's knowledge of the mesh: each peer's own info and the peers it lists.

    Feed it every view received (`on_view`) and every lost connection
    (`on_peer_down`); ask it what to dial (`to_dial`) and what to announce
    (`announcement`).
    """

    def __init__(self, own: NodeInfo) -> None:
        self.own = own
        #: connected peer -> its own info, as it announced it
        self.direct: dict[str, NodeInfo] = {}
        #: connected peer -> the visible nodes it listed
        self.listed: dict[str, dict[str, NodeInfo]] = {}

    def on_view(self, peer: str, info: NodeInfo, peers: Iterable[NodeInfo], seen_host: str) -> None:
        """Peer `peer` (connected, seen at `seen_host`) announced `info` and `peers`."""
        if info.name != peer:
            raise ValueError(f"node {peer!r} announced itself as {info.name!r}")
        self.direct[peer] = info.seen_at(seen_host)
        listed: dict[str, NodeInfo] = {}
        for other in peers:
            if other.hidden or other.name in (self.own.name, peer) or not other.host:
                continue  # hidden nodes are never listed; "" hosts are resolved by their direct peers
            listed[other.name] = other
        self.listed[peer] = listed

    def on_peer_down(self, peer: str) -> None:
        """The connection to `peer` is lost: forget what it said."""
        self.direct.pop(peer, None)
        self.listed.pop(peer, None)

    def info(self, name: str) -> NodeInfo | None:
        """What is known of node `name`: its own word if connected, else the newest listing."""
        info = self.direct.get(name)
        if info is not None:
            return info
        return self.known().get(name)

    def known(self) -> dict[str, NodeInfo]:
        """Every visible node some peer lists (not this one), by name; the newest incarnation wins."""
        found: dict[str, NodeInfo] = {}
        for listed in self.listed.values():
            for name, info in listed.items():
                seen = found.get(name)
                if seen is None or info.incarnation > seen.incarnation:
                    found[name] = info
        return found

    def listed_by_peers(self, name: str) -> list[str]:
        """The connected peers that list `name` among their own connections."""
        return sorted(peer for peer, listed in self.listed.items() if name in listed)

    def to_dial(self, connected: Iterable[str]) -> dict[str, NodeInfo]:
        """The nodes to dial: listed by some peer, not connected. None for a hidden node."""
        if self.own.hidden:
            return {}
        up = set(connected)
        return {name: info for name, info in self.known().items() if name not in up}

    def announcement(self) -> tuple[NodeInfo, list[NodeInfo]]:
        """What this node tells its peers: its own info and its visible peers (none if hidden)."""
        if self.own.hidden:
            return self.own, []
        peers = [info for name, info in sorted(self.direct.items()) if not info.hidden and info.host]
        return self.own, peers
