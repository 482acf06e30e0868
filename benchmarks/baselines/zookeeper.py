"""ZooKeeper baseline: a 3-member ensemble on loopback and its create/lock numbers.

Server: Debian's ``zookeeper`` package (3.8.x), run as
``java ... QuorumPeerMain zoo.cfg`` per member with default durability
(``forceSync=yes``: the transaction log is fsynced before a write is acked).
Client: ``kazoo`` with its default threading handler; locks are kazoo's
``Lock`` recipe (ephemeral sequential znode, watch the predecessor).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .cluster import (
    LOOPBACK,
    ProcessSet,
    apt_install,
    free_ports,
    install_permitted,
    new_process_set,
    wait_until,
)
from .harness import PLACEMENT, BenchSettings, HolderCheck, Phases, checked_lock_op, headline

NAME = "zookeeper"
DEBIAN_PACKAGE = "zookeeper"
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian layout; its manifest lists the dependencies
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")  # without a binding ZooKeeper logs nothing
JVM_HEAP = "512m"
ROOT = "/paxtor-bench"


def _java() -> str | None:
    return shutil.which("java")


def client_description() -> str:
    try:
        return f"kazoo {metadata.version('kazoo')} (threading handler)"
    except metadata.PackageNotFoundError:
        return "kazoo missing"


def available(install: bool | None = None) -> tuple[bool, str]:
    """Whether a ZooKeeper ensemble can run here; installs ``zookeeper`` if permitted.

    ``install=None`` means: permitted iff ``PAXTOR_BENCH_INSTALL=1``.
    """
    if not ZOOKEEPER_JAR.exists() or _java() is None:
        if not install_permitted(install):
            return False, (
                f"ZooKeeper not installed ({ZOOKEEPER_JAR} or java missing; "
                f"apt-get install {DEBIAN_PACKAGE}, or set PAXTOR_BENCH_INSTALL=1)"
            )
        ok, message = apt_install(DEBIAN_PACKAGE)
        if not ok or not ZOOKEEPER_JAR.exists() or _java() is None:
            return False, message
    try:
        import kazoo  # noqa: F401
    except ImportError as exc:
        return False, f"ZooKeeper Python client missing ({exc}); pip install kazoo"
    return True, f"ZooKeeper ({ZOOKEEPER_JAR.resolve()}, java {_java()}); client: {client_description()}"


# --------------------------------------------------------------------------- cluster


@dataclass
class ZkMember:
    myid: int
    client_port: int
    quorum_port: int
    election_port: int


@dataclass
class ZkCluster:
    """A running ensemble; ``leader`` indexes ``members``."""

    members: list[ZkMember]
    processes: ProcessSet
    version: str = "unknown"
    leader: int = 0
    notes: list[str] = field(default_factory=list)

    def endpoint(self, index: int) -> tuple[str, int]:
        return LOOPBACK, self.members[index % len(self.members)].client_port

    def spread_endpoints(self, count: int) -> list[tuple[str, int]]:
        """Round-robin over members starting with the leader."""
        return [self.endpoint(self.leader + i) for i in range(count)]


def four_letter_word(port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (e.g. ``srvr``) and read the reply."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(word.encode())
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _srvr_field(reply: str, name: str) -> str | None:
    for line in reply.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def _config(member: ZkMember, members: list[ZkMember], data_dir: Path) -> str:
    lines = [
        "tickTime=2000",
        "initLimit=10",
        "syncLimit=5",
        f"dataDir={data_dir}",
        f"clientPort={member.client_port}",
        f"clientPortAddress={LOOPBACK}",
        "forceSync=yes",  # the default, stated: fsync the txn log before acking
        "maxClientCnxns=0",
        "admin.enableServer=false",
        "4lw.commands.whitelist=srvr,ruok",
        "autopurge.purgeInterval=0",
    ]
    lines += [f"server.{m.myid}={LOOPBACK}:{m.quorum_port}:{m.election_port}" for m in members]
    return "\n".join(lines) + "\n"


def _member_argv(java: str, config_path: Path, log_dir: Path) -> list[str]:
    return [
        java,
        f"-Xmx{JVM_HEAP}",
        # leader election only: keep FLE's notification back-off short so that
        # JVMs started seconds apart on a busy machine elect within a second or
        # two instead of waiting out a back-off of up to 60 s
        "-Dzookeeper.fastleader.maxNotificationInterval=1000",
        f"-Dzookeeper.log.dir={log_dir}",
        # warnings and errors only (bind failures, slow fsync) into the member's log file
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        ":".join(str(jar) for jar in (ZOOKEEPER_JAR, SLF4J_SIMPLE_JAR) if jar.exists()),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(config_path),
    ]


@contextmanager
def zookeeper_cluster(size: int = 3, start_timeout: float = 60.0) -> Iterator[ZkCluster]:
    """Start a ``size``-member ZooKeeper ensemble on 127.0.0.1 (free ports, temp dirs).

    Yields once every member answers ``srvr`` as leader or follower; on exit
    (also on exceptions and Ctrl-C) kills each JVM by pid and removes the
    data directories.
    """
    java = _java()
    if java is None or not ZOOKEEPER_JAR.exists():
        raise RuntimeError("ZooKeeper is not installed; call available(install=True) first")
    processes = new_process_set("paxtor-bench-zk-")
    try:
        ports = free_ports(3 * size)
        members = [ZkMember(i + 1, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(size)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO", "JVMFLAGS", "JAVA_TOOL"))}
        for member in members:
            home = processes.root / f"zk{member.myid}"
            data_dir = home / "data"
            data_dir.mkdir(parents=True)
            (data_dir / "myid").write_text(f"{member.myid}\n")
            config_path = home / "zoo.cfg"
            config_path.write_text(_config(member, members, data_dir))
            processes.start(f"zk{member.myid}", _member_argv(java, config_path, home), env=env, cwd=home)
        cluster = ZkCluster(members=members, processes=processes)
        modes: dict[int, str] = {}

        def ensemble_ready() -> bool:
            for index, member in enumerate(members):
                reply = four_letter_word(member.client_port, "srvr")
                modes[index] = _srvr_field(reply, "Mode") or ""
                full_version = _srvr_field(reply, "Zookeeper version") or "unknown"
                cluster.version = full_version.split(",")[0].split("-")[0]
            roles = list(modes.values())
            return roles.count("leader") == 1 and roles.count("follower") == size - 1

        wait_until(
            ensemble_ready,
            timeout=start_timeout,
            what="a ZooKeeper leader and followers",
            processes=processes,
        )
        cluster.leader = next(i for i, mode in modes.items() if mode == "leader")
        cluster.notes.append("fsync on (ZooKeeper default forceSync=yes: txn log fsynced before ack)")
        yield cluster
    finally:
        processes.close()


# --------------------------------------------------------------------------- clients and measurements


def _clients(cluster: ZkCluster, count: int, settings: BenchSettings) -> list[Any]:
    """``count`` kazoo clients (own session and TCP connection each), round-robin over members."""
    from kazoo.client import KazooClient

    clients: list[Any] = []
    try:
        for host, port in cluster.spread_endpoints(count):
            client = KazooClient(hosts=f"{host}:{port}", timeout=settings.op_timeout)
            client.start(timeout=settings.op_timeout)
            clients.append(client)
    except BaseException:
        _close_all(clients)
        raise
    return clients


def _close_all(clients: list[Any]) -> None:
    for client in clients:
        try:
            client.stop()
            client.close()
        except Exception:  # noqa: BLE001 - best effort at teardown; the ensemble is killed next
            pass


def _prepared_lock(client: Any, path: str, identifier: str, timeout: float) -> Any:
    """A kazoo Lock whose parent znode exists (kazoo creates it on first acquire)."""
    lock = client.Lock(path, identifier)
    lock.acquire(timeout=timeout)
    lock.release()
    return lock


class ZkPhases(Phases):
    """The measurements on ``settings.clients`` kazoo clients, round-robin over the members from the leader."""

    def __init__(self, cluster: ZkCluster, settings: BenchSettings) -> None:
        super().__init__(settings, cluster.processes.cpu_seconds)
        self.run = f"{ROOT}/{uuid.uuid4().hex[:8]}"
        self.clients = _clients(cluster, settings.clients, settings)
        self.locks: dict[tuple[str, int], Any] = {}

    def put_ops(self, prefix: str) -> list[Callable[[int], None]]:
        parent = f"{self.run}/{prefix}"
        self.clients[0].ensure_path(parent)
        return [(lambda i, c=c, n=n: c.create(f"{parent}/c{n}-{i}", b"v")) for n, c in enumerate(self.clients)]

    def lock_op(self, name: str, client: int, check: HolderCheck | None) -> Callable[[int], None]:
        timeout = self.settings.op_timeout
        if (name, client) not in self.locks:
            path = f"{self.run}/lock/{name}"
            self.locks[name, client] = _prepared_lock(self.clients[client], path, f"c{client}", timeout)
        lock = self.locks[name, client]
        return checked_lock_op(lambda: lock.acquire(timeout=timeout), lock.release, client, check)

    def close(self) -> None:
        _close_all(self.clients)


def phases(cluster: ZkCluster, settings: BenchSettings) -> ZkPhases:
    return ZkPhases(cluster, settings)


def measure_all(cluster: ZkCluster, settings: BenchSettings) -> dict[str, Any]:
    """Warm-up, then create latency/throughput and the three lock measurements."""
    measured = ZkPhases(cluster, settings)
    try:
        return measured.measure_all()
    finally:
        measured.close()


def measure(cluster: ZkCluster, settings: BenchSettings | None = None) -> dict[str, Any]:
    """All ZooKeeper baseline numbers as a plain dict (``headline`` holds the ratio inputs)."""
    settings = settings or BenchSettings()
    started = time.monotonic()
    results = measure_all(cluster, settings)
    return {
        "system": NAME,
        "server_version": cluster.version,
        "client": client_description(),
        "lock_recipe": "kazoo Lock (ephemeral sequential znode + watch predecessor)",
        "put_operation": "create of a fresh persistent znode",
        "cluster": {"members": len(cluster.members), "leader": cluster.leader, "notes": cluster.notes},
        "placement": PLACEMENT,
        **results,
        "headline": headline(results),
        "measure_seconds": time.monotonic() - started,
    }


__all__ = ["ZkCluster", "available", "four_letter_word", "measure", "zookeeper_cluster"]
