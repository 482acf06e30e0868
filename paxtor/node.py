"""A Paxtor node: a distributed actor node plus the node services (PaxosKV,
locks, singletons) under one root supervisor. `start_node` is what
`python -m paxtor node` and applications call (see the README's API)."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from paxtor.actors import Supervisor, receive, spawn_monitor
from paxtor.actors.discovery import listen_port, node_number, numbered_name
from paxtor.actors.distribution import DistributedNode, host_map, start_distributed
from paxtor.actors.listener import ListenError, bind_listener
from paxtor.actors.messages import Down
from paxtor.actors.node import get_node
from paxtor.actors.primitives import self_pid, send
from paxtor.locks.services import lock_services
from paxtor.observe.events import EventServer
from paxtor.observe.server import ObserveServer
from paxtor.paxos.config import numbered_voters
from paxtor.paxos.node_meta import NodeMeta
from paxtor.paxos.paxos_node import ACCEPTOR_DIR
from paxtor.paxos.services import (
    PaxosConfig,
    PaxosNode,
    open_node_meta,
    paxos_supervisor_spec,
)
from paxtor.placement import announces_voter, role_attrs
from paxtor.singletons.services import singleton_services

__all__ = ["Node", "start_node", "configured_voters", "DURABILITY_MODES", "node_services", "MAX_AUTO_NUMBER"]

log = structlog.get_logger(__name__)

DURABILITY_MODES: tuple[str, ...] = ("fsync", "memory")
#: `name="_"` tries node1, node2, ... up to this number.
MAX_AUTO_NUMBER = 99
ROOT_SUPERVISOR = "paxtor_node_sup"


def configured_voters(cluster_size: int) -> tuple[str, ...]:
    """The voters a node knows of before it has joined: those a new cluster is
    founded with, ``node1 .. node<cluster_size>``.

    The one place `start_node` asks which names vote before the node runs
    (the checks of its arguments, the choice of a name for ``"_"``, the
    founding voters); once running, `Node.voters` is the cluster's current
    voter configuration.
    """
    return numbered_voters(cluster_size)


def node_services(node: Node) -> list[Any]:
    """The child specs started under the node's root supervisor, in order.

    PaxosKV's supervisor (`paxtor.paxos.services`: membership, acceptor,
    lease keeper, proposer, binding watcher) first; then the services of the
    locks and the singletons (they propose rounds); then the observer
    (`paxtor.cluster_info` asks it; read-only) and the event server
    (`paxtor.subscribe`).
    """
    return [
        paxos_supervisor_spec(node.paxos),
        *lock_services(),
        *singleton_services(),
        ObserveServer.child_spec(),
        EventServer.child_spec(),
    ]


class Node:
    """A running Paxtor node (made by `start_node`)."""

    def __init__(
        self,
        dist: DistributedNode,
        *,
        cluster_size: int,
        data_dir: Path | None,
        durability: str,
        voter: bool,
        meta: NodeMeta,
        paxos: dict[str, Any] | None = None,
        singletons: bool = True,
    ) -> None:
        self.dist = dist
        self.meta = meta
        self.name = dist.name
        self.cluster_size = cluster_size
        self.data_dir = data_dir
        self.durability = durability
        self.voter = voter
        #: whether singletons may be placed here (never on a hidden node)
        self.singletons = singletons
        self.hidden = dist.hidden
        self.root_supervisor: Any = None
        self._root: Any = None
        #: the web view and /metrics (`paxtor.observe.web`), when started with `http`
        self.web: Any = None
        initial = configured_voters(cluster_size)
        config = PaxosConfig(voters=initial, voter=voter, durability=durability, data_dir=data_dir, **(paxos or {}))
        #: this node's PaxosKV state (its acceptor log is open while the node runs)
        self.paxos = PaxosNode(config, dist.local, cluster=meta.cluster, on_cluster=self._joined)

    def _joined(self, cluster: str) -> None:
        """PaxosKV founded or joined ``cluster``: node.meta records it, handshakes carry it."""
        self.meta.set_cluster(cluster)
        self.dist.set_cluster(cluster)

    def __repr__(self) -> str:
        return f"<paxtor.Node {self.name} {self.role} {self.dist.host}:{self.dist.port} durability={self.durability}>"

    @property
    def role(self) -> str:
        """"voter", "client" or "hidden client", and "no singletons" when it hosts none."""
        role = "voter" if self.voter else "hidden client" if self.hidden else "client"
        return role if self.singletons or self.hidden else f"{role}, no singletons"

    @property
    def voters(self) -> tuple[str, ...]:
        """The cluster's voters: those of its voter configuration once this node knows it,
        else the ones a new cluster is founded with (`configured_voters`)."""
        config = self.paxos.voter_config
        return config.voters if config is not None else self.paxos.initial_voters

    @property
    def cluster(self) -> str:
        """The id of this node's cluster ("" until it founds or joins one)."""
        return self.paxos.cluster

    @property
    def running(self) -> bool:
        return self.dist.running

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a new process on this node and return
        its result (or raise its exception)."""
        return self.dist.run(fn, *args, timeout=timeout, **kwargs)

    def nodes(self) -> list[str]:
        """The peers this node is connected to."""
        return self.dist.nodes()

    def stop(self) -> None:
        """Stop the services, the processes and the connections of this node."""
        if self.web is not None:
            self.web.stop()
        self.dist.stop()
        self.paxos.close()  # the acceptor log: flushed, unlocked

    def _start_services(self) -> None:
        """Start the root supervisor (owned by a root process that lives as
        long as the node) with `node_services(self)`."""
        started = self.dist.run(_start_root, node_services(self))
        self._root, self.root_supervisor = started


def _start_root(children: list[Any]) -> tuple[Any, Any]:
    """Spawn the node's root process; return (root pid, supervisor pid)."""
    parent = self_pid()
    root, ref = spawn_monitor(_root_main, parent, children)
    msg = receive(
        lambda m: (isinstance(m, tuple) and m[:2] == ("root_started", root)) or (isinstance(m, Down) and m.ref == ref)
    )
    if isinstance(msg, Down):
        raise RuntimeError(f"the node's services failed to start: {msg.reason!r}")
    return root, msg[2]


