"""etcd 3.4 baseline: a 3-member cluster on loopback and its put/lock numbers.

Server: Debian's ``etcd-server`` (3.4.x), default durability (WAL fsync on
every commit; we never pass ``--unsafe-no-fsync``). Client: gRPC through
``etcd-sdk-python`` (module ``pyetcd``, a maintained python-etcd3 fork whose
generated code works with current grpcio/protobuf; the original ``etcd3``
0.12 package fails to import with protobuf >= 4). Locks follow etcd's official
``clientv3/concurrency`` Mutex recipe (one lease per session, a txn to enqueue,
wait for the deletion of the predecessor key, delete to unlock), the same
algorithm ``etcdctl lock`` and etcd's v3lock service use.

Contended handoffs are capped near 80/s with 8 waiters by etcd itself: the
recipe watches from the revision of its last read, which is already in the
past, and etcd 3.4 serves such "unsynced" watchers from a resync loop that runs
every 100 ms -- so each FIFO cycle of 8 handoffs takes about 100 ms.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
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

NAME = "etcd"
DEBIAN_PACKAGE = "etcd-server"
CLIENT_PACKAGES = ("etcd-sdk-python", "protobuf", "grpcio")
SESSION_TTL_SECONDS = 60  # clientv3/concurrency's default session TTL


def _binary() -> str | None:
    return shutil.which("etcd")


def server_version(binary: str) -> str:
    """``etcd --version``'s first line's version, e.g. ``3.4.23``."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    for line in out.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def client_description() -> str:
    """Which Python client and transport the numbers were measured with."""
    versions = []
    for package in CLIENT_PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    try:
        from google.protobuf.internal import api_implementation

        versions.append(f"protobuf backend {api_implementation.Type()}")
    except ImportError:
        pass
    return "gRPC via " + ", ".join(versions)


def available(install: bool | None = None) -> tuple[bool, str]:
    """Whether an etcd cluster can run here; installs etcd-server if permitted.

    ``install=None`` means: permitted iff ``PAXTOR_BENCH_INSTALL=1``.
    """
    binary = _binary()
    if binary is None:
        if not install_permitted(install):
            return (
                False,
                f"etcd not installed (apt-get install {DEBIAN_PACKAGE}, or set PAXTOR_BENCH_INSTALL=1)",
            )
        ok, message = apt_install(DEBIAN_PACKAGE)
        binary = _binary()
        if not ok or binary is None:
            return False, message
    try:
        import grpc  # noqa: F401
        import pyetcd  # noqa: F401
    except ImportError as exc:
        return False, f"etcd Python client missing ({exc}); pip install etcd-sdk-python protobuf"
    return True, f"etcd {server_version(binary)} ({binary}); client: {client_description()}"


# --------------------------------------------------------------------------- cluster


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"


@dataclass
class EtcdCluster:
    """A running etcd cluster; ``leader`` indexes ``members``."""

    members: list[EtcdMember]
    processes: ProcessSet
    version: str
    leader: int = 0
    notes: list[str] = field(default_factory=list)

    def endpoint(self, index: int) -> tuple[str, int]:
        member = self.members[index % len(self.members)]
        return LOOPBACK, member.client_port

    def spread_endpoints(self, count: int) -> list[tuple[str, int]]:
        """Round-robin over members starting with the leader (like a client balancer)."""
        return [self.endpoint(self.leader + i) for i in range(count)]


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 1.0) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # loopback only
        return json.loads(response.read())


def _member_healthy(member: EtcdMember) -> bool:
    """etcd's /health: true once the member has a leader and can serve a quorum read."""
    return _http_json(member.client_url + "/health").get("health") == "true"


def _leader_index(members: list[EtcdMember]) -> int | None:
    """Index of the member whose status says it is the leader (gateway JSON)."""
    for index, member in enumerate(members):
        status = _http_json(member.client_url + "/v3/maintenance/status", {})
        if status.get("leader") and status.get("leader") == status.get("header", {}).get("member_id"):
            return index
    return None


def _member_argv(
    binary: str, member: EtcdMember, members: list[EtcdMember], data_dir: str, token: str
) -> list[str]:
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    return [
        binary,
        f"--name={member.name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={member.client_url}",
        f"--advertise-client-urls={member.client_url}",
        f"--listen-peer-urls={member.peer_url}",
        f"--initial-advertise-peer-urls={member.peer_url}",
        f"--initial-cluster={initial}",
        f"--initial-cluster-token={token}",
        "--initial-cluster-state=new",
        "--logger=zap",
        "--log-level=warn",
    ]


