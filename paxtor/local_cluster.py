"""Nodes as OS processes on this host: what the demo, the examples and the tests start.

- `free_base_port`: a base port B with ``B + N`` free for every node number N
  (numbered discovery: ``nodeN`` listens on ``base_port + N``).
- `LocalCluster` / `NodeProcess`: nodes as ``python -m paxtor node N
  --no-shell`` OS processes (temporary data directories, a fresh cookie in
  their environment, JSON logs captured to files), killed by pid, restarted,
  paused with SIGSTOP/SIGCONT, and killed by Linux when this process dies.
- `wait_until` polls with a deadline, for what only another OS process
  knows (its log).

Everything listens on 127.0.0.1 only. `paxtor.testing` adds clusters of
nodes in this OS process and waits on their events.
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess

import paxtor
from paxtor.actors.errors import PaxtorError
from paxtor.paxos.config import numbered_voters

__all__ = [
    "HOST",
    "WAIT",
    "LocalCluster",
    "NodeExited",
    "NodeProcess",
    "free_base_port",
    "wait_until",
]

HOST = "127.0.0.1"
#: An upper bound for anything that should happen "soon" on a healthy cluster.
WAIT = 10.0
#: Ports are drawn from here: below the kernel's ephemeral range, so no
#: outgoing connection takes one between the probe and the node's bind.
PORT_RANGE = (10_000, 30_000)


class NodeExited(PaxtorError, RuntimeError):
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
                fields = " ".join(
                    f"{k}={v}" for k, v in entry.items() if k not in ("event", "level", "timestamp", "exception")
                )
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
