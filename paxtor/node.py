"""A Paxtor node: a distributed actor node plus the node services (later:
PaxosKV) under one root supervisor. `start_node` is what `python -m paxtor
node` and applications call (DESIGN section 4)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from paxtor.actors import Supervisor, receive, spawn_monitor
from paxtor.actors.discovery import node_number, numbered_name
from paxtor.actors.distribution import DistributedNode, host_map, start_distributed
from paxtor.actors.messages import Down
from paxtor.actors.node import get_node
from paxtor.actors.primitives import self_pid, send
from paxtor.paxos.services import PaxosConfig, PaxosNode, node_incarnation, paxos_supervisor_spec

__all__ = ["Node", "start_node", "DURABILITY_MODES", "node_services", "MAX_AUTO_NUMBER"]

log = structlog.get_logger(__name__)

DURABILITY_MODES: tuple[str, ...] = ("fsync", "memory")
#: `name="_"` tries node1, node2, ... up to this number.
MAX_AUTO_NUMBER = 99
ROOT_SUPERVISOR = "paxtor_node_sup"


def node_services(node: Node) -> list[Any]:
    """The child specs started under the node's root supervisor, in order.

    PaxosKV's supervisor (`paxtor.paxos.services`: membership, acceptor,
    lease keeper, proposer, binding watcher) first; the Paxtor layer's
    services (lock agent, singleton server: they propose rounds) after it.
    """
    from paxtor.services import paxtor_services  # the services import this module's users

    return [paxos_supervisor_spec(node.paxos), *paxtor_services(node)]


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
        paxos: dict[str, Any] | None = None,
    ) -> None:
        self.dist = dist
        self.name = dist.name
        self.cluster_size = cluster_size
        self.data_dir = data_dir
        self.durability = durability
        self.voter = voter
        self.root_supervisor: Any = None
        self._root: Any = None
        #: the web view and /metrics (`paxtor.observe.web`), when started with `http`
        self.web: Any = None
        config = PaxosConfig(voters=self.voters, voter=voter, durability=durability, data_dir=data_dir, **(paxos or {}))
        #: this node's PaxosKV state (its acceptor log is open while the node runs)
        self.paxos = PaxosNode(config, dist.local)

    def __repr__(self) -> str:
        role = "voter" if self.voter else "client"
        return f"<paxtor.Node {self.name} {role} {self.dist.host}:{self.dist.port} durability={self.durability}>"

    @property
    def voters(self) -> tuple[str, ...]:
        """The configured voters: ``node1 .. node<cluster_size>``."""
        return tuple(numbered_name(i) for i in range(1, self.cluster_size + 1))

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
    msg = receive(lambda m: (isinstance(m, tuple) and m[:2] == ("root_started", root)) or (isinstance(m, Down) and m.ref == ref))
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


def _check_settings(cluster_size: Any, durability: Any, voter: Any) -> None:
    if not isinstance(cluster_size, int) or isinstance(cluster_size, bool) or cluster_size < 1:
        raise ValueError(f"cluster_size must be an int >= 1, got {cluster_size!r}")
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got {durability!r}")
    if not isinstance(voter, bool):
        raise TypeError(f"voter must be a bool, got {voter!r}")


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
    durability: str = "fsync",
    voter: bool = True,
    paxos: dict[str, Any] | None = None,
    hosts: Mapping[int | str, str] | None = None,
    http: str | tuple[str, int] | None = None,
    **distribution: Any,
) -> Node:
    """Start a Paxtor node in this OS process and connect it to its peers.

    `name` is ``"nodeN"``, a number N, or ``"_"``/None for the lowest free
    number on this host (the first ``base_port + N`` that can be bound).
    The voters are ``node1 .. node<cluster_size>``; another number joins
    as a client (not voting) — an explicit name must then say
    ``voter=False``. `durability` is "fsync" (acceptor state in
    `data_dir`/<name>, default ``./paxtor-data``) or "memory" (tests).
    `paxos` overrides PaxosKV settings (`paxtor.paxos.PaxosConfig`: lease,
    margin, max_drift, timeout, ...). A durable node's incarnation comes
    from ``node.meta`` in its data directory (it grows at every start).
    `hosts` ({N or "nodeN": address}) puts numbered nodes on addresses other
    than `host`, e.g. ``{1: "127.0.0.11", 2: "127.0.0.12"}``: ``nodeN``
    listens there and is dialed there, and with `hosts` given every node
    dials from its own address (so a firewall rule per address pair can
    partition nodes of one machine).
    `http` (``"HOST:PORT"``, or a port on 127.0.0.1) serves the read-only web
    view and ``/metrics`` of this node (`paxtor.observe.web`); off by default.
    Other keyword arguments go to `start_distributed` (heartbeat_interval,
    heartbeat_timeout, handshake_timeout, ssl_context, faults, ...).
    """
    _check_settings(cluster_size, durability, voter)
    options = dict(host=host, base_port=base_port, cluster_size=cluster_size, seeds=tuple(seeds), cookie=cookie)
    if hosts:
        options["hosts"] = host_map(hosts)
    options.update(distribution)
    if name is None or name == "_":
        dist = _start_lowest_free(options, data_dir, durability)
        number = node_number(dist.name)
        if voter and number is not None and number > cluster_size:
            log.warning("joined_as_client", node=dist.name, reason=f"the voters node1..node{cluster_size} are running")
            voter = False
    else:
        if isinstance(name, int) and not isinstance(name, bool):
            name = numbered_name(name)
        number = node_number(name) if isinstance(name, str) else None
        if voter and (number is None or number > cluster_size):
            raise ValueError(
                f"{name!r} cannot vote: the voters are node1..node{cluster_size} (pass voter=False to join as a client)"
            )
        incarnation = node_incarnation(_resolve_data_dir(data_dir, name, durability), durability)
        dist = start_distributed(name, incarnation=incarnation, **options)  # type: ignore[arg-type]
    node = None
    try:
        node = Node(
            dist,
            cluster_size=cluster_size,
            data_dir=_resolve_data_dir(data_dir, dist.name, durability),
            durability=durability,
            voter=voter,
            paxos=paxos,
        )
        node._start_services()
        if http is not None:
            from paxtor.observe.web import start_web  # the top layer, started on request

            node.web = start_web(dist.local, http)
    except BaseException:
        if node is not None and node.web is not None:
            node.web.stop()
        dist.stop()
        if node is not None:
            node.paxos.close()
        raise
    log.info("node_started", node=node.name, voter=voter, durability=durability, port=dist.port)
    return node


def _start_lowest_free(options: dict[str, Any], data_dir: Any, durability: str) -> DistributedNode:
    """`start_distributed` for node1, node2, ...: the first whose port binds.

    The port is probed before the node's incarnation is taken from its data
    directory, so a running node's ``node.meta`` is never touched.
    """
    for number in range(1, MAX_AUTO_NUMBER + 1):
        name = numbered_name(number)
        if get_node(name) is not None:
            continue  # running in this OS process
        if not _port_free(options.get("hosts", {}).get(number, options["host"]), options["base_port"] + number):
            continue
        try:
            incarnation = node_incarnation(_resolve_data_dir(data_dir, name, durability), durability)
            return start_distributed(name, incarnation=incarnation, **options)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free node number in 1..{MAX_AUTO_NUMBER} (ports {options['base_port'] + 1}..)")


def _port_free(host: str, port: int) -> bool:
    """Whether `port` can be bound now, as the listener binds it (a probe: the real
    bind may still lose a race, which `start_distributed` reports as EADDRINUSE)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