def _root_main(parent: Any, children: list[Any]) -> None:
    """The root process: owns the root supervisor (a supervisor stops with
    its parent) and waits; node stop ends both."""
    sup = Supervisor.start_link(children, strategy="one_for_one", name=ROOT_SUPERVISOR)
    send(parent, ("root_started", self_pid(), sup))
    while True:
        receive()


def _check_settings(cluster_size: Any, durability: Any, voter: Any, singletons: Any, hidden: Any) -> None:
    if not isinstance(cluster_size, int) or isinstance(cluster_size, bool) or cluster_size < 1:
        raise ValueError(f"cluster_size must be an int >= 1, got {cluster_size!r}")
    if durability is not None and durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got {durability!r}")
    for what, value in (("voter", voter), ("hidden", hidden)):
        if not isinstance(value, bool):
            raise TypeError(f"{what} must be a bool, got {value!r}")
    if singletons is not None and not isinstance(singletons, bool):
        raise TypeError(f"singletons must be a bool or None, got {singletons!r}")
    if hidden and singletons:
        raise ValueError("a hidden node hosts no singletons (singletons=True with hidden=True)")


def _check_paxos_settings(paxos: Any, cluster_size: int) -> None:
    """Refuse bad PaxosKV settings before anything is bound, opened or started
    (the same check the node's `PaxosConfig` makes once its data directory is known)."""
    if paxos is None:
        return
    if not isinstance(paxos, dict):
        raise TypeError(f"paxos must be a dict of PaxosKV settings, got {paxos!r}")
    PaxosConfig(voters=configured_voters(cluster_size), voter=False, durability="memory", **paxos)