@contextmanager
def etcd_cluster(size: int = 3, start_timeout: float = 30.0) -> Iterator[EtcdCluster]:
    """Start a ``size``-member etcd cluster on 127.0.0.1 (free ports, temp dirs).

    Yields once every member reports healthy and a leader is known; on exit
    (also on exceptions and Ctrl-C) kills each process by pid and removes the
    data directories.
    """
    binary = _binary()
    if binary is None:
        raise RuntimeError("etcd is not installed; call available(install=True) first")
    processes = new_process_set("paxtor-bench-etcd-")
    try:
        ports = free_ports(2 * size)
        members = [EtcdMember(f"m{i}", ports[2 * i], ports[2 * i + 1]) for i in range(size)]
        token = f"paxtor-bench-{uuid.uuid4().hex[:12]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        for member in members:
            data_dir = str(processes.root / member.name)
            processes.start(member.name, _member_argv(binary, member, members, data_dir, token), env=env)
        cluster = EtcdCluster(members=members, processes=processes, version=server_version(binary))
        wait_until(
            lambda: all(_member_healthy(m) for m in members),
            timeout=start_timeout,
            what="all etcd members healthy",
            processes=processes,
        )
        leader: list[int] = []

        def leader_known() -> bool:
            index = _leader_index(members)
            if index is not None:
                leader.append(index)
            return index is not None

        wait_until(leader_known, timeout=start_timeout, what="an etcd leader", processes=processes)
        cluster.leader = leader[-1]
        cluster.notes.append("fsync on (etcd default: WAL fsync per commit; no --unsafe-no-fsync)")
        yield cluster
    finally:
        processes.close()


# --------------------------------------------------------------------------- client


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


class EtcdSession:
    """One client connection with one lease, like ``concurrency.NewSession``.

    The lease TTL (60 s) outlives every measurement, so no keep-alive traffic
    falls inside a measurement window (Go's session would send one every 20 s);
    `keep_alive` renews it between measurements.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        import pyetcd

        self.timeout = timeout
        # A local subchannel pool gives each session its own TCP connection.
        self.client = pyetcd.client(
            host, port, timeout=timeout, grpc_options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.lease_id: int = self.client.lease(SESSION_TTL_SECONDS).id

    def keep_alive(self) -> None:
        """Renew the lease to its full TTL (a run of interleaved rounds outlasts one TTL)."""
        for _ in self.client.refresh_lease(self.lease_id):
            pass

    def put(self, key: bytes, value: bytes) -> None:
        from pyetcd import etcdrpc

        self.client.kvstub.Put(etcdrpc.PutRequest(key=key, value=value), self.timeout)

    def close(self) -> None:
        try:
            self.client.revoke_lease(self.lease_id)
        finally:
            self.client.close()


class EtcdMutex:
    """Port of etcd's ``clientv3/concurrency.Mutex`` (FIFO by create revision)."""

    def __init__(self, session: EtcdSession, name: str) -> None:
        self.session = session
        self.prefix = (name + "/").encode()
        self.key = self.prefix + f"{session.lease_id:x}".encode()
        self.rev = 0

    def lock(self) -> None:
        from pyetcd import etcdrpc

        kv = self.session.client.kvstub
        timeout = self.session.timeout
        get_owner = etcdrpc.RequestOp(
            request_range=etcdrpc.RangeRequest(
                key=self.prefix,
                range_end=_prefix_end(self.prefix),
                sort_order=etcdrpc.RangeRequest.ASCEND,
                sort_target=etcdrpc.RangeRequest.CREATE,
                limit=1,
            )
        )
        txn = etcdrpc.TxnRequest(
            compare=[
                etcdrpc.Compare(
                    result=etcdrpc.Compare.EQUAL,
                    target=etcdrpc.Compare.CREATE,
                    key=self.key,
                    create_revision=0,
                )
            ],
            success=[
                etcdrpc.RequestOp(
                    request_put=etcdrpc.PutRequest(key=self.key, value=b"", lease=self.session.lease_id)
                ),
                get_owner,
            ],
            failure=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=self.key)), get_owner],
        )
        resp = kv.Txn(txn, timeout)
        self.rev = resp.header.revision
        if not resp.succeeded:
            self.rev = resp.responses[0].response_range.kvs[0].create_revision
        owner = resp.responses[1].response_range.kvs
        if not owner or owner[0].create_revision == self.rev:
            return
        try:
            self._wait_deletes(self.rev - 1)
            # the recipe's check that our session (and so our key) still exists
            if not kv.Range(etcdrpc.RangeRequest(key=self.key), timeout).kvs:
                raise RuntimeError("etcd session expired while waiting for the lock")
        except BaseException:
            self.unlock()
            raise

    def unlock(self) -> None:
        from pyetcd import etcdrpc

        self.session.client.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(key=self.key), self.session.timeout)

    def _wait_deletes(self, max_create_rev: int) -> None:
        """Until no key under the prefix was created at or before ``max_create_rev``."""
        from pyetcd import etcdrpc

        kv = self.session.client.kvstub
        deadline = time.monotonic() + self.session.timeout
        while True:
            resp = kv.Range(
                etcdrpc.RangeRequest(
                    key=self.prefix,
                    range_end=_prefix_end(self.prefix),
                    sort_order=etcdrpc.RangeRequest.DESCEND,
                    sort_target=etcdrpc.RangeRequest.CREATE,
                    limit=1,
                    max_create_revision=max_create_rev,
                ),
                self.session.timeout,
            )
            if not resp.kvs:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("etcd lock wait timed out")
            self._wait_delete(resp.kvs[0].key, resp.header.revision, remaining)

    def _wait_delete(self, key: bytes, revision: int, timeout: float) -> None:
        """Watch ``key`` from ``revision`` until a DELETE event arrives."""
        from pyetcd import events

        deleted: queue.SimpleQueue[object] = queue.SimpleQueue()

        def on_response(response: object) -> None:
            if isinstance(response, Exception):
                deleted.put(response)
            elif any(isinstance(e, events.DeleteEvent) for e in getattr(response, "events", ())):
                deleted.put(True)

        client = self.session.client
        watch_id = client.add_watch_callback(key, on_response, start_revision=revision)
        try:
            outcome = deleted.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no delete of {key!r} within {timeout:.1f}s") from None
        finally:
            client.cancel_watch(watch_id)
        if isinstance(outcome, Exception):
            raise outcome


