"""Clusters for tests and examples: one way to start Paxtor nodes on this host.

- `free_base_port`: a base port B with ``B + N`` free for every node number N
  (numbered discovery: ``nodeN`` listens on ``base_port + N``).
- `Cluster` / `in_process_cluster`: ``node1..nodeN`` as `paxtor.start_node`
  nodes in this OS process, memory durability and a short lease and
  heartbeat (a dead node is noticed in about a second); all stopped at exit.
  `nodes_in_this_process` is the same with durable nodes and the default
  timings, as the examples use it.
- `LocalCluster` / `NodeProcess`: nodes as ``python -m paxtor node N
  --no-shell`` OS processes (temporary data directories, a fresh cookie in
  their environment, JSON logs captured to files), killed by pid, restarted,
  paused with SIGSTOP/SIGCONT, and killed by Linux when this process dies.
- Wait helpers (`wait_for_quorum`, `wait_for_nodes`, `wait_node_up`,
  `wait_node_down`) that block on the node's own events; `wait_until` polls
  with a deadline, for what only another OS process knows.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import structlog

import paxtor
from paxtor import paxos
from paxtor.actors.faults import FaultInjector
from paxtor.actors.ids import Pid
from paxtor.actors.messages import NoProc
from paxtor.actors.primitives import send
from paxtor.paxos.config import numbered_voters

__all__ = [
    "DictVia",
    "TEST_DISTRIBUTION",
    "TEST_LEASE",
    "WAIT",
    "Cluster",
    "LocalCluster",
    "NodeExited",
    "NodeProcess",
    "free_base_port",
    "in_process_cluster",
    "nodes_in_this_process",
    "start_test_node",
    "wait_for_nodes",
    "wait_for_quorum",
    "wait_node_down",
    "wait_node_up",
    "wait_until",
]

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
#: An upper bound for anything that should happen "soon" on a healthy cluster.
WAIT = 10.0
#: Fast failure detection: a silent peer is down after a second.
TEST_DISTRIBUTION: dict[str, Any] = dict(
    heartbeat_interval=0.1, heartbeat_timeout=1.0, handshake_timeout=1.0, reconnect_max=0.3
)
#: A short lease (`paxtor.paxos.PaxosConfig`): silence threshold about 0.75 s.
TEST_LEASE: dict[str, Any] = dict(
    lease=0.5, margin=0.15, max_drift=0.05, heartbeat_interval=0.1, release_stagger=0.1, attempt_timeout=0.5
)
#: Ports are drawn from here: below the kernel's ephemeral range, so no
#: outgoing connection takes one between the probe and the node's bind.
PORT_RANGE = (10_000, 30_000)


class NodeExited(RuntimeError):
    """A node process of a `LocalCluster` exited when it should be running."""


# -- ports --------------------------------------------------------------------------------------


def free_base_port(numbers: Iterable[int] = range(1, 4), attempts: int = 200, host: str = HOST) -> int:
    """A base port B such that ``B + N`` can be bound now for every N in `numbers`.

    A probe, not a reservation: a node that then loses the race fails to
    bind with EADDRINUSE (the range avoids ephemeral ports to make that rare).
    """
    wanted = list(numbers)
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(*PORT_RANGE)
        if all(_port_free(host, base + number) for number in wanted):
            return base
    raise OSError(errno.EADDRINUSE, f"no base port with {len(wanted)} free ports on {host} after {attempts} tries")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# -- waiting ------------------------------------------------------------------------------------


def wait_for_quorum(nodes: Iterable[Any], timeout: float = WAIT) -> None:
    """Block until every node of `nodes` holds a lease from a quorum of voters
    (`paxos.NoQuorum` on timeout)."""
    for node in nodes:
        node.run(paxos.wait_for_quorum, timeout)


def wait_for_nodes(node: Any, names: Iterable[str], timeout: float = WAIT) -> None:
    """Block until `node` is connected to every node of `names`; TimeoutError otherwise."""
    names = list(names)
    dist = getattr(node, "dist", node)
    if not dist.wait_for_nodes(names, timeout):
        raise TimeoutError(f"{dist.name} is not connected to {sorted(set(names) - set(dist.nodes()))} after {timeout} s")


def wait_node_up(node: Any, name: str, timeout: float = WAIT) -> None:
    """Block until `node` is connected to `name`; TimeoutError otherwise."""
    wait_for_nodes(node, [name], timeout)


def wait_node_down(node: Any, name: str, timeout: float = WAIT) -> None:
    """Block until `node` has seen `name` go down (woken by its peer events); TimeoutError otherwise."""
    dist = getattr(node, "dist", node)
    if not dist.peers.wait_until(lambda: name not in dist.peers.up, timeout):
        raise TimeoutError(f"{dist.name} still sees {name} up after {timeout} s")


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, step: float = 0.05) -> Any:
    """Poll `condition` until it returns something true, and return that.

    Only for what nothing here can be told of (another OS process's log or
    state): everything else has an event to wait on. TimeoutError after `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not reached in {timeout} s")
        gevent.sleep(step)


# -- nodes in this OS process -------------------------------------------------------------------


def start_test_node(
    number: int,
    *,
    base_port: int,
    cluster_size: int = 3,
    cookie: str | None = None,
    voter: bool | None = None,
    durability: str = "memory",
    data_dir: str | Path | None = None,
    fast: bool = True,
    paxos: dict[str, Any] | None = None,
    **distribution: Any,
) -> paxtor.Node:
    """``node<number>`` by `paxtor.start_node`, with the tests' settings.

    `fast`: `TEST_LEASE` and `TEST_DISTRIBUTION` under the overrides
    (`paxos`, `distribution`); else the defaults. `voter` defaults to
    whether `number` is one of the voters. `cookie` None: ``$PAXTOR_COOKIE``.
    """
    if voter is None:
        voter = number <= cluster_size
    settings = {**(TEST_LEASE if fast else {}), **(paxos or {})}
    options = {**(TEST_DISTRIBUTION if fast else {}), **distribution}
    return paxtor.start_node(
        number, cluster_size=cluster_size, base_port=base_port, cookie=cookie, data_dir=data_dir,
        durability=durability, voter=voter, paxos=settings, **options,
    )  # fmt: skip


class Cluster:
    """Numbered nodes of one cluster, started in this OS process by `paxtor.start_node`.

    Memory durability and the short `TEST_LEASE` unless told otherwise; one
    shared `faults` injector (partitions) if given. Ports ``base + 1 ..
    base + cluster_size + spare`` were free at creation (spare numbers are
    for client nodes). A durable node keeps its state under `data_dir`
    (default: a temporary directory removed by `stop_all`).
    """

    def __init__(
        self,
        cluster_size: int = 3,
        *,
        cookie: str | None = None,
        data_dir: str | Path | None = None,
        durability: str = "memory",
        fast: bool = True,
        faults: FaultInjector | None = None,
        distribution: dict[str, Any] | None = None,
        spare: int = 3,
        **paxos: Any,
    ) -> None:
        self.cluster_size = cluster_size
        self.base = free_base_port(range(1, cluster_size + spare + 1))
        self.cookie = cookie or secrets.token_hex(16)
        self.durability = durability
        self.fast = fast
        self.faults = faults
        self.distribution: dict[str, Any] = dict(distribution or {})
        self.paxos: dict[str, Any] = dict(paxos)
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.nodes: dict[str, paxtor.Node] = {}

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()

    @property
    def voters(self) -> list[str]:
        return list(numbered_voters(self.cluster_size))

    def configure(self, distribution: dict[str, Any] | None = None, **paxos: Any) -> Cluster:
        """Change the settings of the nodes started from now on."""
        self.distribution.update(distribution or {})
        self.paxos.update(paxos)
        return self

    def start(self, number: int, *, voter: bool | None = None, durability: str | None = None, **paxos: Any) -> paxtor.Node:
        """Start ``node<number>`` (a voter iff number <= cluster_size, unless `voter` says)."""
        durability = durability or self.durability
        options = dict(self.distribution)
        if self.faults is not None:
            options["faults"] = self.faults
        node = start_test_node(
            number, base_port=self.base, cluster_size=self.cluster_size, cookie=self.cookie, voter=voter,
            durability=durability, data_dir=self._data_dir() if durability == "fsync" else None,
            fast=self.fast, paxos={**self.paxos, **paxos}, **options,
        )  # fmt: skip
        self.nodes[node.name] = node
        return node

    def start_all(self, **kwargs: Any) -> list[paxtor.Node]:
        """Start every voter (not waiting for them: see `wait_ready`)."""
        return [self.start(n, **kwargs) for n in range(1, self.cluster_size + 1)]

    def wait_ready(self, timeout: float = WAIT) -> None:
        """Block until the running nodes are meshed and each holds a quorum lease."""
        names = list(self.nodes)
        for node in self.nodes.values():
            wait_for_nodes(node, names, timeout)
        wait_for_quorum(self.nodes.values(), timeout)

    def __getitem__(self, name: str) -> paxtor.Node:
        return self.nodes[name]

    def stop(self, name: str) -> None:
        self.nodes.pop(name).stop()

    def stop_all(self) -> None:
        """Stop every node (the last started first; one failing to stop does not keep
        the others running) and remove an own data directory."""
        try:
            for name in reversed(list(self.nodes)):
                try:
                    self.stop(name)
                except Exception:  # noqa: BLE001 - logged; the rest must still stop
                    log.exception("test_node_stop_failed", node=name)
        finally:
            if self._own_dir and self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.data_dir = None

    def _data_dir(self) -> Path:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="paxtor-test-"))
        return self.data_dir


@contextmanager
def in_process_cluster(cluster_size: int = 3, *, wait: float = WAIT, **options: Any) -> Iterator[Cluster]:
    """A started `Cluster` (every voter up, meshed and holding a lease); stopped at exit.

    The main greenlet runs on node1 (the node started first).
    """
    cluster = Cluster(cluster_size, **options)
    try:
        cluster.start_all()
        cluster.wait_ready(wait)
        yield cluster
    finally:
        cluster.stop_all()


@contextmanager
def nodes_in_this_process(size: int = 3, *, wait: float = 30.0) -> Iterator[list[Any]]:
    """``node1..node<size>`` in this OS process, durable (in a temporary directory),
    default timings, on free ports with a fresh cookie, each holding its lease;
    stopped and removed at the end. The main greenlet runs on node1."""
    with in_process_cluster(size, wait=wait, durability="fsync", fast=False, spare=0) as cluster:
        yield list(cluster.nodes.values())


# -- nodes as OS processes ----------------------------------------------------------------------


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that has Linux SIGKILL the child when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``), so nodes never outlive a test run or demo
    that was itself killed -9; None elsewhere (then only `close` cleans up)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up now: the child only calls it
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


_DIE_WITH_PARENT = _parent_death_signal()


class NodeProcess:
    """One node in its own OS process, its output (JSON log lines) captured to `log_path`.

    `shell=True` gives it text pipes for stdin and stdout (the interactive
    shell); the log then holds stderr only. gevent.subprocess: waiting on it
    never blocks the hub.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, *, shell: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.shell = shell
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = gevent.subprocess.Popen(
            argv, cwd=log_path.parent, env=env,
            stdin=gevent.subprocess.PIPE if shell else gevent.subprocess.DEVNULL,
            stdout=gevent.subprocess.PIPE if shell else self._log, stderr=self._log,
            text=shell, preexec_fn=_DIE_WITH_PARENT,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<NodeProcess {self.name} pid={self.pid} {'alive' if self.alive() else 'exited'}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the node freezes (its peers see silence, TCP stays open)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float | None = WAIT) -> int:
        """Its exit status (negative: killed by that signal)."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL by pid (no goodbye to its peers), reap it and close its log."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process must run to die
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def terminate(self) -> None:
        """SIGTERM (and SIGCONT, so a paused node can act on it): a clean stop, not waited for."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then `kill` if it still runs after `grace` seconds."""
        self.terminate()
        self.reap(grace)

    def reap(self, grace: float) -> None:
        """Wait up to `grace` seconds for it to exit, then `kill` it."""
        if self.alive():
            try:
                self.proc.wait(timeout=grace)
            except gevent.subprocess.TimeoutExpired:
                pass
        self.kill()

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The structured log lines so far (only those named `event`, if given)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        found = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (event is None or entry.get("event") == event):
                found.append(entry)
        return found

    def peers_up(self) -> set[str]:
        """The peers its log says are connected now (``node_up`` not followed by ``node_down``)."""
        up: set[str] = set()
        for event in self.events():
            if event.get("event") == "node_up":
                up.add(event["peer"])
            elif event.get("event") == "node_down":
                up.discard(event["peer"])
        return up

    def wait_for_log(self, match: str | Callable[[dict[str, Any]], Any], timeout: float = WAIT) -> dict[str, Any]:
        """The first log line that `match` accepts (or named `match`), polled with a
        deadline: only the node's own log can tell. TimeoutError (with the log's tail)."""
        accepts = (lambda e: e.get("event") == match) if isinstance(match, str) else match
        try:
            return wait_until(lambda: next((e for e in self.events() if accepts(e)), None), timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: log event not seen in {self.log_path}:\n{self.tail()}") from None

    def wait_started(self, timeout: float = WAIT) -> dict[str, Any]:
        """Block until the node logged ``node_started`` (its services run)."""
        return self.wait_for_log("node_started", timeout)

    def tail(self, lines: int = 6, width: int = 200) -> str:
        """The last log lines, one short line each (JSON lines as ``level event key=value``)."""
        try:
            raw = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        shown = []
        for line in raw:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                fields = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("event", "level", "timestamp", "exception"))
                line = f"{entry.get('level', '?')} {entry.get('event', '?')} {fields}"
            shown.append(line if len(line) <= width else line[: width - 3] + "...")
        return "\n".join(shown)


class LocalCluster:
    """Voters ``node1..nodeN`` as ``python -m paxtor node N --no-shell`` OS processes.

    Each node gets the same fresh cookie (in its environment, never on a
    command line), a data directory under `workdir` (default: a temporary
    directory, removed by `close`), the port ``base_port + N``, JSON logs in
    ``workdir/nodeN.log`` (``nodeN.2.log`` after a restart, ...) and `flags`.
    This process may `join` as a node too. `close` kills every process it
    started, by pid; use it as a context manager so that happens on any exit.
    `pythonpath`: directories the nodes must import from (code that runs on
    them must be importable there, as in Erlang).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        flags: Iterable[str] = (),
        pythonpath: Iterable[str | Path] = (),
        workdir: str | Path | None = None,
        prefix: str = "paxtor-",
        spare: int = 3,
    ) -> None:
        self.size = size
        self.flags = list(flags)
        self.cookie = secrets.token_hex(16)
        self.base_port = free_base_port(range(1, size + spare + 1))
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix)) if workdir is None else Path(workdir)
        self.processes: dict[str, NodeProcess] = {}
        self._started: list[NodeProcess] = []
        self._starts = itertools.count(1)
        self.node: Any = None
        # the nodes import this very paxtor (run from a temp dir, they might not find a checkout)
        extra = [*(str(Path(p).resolve()) for p in pythonpath), str(Path(paxtor.__file__).resolve().parents[1])]
        path = os.pathsep.join(filter(None, [*extra, os.environ.get("PYTHONPATH", "")]))
        self.env = dict(os.environ, PAXTOR_COOKIE=self.cookie, PYTHONPATH=path, PYTHONUNBUFFERED="1")

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def voters(self) -> list[str]:
        return list(numbered_voters(self.size))

    def node_argv(self, number: int, *extra: str, shell: bool = False) -> list[str]:
        """The command line of node `number`: ``python -m paxtor node N --no-shell ...``."""
        return [
            sys.executable, "-m", "paxtor", "node", str(number), *(() if shell else ("--no-shell",)),
            "--cluster-size", str(self.size), "--base-port", str(self.base_port),
            "--data-dir", str(self.workdir / "data"), "--log-json", *self.flags, *extra,
        ]  # fmt: skip

    def start(
        self, number: int, argv: list[str] | None = None, *, extra: Iterable[str] = (), shell: bool = False
    ) -> NodeProcess:
        """Start node `number`: ``python -m paxtor node`` (plus `extra` flags), or `argv`."""
        return self._launch(f"node{number}", argv or self.node_argv(number, *extra, shell=shell), shell)

    def start_client(self, name: str, *extra: str) -> NodeProcess:
        """Start client node `name` (``python -m paxtor node NAME --client``; memory
        durability, so no data directory) with the cluster's flags plus `extra`."""
        argv = [
            sys.executable, "-m", "paxtor", "node", name, "--client", "--no-shell",
            "--cluster-size", str(self.size), "--base-port", str(self.base_port), "--log-json", *self.flags, *extra,
        ]  # fmt: skip
        return self._launch(name, argv, False)

    def _launch(self, name: str, argv: list[str], shell: bool) -> NodeProcess:
        runs = sum(1 for p in self._started if p.name == name)
        log_path = self.workdir / (f"{name}.log" if runs == 0 else f"{name}.{runs + 1}.log")
        proc = NodeProcess(name, argv, self.env, log_path, shell=shell)
        self.processes[name] = proc
        self._started.append(proc)
        return proc

    def start_all(self) -> list[NodeProcess]:
        return [self.start(n) for n in range(1, self.size + 1)]

    def restart(self, name: str) -> NodeProcess:
        """Kill node `name` (if running) and start it again with the same command line."""
        old = self.processes[name]
        old.kill()
        return self._launch(name, old.argv, old.shell)

    def restart_exited(self, names: Iterable[str] | None = None) -> list[NodeProcess]:
        """Start again each node of `names` (default: the voters) whose process has exited."""
        wanted = self.voters if names is None else list(names)
        return [self.restart(name) for name in wanted if name in self.processes and not self.processes[name].alive()]

    def kill(self, name: str) -> NodeProcess:
        """SIGKILL node `name` by pid."""
        proc = self.processes[name]
        proc.kill()
        return proc

    def pause(self, name: str) -> None:
        self.processes[name].pause()

    def resume(self, name: str) -> None:
        self.processes[name].resume()

    def join(self, name: str | int, *, voter: bool = False, **options: Any) -> paxtor.Node:
        """Start this process's own node, `name` (a client unless `voter`), in this cluster.

        `options` go to `paxtor.start_node` (durability, paxos, timings, ...).
        """
        settings: dict[str, Any] = dict(data_dir=self.workdir / "data", reconnect_max=0.5)
        settings.update(options)
        self.node = paxtor.start_node(
            name, cluster_size=self.size, base_port=self.base_port, cookie=self.cookie, voter=voter, **settings
        )
        return self.node

    def check_running(self) -> None:
        """Raise `NodeExited` if a node process exited other than by `kill` (with its last log lines)."""
        for proc in self.processes.values():
            code = proc.proc.poll()
            if code is not None and code != -signal.SIGKILL:
                raise NodeExited(f"{proc.name} exited with status {code}:\n{proc.tail()}")

    def close(self) -> None:
        """Stop the joined node, stop every process started (by pid), remove an own workdir."""
        try:
            if self.node is not None:
                self.node.stop()
                self.node = None
        finally:
            deadline = time.monotonic() + 2.0  # one grace period for all: they stop in parallel
            for proc in self._started:
                proc.terminate()
            for proc in self._started:
                proc.reap(max(0.0, deadline - time.monotonic()))
            if self._own_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)


class DictVia:
    """The smallest module of the Via protocol (a dict of names), for tests of `Via` itself."""

    def __init__(self) -> None:
        self.names: dict[Any, Pid] = {}

    def register_name(self, key: Any, pid: Pid) -> bool:
        if key in self.names:
            return False
        self.names[key] = pid
        return True

    def unregister_name(self, key: Any) -> None:
        self.names.pop(key, None)

    def whereis_name(self, key: Any) -> Pid | None:
        return self.names.get(key)

    def send(self, key: Any, msg: Any) -> None:
        pid = self.names.get(key)
        if pid is None:
            raise NoProc(key)
        send(pid, msg)