def _resolve_data_dir(data_dir: Any, name: str, durability: str) -> Path | None:
    """The node's own directory: `data_dir`/<name>, created for "fsync";
    None for "memory" without a data_dir (nothing is written)."""
    if data_dir is None:
        if durability == "memory":
            return None
        data_dir = Path("paxtor-data")
    path = Path(data_dir).expanduser().resolve() / name
    if path.exists() and not path.is_dir():
        raise ValueError(f"data_dir {path} exists and is not a directory")
    if durability == "fsync":
        path.mkdir(parents=True, exist_ok=True)
    return path


def start_node(
    name: str | int | None = "_",
    cluster_size: int = 3,
    host: str = "127.0.0.1",
    base_port: int = 4370,
    seeds: Iterable[str] = (),
    cookie: str | bytes | None = None,
    data_dir: str | Path | None = None,
    durability: str | None = None,
    voter: bool = True,
    paxos: dict[str, Any] | None = None,
    hosts: Mapping[int | str, str] | None = None,
    singletons: bool | None = None,
    hidden: bool = False,
    http: str | tuple[str, int] | None = None,
    join: bool = False,
    **distribution: Any,
) -> Node:
    """Start a Paxtor node in this OS process and connect it to its peers.

    `name` is ``"nodeN"``, a number N, any other unique name for a client
    (e.g. ``f"web-{hostname}-{pid}"``), or ``"_"``/None for the lowest free
    number on this host (the first ``base_port + N`` that can be bound; a
    client, ``voter=False``, never takes the number of a voter the cluster
    is founded with). A new cluster is founded with the voters
    `configured_voters` (``node1 .. node<cluster_size>``) once all of them
    are up (later changes: `paxtor.cluster`). ``voter``: the node has an
    acceptor, so it votes once it is one of the cluster's voters (a node of
    another name or number waits to be added); with ``"_"``, a number above
    ``cluster_size`` joins as a client. `durability` is "fsync" (acceptor state in
    `data_dir`/<name>, default ``./paxtor-data``) or "memory"; it defaults
    to "fsync" for voters and "memory" for clients, which then write
    nothing (a client's only state is its incarnation, taken from the clock).
    `singletons=False` hosts no singletons here (placement skips the node);
    `hidden=True` makes a client that connects only to the nodes it dials
    (its seeds, and every node that announces an acceptor: the voters, by
    number or not), is named to no other node, and hosts nothing: a tool
    that looks at the cluster and leaves.
    `paxos` overrides PaxosKV settings (`paxtor.paxos.PaxosConfig`: lease,
    margin, max_drift, timeout, ...). A durable node's incarnation comes
    from ``node.meta`` in its data directory (it grows at every start); the
    node binds its port first, so two processes racing for one name never
    touch one ``node.meta``.
    `hosts` ({N or "nodeN": address}) puts numbered nodes on addresses other
    than `host`, e.g. ``{1: "127.0.0.11", 2: "127.0.0.12"}``: ``nodeN``
    listens there and is dialed there, and with `hosts` given every node
    dials from its own address (so a firewall rule per address pair can
    partition nodes of one machine).
    `join=True`: the node joins a cluster that exists and never founds one,
    even with every voter of ``cluster_size`` blank (start the nodes of a
    cluster whose voters have changed, or that were wiped, this way: see the
    README's Operations).
    `http` (``"HOST:PORT"``, or a port on 127.0.0.1) serves the read-only web
    view and ``/metrics`` of this node (`paxtor.observe.web`); off by default.
    Other keyword arguments go to `start_distributed` (heartbeat_interval,
    heartbeat_timeout, handshake_timeout, ssl_context, faults, connect_all, allowed_modules:
    the module prefixes peers may spawn and start singletons from here, ...).
    """
    _check_settings(cluster_size, durability, voter, singletons, hidden)
    _check_paxos_settings(paxos, cluster_size)
    if join:
        paxos = {**(paxos or {}), "found": False}
    voters = configured_voters(cluster_size)
    if hidden:
        if voter and name not in (None, "_") and _full_name(name) in voters:
            raise ValueError(f"{_full_name(name)!r} is a configured voter: a voter cannot be hidden")
        voter = False
    options = dict(host=host, base_port=base_port, cluster_size=cluster_size, seeds=tuple(seeds), cookie=cookie)
    if hosts:
        options["hosts"] = host_map(hosts)
    options.update(distribution)
    if name is None or name == "_":
        name, sock = _bind_lowest_free(options, voters, voter, data_dir)
        if voter and name not in voters:
            log.warning("joined_as_client", node=name, reason=f"the voters {', '.join(voters)} are running")
            voter = False
    else:
        name = _full_name(name)
        if not voter and name in voters:
            raise ValueError(f"{name!r} is the name of a voter the cluster is founded with: a client needs its own")
        sock = _bind(options, name)
    durability = durability or ("fsync" if voter else "memory")
    singletons = (not hidden) if singletons is None else singletons
    attrs = role_attrs(voter=voter, singletons=singletons)
    try:
        meta = open_node_meta(_resolve_data_dir(data_dir, name, durability), durability, name)
        dist = start_distributed(
            name, incarnation=meta.incarnation, cluster=meta.cluster, listen_socket=sock, hidden=hidden, attrs=attrs,
            dials=announces_voter if hidden else None, **options,  # type: ignore[arg-type]
        )  # fmt: skip
    except BaseException:
        sock.close()
        raise
    node = None
    try:
        node = Node(
            dist,
            meta=meta,
            cluster_size=cluster_size,
            data_dir=_resolve_data_dir(data_dir, dist.name, durability),
            durability=durability,
            voter=voter,
            paxos=paxos,
            singletons=singletons,
        )
        node._start_services()
        if http is not None:
            from paxtor.observe.web import (
                start_web,  # the top layer, started on request
            )

            node.web = start_web(dist.local, http)
    except BaseException:
        if node is not None and node.web is not None:
            node.web.stop()
        dist.stop()
        if node is not None:
            node.paxos.close()
        raise
    log.info(
        "node_started",
        node=node.name,
        voter=voter,
        singletons=singletons,
        hidden=hidden,
        durability=durability,
        port=dist.port,
    )
    return node