# --------------------------------------------------------------------------- measurements


def _sessions(cluster: EtcdCluster, count: int, settings: BenchSettings) -> list[EtcdSession]:
    sessions: list[EtcdSession] = []
    try:
        for host, port in cluster.spread_endpoints(count):
            sessions.append(EtcdSession(host, port, settings.op_timeout))
    except BaseException:
        _close_all(sessions)
        raise
    return sessions


def _close_all(sessions: list[EtcdSession]) -> None:
    for session in sessions:
        try:
            session.close()
        except Exception:  # noqa: BLE001 - best effort at teardown; the cluster is killed next
            pass


class EtcdPhases(Phases):
    """The measurements on ``settings.clients`` sessions, round-robin over the members from the leader."""

    def __init__(self, cluster: EtcdCluster, settings: BenchSettings) -> None:
        super().__init__(settings, cluster.processes.cpu_seconds)
        self.run = f"/bench/{uuid.uuid4().hex[:8]}"
        self.sessions = _sessions(cluster, settings.clients, settings)

    def put_ops(self, prefix: str) -> list[Callable[[int], None]]:
        return [
            (lambda i, s=s, n=n: s.put(f"{self.run}/{prefix}/c{n}/{i}".encode(), b"v"))
            for n, s in enumerate(self.sessions)
        ]

    def lock_op(self, name: str, client: int, check: HolderCheck | None) -> Callable[[int], None]:
        mutex = EtcdMutex(self.sessions[client], f"{self.run}/lock/{name}")
        return checked_lock_op(mutex.lock, mutex.unlock, client, check)

    def refresh(self) -> None:
        for session in self.sessions:
            session.keep_alive()

    def close(self) -> None:
        _close_all(self.sessions)


def phases(cluster: EtcdCluster, settings: BenchSettings) -> EtcdPhases:
    return EtcdPhases(cluster, settings)


def measure_all(cluster: EtcdCluster, settings: BenchSettings) -> dict[str, Any]:
    """Warm-up, then put latency/throughput and the three lock measurements."""
    measured = EtcdPhases(cluster, settings)
    try:
        return measured.measure_all()
    finally:
        measured.close()


def measure(cluster: EtcdCluster, settings: BenchSettings | None = None) -> dict[str, Any]:
    """All etcd baseline numbers as a plain dict (``headline`` holds the ratio inputs)."""
    settings = settings or BenchSettings()
    started = time.monotonic()
    results = measure_all(cluster, settings)
    return {
        "system": NAME,
        "server_version": cluster.version,
        "client": client_description(),
        "lock_recipe": "clientv3/concurrency Mutex (lease session + txn + watch predecessor delete)",
        "put_operation": "Put of a fresh key",
        "cluster": {"members": len(cluster.members), "leader": cluster.leader, "notes": cluster.notes},
        "placement": PLACEMENT,
        **results,
        "headline": headline(results),
        "measure_seconds": time.monotonic() - started,
    }


__all__ = ["EtcdCluster", "EtcdMutex", "EtcdSession", "available", "etcd_cluster", "measure"]
