"""Distributed nodes: a `LocalNode` plus a listener and one connection per
peer node (a full mesh), as Erlang distribution.

`start_distributed(name, ...)` starts one; several may live in one OS
process (each with its own listener and connections). Its `NodeTransport`
(`paxtor.actors.transport`) is the node's ``remote``: signals for remote
pids go out as frames, in call order, on the peer's one connection
(`paxtor.actors.peers` keeps it). Frames received are applied here with the
node's ``deliver_*`` methods, after checking that they concern a process of
this node and one of the sending node (a peer cannot relay or speak for a
third node).

When a peer's connection closes (or its heartbeat falls silent although
TCP stays open), ``on_node_down(peer)`` fires every link and monitor across
it with "noconnection", once; ``node_down`` is logged with the reason and
`NodeDown` sent to processes that called `monitor_nodes`. A peer that
comes back with a new incarnation is a new node: pids of its old
incarnation are dead (messages dropped, link/monitor -> "noproc").

Remote spawn names the function ``"module:qualname"``
(`paxtor.actors.function_ref`); this side starts the process and answers
with its pid before the process runs.

Nodes are found by number, from seeds, and from each other: with
``connect_all`` (the default, as in Erlang) every node tells its peers whom
it is connected to, and dials the nodes its peers name (`paxtor.actors.mesh`),
so joining through any one node connects a node to all. A ``hidden`` node
connects only to the nodes it dials itself and is named to nobody.
`nodes()` lists every connected peer, hidden ones included (unlike Erlang's:
the consensus layer must hear every proposer); `visible_nodes()` leaves
them out, and `peer_info(name)` says what a peer announced (its address,
whether it is hidden, and the attributes the layer above gave it).

The module-level `node()`, `nodes()`, `connect()`, `disconnect()`,
`monitor_nodes()` act for the current node, like Erlang's BIFs.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gevent
import structlog
from gevent.hub import get_hub
from greenlet import getcurrent

from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ClusterId, ConnectionConfig
from paxtor.actors.cookie import resolve_cookie
from paxtor.actors.discovery import Target, dial_targets, listen_port, node_number
from paxtor.actors.dist_protocol import apply_frame, goodbye_frame, mesh_frame, spawn_reply_frame
from paxtor.actors.faults import FaultInjector
from paxtor.actors.function_ref import FunctionRefError, resolve_function_ref
from paxtor.actors.function_ref import allowed_modules as normalise_allowed_modules
from paxtor.actors.handshake import validate_node_name
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.mesh import MeshView, NodeInfo, announced_host, info_from_wire, info_to_wire
from paxtor.actors.messages import NotDistributed, fast_frozen_init
from paxtor.actors.node import DEFAULT_NODE_NAME, LocalNode, all_nodes, current_node, get_node
from paxtor.actors.peers import NODE_STOPPING, PeerConnections
from paxtor.actors.primitives import current_process
from paxtor.actors.transport import NodeTransport, NodeUnreachable, RemoteSpawnError
from paxtor.actors.wire import wire_type

__all__ = [
    "DistributedNode",
    "NodeTransport",
    "NodeUp",
    "NodeDown",
    "NodeInfo",
    "NodeUnreachable",
    "RemoteSpawnError",
    "start_distributed",
    "host_map",
    "distributed_node",
    "all_distributed",
    "stop_all_distributed",
    "node",
    "nodes",
    "connect",
    "disconnect",
    "monitor_nodes",
]

log = structlog.get_logger(__name__)

#: Last incarnation handed out per node name in this OS process.
_last_incarnation: dict[str, int] = {}
#: Incarnations count milliseconds from here, so a restart gets a larger one.
_INCARNATION_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@wire_type(name="actors.NodeUp")
@fast_frozen_init
@dataclass(frozen=True, slots=True)
class NodeUp:
    """Node `node` (in its `incarnation`) is connected (Erlang's ``{nodeup, Node}``)."""

    node: str
    incarnation: int


@wire_type(name="actors.NodeDown")
@fast_frozen_init
@dataclass(frozen=True, slots=True)
class NodeDown:
    """The connection to node `node` is lost, for `reason` (``{nodedown, Node}``)."""

    node: str
    reason: str


class DistributedNode:
    """A LocalNode connected to its peers; made by `start_distributed`."""

    #: module prefixes remote spawns and singleton starts may name here (None: any importable)
    allowed_modules: tuple[str, ...] | None = None

    def __init__(
        self,
        local: LocalNode,
        config: ConnectionConfig,
        *,
        host: str,
        port: int,
        base_port: int,
        cluster_size: int,
        seeds: Iterable[Any],
        reconnect_min: float,
        reconnect_max: float,
        hosts: Mapping[int, str] | None = None,
        hidden: bool = False,
        connect_all: bool = True,
        attrs: Mapping[str, Any] | None = None,
        listen_socket: Any = None,
        dials: Callable[[NodeInfo], bool] | None = None,
    ) -> None:
        self.local = local
        self.name = local.name
        self.incarnation = local.incarnation
        #: numbered node -> its address, for nodes not on `default_host` (see `start_distributed`)
        self.hosts = dict(hosts or {})
        self.default_host = host
        own_number = node_number(self.name)
        self.host = self.hosts.get(own_number, host) if own_number is not None else host
        self.base_port = base_port
        self.cluster_size = cluster_size
        self.hidden = hidden
        #: dial the nodes peers name (Erlang's connect_all); never for a hidden node
        self.connect_all = connect_all and not hidden
        self._attrs = dict(attrs or {})
        #: without connect_all: the nodes heard of that are dialed all the same (e.g. the voters)
        self._dials = dials
        self.mesh: MeshView | None = None  # made at start, once the port is bound
        self._announce_scheduled = False
        self._announced: tuple[Any, ...] | None = None
        #: bumped whenever a connection or a peer's view changes (for the caches of the layers above)
        self.mesh_version = 0
        self._unreached: tuple[int, list[str]] = (-1, [])
        self.running = True
        self._node_watchers: dict[Pid, int] = {}  # pid -> subscriptions
        #: the frames that are not signals for the LocalNode
        self._control: dict[str, Callable[..., None]] = {
            "spawn": self._on_spawn,
            "spawn_reply": self._on_spawn_reply,
            "goodbye": self._on_goodbye,
            "mesh": self._on_mesh,
        }
        targets = self._placed(
            dial_targets(
                self.name,
                (self.host, port) if port else None,
                host=host,
                base_port=base_port,
                cluster_size=cluster_size,
                seeds=seeds,
            )
        )
        self.peers = PeerConnections(
            config,
            targets=targets,
            on_message=self._frame_handler(),
            on_up=self._peer_up,
            on_down=self._peer_down,
            on_attempt_over=self._attempt_over,
            host=self.host,
            port=port,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            address_of=self._address_of,
            source_host=self.host if self.hosts else None,
            listen_socket=listen_socket,
        )
        self.config = self.peers.config
        self.transport = NodeTransport(self, self.peers.up)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DistributedNode {self.name}.{self.incarnation} {self.host}:{self.port} {state}>"

    def _start(self) -> None:
        self.local.remote = self.transport
        self.peers.start()  # binds the port: it is known from here on
        own = NodeInfo(self.name, self.incarnation, announced_host(self.host), self.port, self.hidden, self._attrs)
        self.mesh = MeshView(own)
        log.info("distribution_started", node=self.name, incarnation=self.incarnation, host=self.host, port=self.port)

    # -- queries -------------------------------------------------------------------

    @property
    def cluster(self) -> str:
        """The id of this node's cluster ("" while it does not know it)."""
        return self.config.cluster.value

    def set_cluster(self, cluster: str) -> None:
        """This node now belongs to ``cluster``: later handshakes tell and check it."""
        if self.config.cluster.value and self.config.cluster.value != cluster:
            raise ValueError(f"node {self.name} already belongs to cluster {self.config.cluster.value!r}")
        self.config.cluster.value = cluster

    @property
    def port(self) -> int:
        """The port this node listens on."""
        return self.peers.port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def nodes(self) -> list[str]:
        """The connected peers, sorted, hidden ones included (see the module doc)."""
        return sorted(self.peers.up)

    def visible_nodes(self) -> list[str]:
        """The connected peers that announced themselves as visible, sorted
        (Erlang's ``nodes()``; a peer whose announcement has not come yet is left out)."""
        mesh = self.mesh
        if mesh is None:
            return []
        direct = mesh.direct
        return sorted(n for n in self.peers.up if n in direct and not direct[n].hidden)

    @property
    def info(self) -> NodeInfo:
        """What this node announces about itself."""
        assert self.mesh is not None
        return self.mesh.own

    def peer_info(self, name: str) -> NodeInfo | None:
        """What node `name` announced (None if not connected or not announced yet)."""
        mesh = self.mesh
        if mesh is None or name not in self.peers.up:
            return None
        return mesh.direct.get(name)

    def known_nodes(self) -> dict[str, NodeInfo]:
        """Every node this one knows of: its connected peers (by their own word) and
        the visible nodes they are connected to."""
        mesh = self.mesh
        if mesh is None:
            return {}
        known = mesh.known()
        known.update((n, i) for n, i in mesh.direct.items() if n in self.peers.up)
        known.pop(self.name, None)
        return known

    def unreached(self) -> list[str]:
        """The visible nodes some peer is connected to and this node is not (the
        mesh is incomplete: a message between this node and those may be lost), sorted."""
        version, found = self._unreached
        if version != self.mesh_version and self.mesh is not None:
            up = self.peers.up
            found = sorted(name for name in self.mesh.known() if name not in up)
            self._unreached = (self.mesh_version, found)
        return found

    def reached_by_others(self, name: str) -> list[str]:
        """The connected peers that are themselves connected to node `name`
        (so it is alive, as far as they know, even if this node cannot reach it)."""
        return self.mesh.listed_by_peers(name) if self.mesh is not None else []

    def peer_incarnation(self, name: str) -> int | None:
        """The incarnation of connected peer `name`, or None."""
        conn = self.peers.up.get(name)
        return conn.peer.incarnation if conn is not None and conn.peer is not None else None

    def _address_of(self, name: str) -> tuple[str, int] | None:
        """Where to dial `name` on request (`connect`): where it announced itself, else by number."""
        info = self.mesh.info(name) if self.mesh is not None else None
        if info is not None and info.host:
            return info.address
        return self._numbered_address(name)

    def _numbered_address(self, name: str) -> tuple[str, int] | None:
        number = node_number(name)
        if number is None:
            return None
        return (self.hosts.get(number, self.default_host), self.base_port + number)

    def _placed(self, targets: list[Target]) -> list[Target]:
        """`targets` with each numbered peer at its `hosts` address; a seed that
        names a numbered peer's (placed) address is dropped."""
        if not self.hosts:
            return targets
        placed: list[Target] = []
        numbered: set[tuple[str, int]] = set()
        for target in targets:
            if not target.seed and target.name is not None:
                address = self._numbered_address(target.name)
                if address is not None:
                    target.host = address[0]
                    numbered.add(address)
        for target in targets:
            if not (target.seed and target.address in numbered):
                placed.append(target)
        return placed

    # -- requests ---------------------------------------------------------------------

    def connect(self, name: str, timeout: float | None = 5.0) -> bool:
        """Connect to node `name` if not connected (a target, a seed, or a
        ``nodeN`` found by number); True once connected."""
        if name == self.name:
            return True
        if not self.running:
            return False
        return self.peers.connect(name, timeout)

    def disconnect(self, name: str) -> bool:
        """Drop the connection to `name` (links and monitors across it fire
        "noconnection"); a numbered or seed peer is connected again later."""
        return self.peers.disconnect(name)

    def wait_for_nodes(self, names: Iterable[str], timeout: float | None = None) -> bool:
        """Block until every node of `names` is connected; False on timeout."""
        wanted = [n for n in names if n != self.name]
        up = self.peers.up
        return self.peers.wait_until(lambda: all(n in up for n in wanted), timeout)

    def monitor_nodes(self, pid: Pid, flag: bool = True) -> None:
        """Subscribe local process `pid` to `NodeUp` / `NodeDown` messages
        (Erlang's net_kernel:monitor_nodes): each call with True adds one
        subscription (one message each per event); `flag=False` ends them all."""
        if flag.__class__ is not bool:
            raise TypeError(f"monitor_nodes takes True or False, got {flag!r}")
        if not self.local.is_local(pid):
            raise ValueError(f"monitor_nodes takes a process of node {self.name!r}, got {pid!r}")
        if flag:
            self._node_watchers[pid] = self._node_watchers.get(pid, 0) + 1
        else:
            self._node_watchers.pop(pid, None)

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a new process of this node; return its result."""
        return self.local.run(fn, *args, timeout=timeout, **kwargs)

    def stop(self, linger: float = 1.0) -> None:
        """Stop the node: its processes exit ("shutdown", signalled to their
        remote links and monitors), each peer gets a `Goodbye` after those
        signals and closes its end; after `linger` seconds at most, every
        connection left is closed. Idempotent."""
        if not self.running:
            return
        self.running = False
        self.peers.stop_dialing()
        self.local.stop()  # a process of this node calling stop() is killed at its next switch
        goodbye = goodbye_frame(NODE_STOPPING)
        for conn in list(self.peers.up.values()):
            self.transport.send_frame(conn, goodbye)
            conn.expect_close()  # the peer closes its end once it has the goodbye
        closer = gevent.spawn(self._close_connections, linger)
        if getcurrent() is not get_hub():
            closer.join()

    def _close_connections(self, linger: float) -> None:
        self.peers.wait_until(lambda: not self.peers.up, linger)
        self.peers.close_all(NODE_STOPPING)
        log.info("distribution_stopped", node=self.name, incarnation=self.incarnation)

    # -- peers up and down ------------------------------------------------------------

    def _peer_up(self, conn: Connection) -> None:
        peer = conn.peer
        assert peer is not None
        self.mesh_version += 1
        if self.mesh is not None:
            self.transport.send_frame(conn, mesh_frame(*self.mesh.announcement()))  # the first frame
        self.transport.release_held(conn)  # before anything else is sent on it
        self._schedule_announce()
        log.info(
            "node_up",
            node=self.name,
            peer=peer.name,
            peer_incarnation=peer.incarnation,
            initiated_by=self.name if conn.role == "initiator" else peer.name,
        )
        self._tell_watchers(NodeUp(peer.name, peer.incarnation))

    def _peer_down(self, name: str, incarnation: int, reason: str) -> None:
        expected = not self.running or reason == NODE_STOPPING or reason.startswith("peer_stopping")
        level = log.info if expected else log.warning
        level("node_down", node=self.name, peer=name, peer_incarnation=incarnation, reason=reason)
        self.local.on_node_down(name)
        self.transport.node_lost(name)
        self.mesh_version += 1
        if self.mesh is not None:
            self.mesh.on_peer_down(name)
            self._schedule_announce()
            self._update_dials()
        self._tell_watchers(NodeDown(name, reason))

    def _attempt_over(self) -> None:
        """A connection attempt ended: signals held for a node that is still
        neither up nor being reached are dropped; the links and monitors
        made while waiting for it fire "noconnection"."""
        peers = self.peers
        for name in self.transport.held_for():
            if name not in peers.up and not peers.reaching(name):
                dropped = self.transport.drop_held(name)
                log.debug("node_unreachable", node=self.name, peer=name, frames_dropped=dropped)
                self.local.on_node_down(name)
                self.transport.node_lost(name)

    # -- the mesh ------------------------------------------------------------------------

    def _on_mesh(self, conn: Connection, own: NodeInfo, peers: list[NodeInfo]) -> None:
        """A peer's view: remember it, and dial the nodes it names that we lack."""
        assert conn.peer is not None and self.mesh is not None
        seen_host = conn.address[0] if conn.address else ""
        try:
            self.mesh.on_view(conn.peer.name, own, peers, seen_host)
        except ValueError as exc:
            conn.close(f"bad_view: {exc}")
            return
        self.mesh_version += 1
        self._schedule_announce()  # our own peers' list now has this one's address
        self._update_dials()

    def _update_dials(self) -> None:
        """Dial every node the mesh knows and we are not connected to; stop
        dialing those nobody names any more. Without connect_all (a hidden
        node) only the own targets are dialed, at the addresses they announce,
        and the nodes `dials` accepts."""
        if not self.running or self.mesh is None:
            return
        peers = self.peers
        if self.connect_all:
            wanted = self.mesh.to_dial(peers.up)
        else:
            up, extra = peers.up, self._dials
            wanted = {
                n: i for n, i in self.mesh.known().items()
                if n not in up and (peers.has_target(n) or (extra is not None and extra(i)))
            }  # fmt: skip
        for name, info in wanted.items():
            peers.dial(name, info.host, info.port)
        for name in peers.dialing_learned():
            if name not in wanted and name not in peers.up:
                peers.stop_dialing_node(name)

    def _schedule_announce(self) -> None:
        """Tell every peer our view once this loop turn is over (changes come in bursts)."""
        if not self._announce_scheduled and self.running:
            self._announce_scheduled = True
            get_hub().loop.run_callback(self._announce)

    def _announce(self) -> None:
        self._announce_scheduled = False
        if not self.running or self.mesh is None:
            return
        frame = mesh_frame(*self.mesh.announcement())
        if frame == self._announced:
            return
        self._announced = frame
        for conn in list(self.peers.up.values()):
            self.transport.send_frame(conn, frame)

    def _tell_watchers(self, event: NodeUp | NodeDown) -> None:
        local = self.local
        for pid, subscriptions in list(self._node_watchers.items()):
            if local.lookup(pid) is None:
                del self._node_watchers[pid]  # it died: forget it
                continue
            for _ in range(subscriptions):
                local.deliver_message(pid, event)

    # -- frames from peers --------------------------------------------------------------

    def _frame_handler(self) -> Callable[[Connection, Any], None]:
        """The connections' on_message: apply each frame from a peer (in the hub
        for plain TCP, in the reader greenlet for TLS; it must not block). A frame
        that is not one of ours raises ProtocolError, which closes that connection."""
        here, local = self.name, self.local
        control_ops = self._control

        def on_message(conn: Connection, frame: Any) -> None:
            control = apply_frame(frame, conn.peer.name, here, local)  # type: ignore[union-attr]
            if control is not None:
                op, args = control
                control_ops[op](conn, *args)

        return on_message

    def _on_spawn(
        self, conn: Connection, request: int, function: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        link: Pid | None, monitor: tuple[Pid, Ref] | None,
    ) -> None:
        error = None
        fn: Any = None
        if not self.local.running:
            error = "node is stopping"
        else:
            try:
                fn = resolve_function_ref(function, self.allowed_modules)
            except FunctionRefError as exc:
                error = str(exc)
        if error is not None:
            log.warning("remote_spawn_refused", node=self.name, peer=conn.peer_name, function=str(function)[:200],
                        reason=error)
            self.transport.send_frame(conn, spawn_reply_frame(self.name, request, None, error))
            return
        proc = self.local.spawn(fn, args, kwargs, link=link, monitor=monitor)
        # Queued before the new process runs (it starts next loop turn), so the
        # reply precedes any signal of the new process on this connection.
        self.transport.send_frame(conn, spawn_reply_frame(self.name, request, proc.pid, None))

    def _on_spawn_reply(self, conn: Connection, request: int, pid: Pid | None, error: str | None) -> None:
        assert conn.peer is not None  # frames flow only once the handshake named the peer
        self.transport.spawn_replied(conn.peer.name, request, pid, error)

    def _on_goodbye(self, conn: Connection, reason: str) -> None:
        conn.close(f"peer_stopping: {reason}")


# -- starting ------------------------------------------------------------------------------


def _new_incarnation(name: str, given: int | None) -> int:
    """Milliseconds since 2024 (so a restarted node, even in another OS
    process, gets a larger one), and never one this process used before."""
    if given is not None:
        if not isinstance(given, int) or isinstance(given, bool) or given < 0:
            raise ValueError(f"incarnation must be an int >= 0, got {given!r}")
        incarnation = given
    else:
        incarnation = max(time.time_ns() // 1_000_000 - _INCARNATION_EPOCH_MS, _last_incarnation.get(name, 0) + 1)
    _last_incarnation[name] = max(incarnation, _last_incarnation.get(name, 0))
    return incarnation


def _ssl_contexts(ssl_context: Any) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    if ssl_context is None:
        return None, None
    if isinstance(ssl_context, ssl.SSLContext):
        return ssl_context, ssl_context
    if (
        isinstance(ssl_context, tuple)
        and len(ssl_context) == 2
        and all(isinstance(c, ssl.SSLContext) for c in ssl_context)
    ):
        return ssl_context[0], ssl_context[1]
    raise TypeError("ssl_context is an ssl.SSLContext (both ends) or a (server_context, client_context) pair")


def start_distributed(
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    base_port: int = 4370,
    cluster_size: int = 0,
    seeds: Iterable[str | tuple[str, int]] = (),
    cookie: str | bytes | None = None,
    ssl_context: ssl.SSLContext | tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
    incarnation: int | None = None,
    heartbeat_interval: float = 1.0,
    heartbeat_timeout: float = 5.0,
    handshake_timeout: float = 5.0,
    reconnect_min: float = 0.1,
    reconnect_max: float = 5.0,
    faults: FaultInjector | None = None,
    hosts: Mapping[int | str, str] | None = None,
    hidden: bool = False,
    connect_all: bool = True,
    attrs: Mapping[str, Any] | None = None,
    listen_socket: Any = None,
    cluster: str = "",
    allowed_modules: Iterable[str] | None = None,
    dials: Callable[[NodeInfo], bool] | None = None,
) -> DistributedNode:
    """Start node `name` in this OS process, listening and connected to its peers.

    `name` is unique in the cluster. ``nodeN`` listens on ``base_port + N``
    unless `port` is given (other names listen on `port`, default any free
    one); it dials ``node1 .. node<cluster_size>`` on `host` and every seed
    (``"host:port"``) and keeps them connected (capped backoff between
    attempts). `cookie` defaults as in `paxtor.actors.cookie`. `ssl_context`
    is one context for both ends or a (server, client) pair. `faults` is a
    `FaultInjector` for tests. `hosts` places numbered nodes on addresses
    other than `host` ({N or "nodeN": address}, e.g. one 127.0.0.0/8
    address per node): ``nodeN`` listens on, and is dialed at, its address;
    with `hosts` given, every dial leaves from this node's own address, so
    per-address firewall rules can cut one node off. `connect_all` (default)
    dials every node the peers name (`paxtor.actors.mesh`); a `hidden` node
    dials only its own targets (and the nodes heard of that `dials`
    accepts) and is named to nobody. `attrs` (str keys,
    plain values) travel with this node's announcement, for the layer above.
    `listen_socket` (from `paxtor.actors.listener.bind_listener`) is the
    listener's socket, bound beforehand (then `port` is not used). `cluster`
    is the id of the cluster the node belongs to ("" until it learns it,
    `set_cluster`): a peer of another cluster is refused at the handshake.
    `allowed_modules` (module prefixes, e.g. ``["myapp", "paxtor.demo"]``)
    limits what peers may spawn here by name (and what singletons this node
    starts); None allows any importable function, as Erlang's rpc does.
    Raises `ListenError` (an OSError) if the port cannot be bound.
    """
    problem = validate_node_name(name)
    if problem is not None or name == DEFAULT_NODE_NAME:
        raise ValueError(f"bad node name {name!r}: {problem or 'reserved for the non-distributed node'}")
    if get_node(name) is not None:
        raise ValueError(f"node {name!r} is already running in this OS process")
    listen = listen_socket.getsockname()[1] if listen_socket is not None else listen_port(name, base_port, port)
    placed = host_map(hosts)
    if not isinstance(hidden, bool) or not isinstance(connect_all, bool):
        raise TypeError(f"hidden and connect_all are bools, got {hidden!r}, {connect_all!r}")
    info_from_wire(info_to_wire(NodeInfo(name, 0, host, 1, hidden, dict(attrs or {}))))  # ValueError: bad attrs
    allowed = normalise_allowed_modules(allowed_modules)
    server_ctx, client_ctx = _ssl_contexts(ssl_context)
    config = ConnectionConfig(
        name,
        _new_incarnation(name, incarnation),
        resolve_cookie(cookie),
        handshake_timeout=handshake_timeout,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        server_ssl_context=server_ctx,
        client_ssl_context=client_ctx,
        faults=faults,
        cluster=ClusterId(cluster),
    )
    local = LocalNode.start(name, config.incarnation)
    try:
        dist = DistributedNode(
            local,
            config,
            host=host,
            port=listen,
            base_port=base_port,
            cluster_size=cluster_size,
            seeds=seeds,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            hosts=placed,
            hidden=hidden,
            connect_all=connect_all,
            attrs=attrs,
            listen_socket=listen_socket,
            dials=dials,
        )
        dist.allowed_modules = allowed
        dist._start()
    except BaseException:
        local.remote = None
        local.stop()
        raise
    return dist


def host_map(hosts: Mapping[int | str, str] | None) -> dict[int, str]:
    """`hosts` ({N or "nodeN": address}) as {N: address}; ValueError for a key
    that is no node number or an address that is no non-empty string."""
    placed: dict[int, str] = {}
    for key, address in (hosts or {}).items():
        number = node_number(key) if isinstance(key, str) else key
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise ValueError(f"hosts maps node numbers (or 'nodeN') to addresses, got key {key!r}")
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"hosts[{key!r}] must be an address string, got {address!r}")
        placed[number] = address.strip()
    return placed


# -- the current node's view (Erlang's BIFs) --------------------------------------------------


def distributed_node(of: LocalNode | str | None = None) -> DistributedNode | None:
    """The distribution of node `of` (a LocalNode or a name; default the
    current node), or None if it is not distributed."""
    local = get_node(of) if isinstance(of, str) else (of or current_node())
    remote = local.remote if local is not None else None
    return remote.dist if isinstance(remote, NodeTransport) else None


def all_distributed() -> list[DistributedNode]:
    """Every running distributed node of this OS process, in start order (found from the nodes)."""
    found = (distributed_node(local) for local in all_nodes())
    return [dist for dist in found if dist is not None and dist.running]


def stop_all_distributed() -> None:
    """Stop every distributed node of this OS process."""
    for dist in all_distributed():
        dist.stop()


def node() -> str:
    """The name of the current node (Erlang's ``node()``)."""
    return current_node().name


def nodes() -> list[str]:
    """The peers the current node is connected to (Erlang's ``nodes()``)."""
    dist = distributed_node()
    return dist.nodes() if dist is not None else []


def connect(name: str, timeout: float | None = 5.0) -> bool:
    """Connect the current node to `name` (Erlang's ``net_kernel:connect_node``)."""
    dist = distributed_node()
    return dist.connect(name, timeout) if dist is not None else False


def disconnect(name: str) -> bool:
    """Drop the current node's connection to `name` (``erlang:disconnect_node``)."""
    dist = distributed_node()
    return dist.disconnect(name) if dist is not None else False


def monitor_nodes(flag: bool = True) -> None:
    """Subscribe the current process to `NodeUp` / `NodeDown` messages of
    its node (``net_kernel:monitor_nodes``: each call with True is one more
    subscription, one message each); `flag=False` ends them all."""
    me = current_process()
    dist = distributed_node(me.node)
    if dist is None:
        raise NotDistributed(f"monitor_nodes needs a distributed node; {me.node.name!r} is not one")
    dist.monitor_nodes(me.pid, flag)