def _full_name(name: str | int) -> str:
    """``nodeN`` for a number N; a name as it is."""
    if isinstance(name, int) and not isinstance(name, bool):
        return numbered_name(name)
    if not isinstance(name, str):
        raise TypeError(f"a node name is a str or a number, got {name!r}")
    return name


def _listen_host(options: dict[str, Any], name: str) -> str:
    number = node_number(name)
    return options.get("hosts", {}).get(number, options["host"]) if number is not None else options["host"]


def _bind(options: dict[str, Any], name: str) -> Any:
    """The listening socket of node `name`, bound before its state is touched (`ListenError` if taken)."""
    port = listen_port(name, options["base_port"], options.pop("port", None))
    return bind_listener(_listen_host(options, name), port)


def _bind_lowest_free(
    options: dict[str, Any], voters: tuple[str, ...], voter: bool, data_dir: Any = None
) -> tuple[str, Any]:
    """The first ``nodeN`` whose port this process can bind, and the bound socket.

    Binding is the claim: two processes starting at once never get one name,
    and the name's data directory is only touched once its port is ours. A
    client skips the founding voters' names, and the name of any node that
    has voted from this data root (its ``acceptor`` directory is there): a
    voter added later (``node4 --voter``) keeps its name while it is down.
    """
    root = Path(data_dir if data_dir is not None else "paxtor-data").expanduser()
    for number in range(1, MAX_AUTO_NUMBER + 1):
        name = numbered_name(number)
        if not voter and (name in voters or (root / name / ACCEPTOR_DIR).is_dir()):
            continue  # a voter's name
        if get_node(name) is not None:
            continue  # running in this OS process
        try:
            return name, _bind(dict(options), name)
        except ListenError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise ListenError(
        errno.EADDRINUSE, f"no free node number in 1..{MAX_AUTO_NUMBER} (ports {options['base_port'] + 1}..)"
    )
