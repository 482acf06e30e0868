"""A cluster of voter OS processes with their own data dirs, and this process as a client.

Built on `paxtor.testing.LocalCluster` (fresh cookie, free ports, one temporary
directory, every child killed by pid at the end) with voters started as
`tests.chaos.node_main` so each carries a `FaultInjector`. Faults on links
are applied by remote spawn of `tests.chaos.agent.apply_faults` in the node's
own process; kill -9, restart, SIGSTOP and SIGCONT act on the pid.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent

import paxtor
from paxtor.actors import ReceiveTimeout, receive, self_pid, spawn
from paxtor.actors.distribution import nodes as connected_nodes
from paxtor.testing import LocalCluster, NodeProcess
from tests.chaos import agent

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_NAME = "console"


@dataclass(frozen=True)
class Timing:
    """The cluster's timing: short leases so faults and recovery fit in seconds."""

    lease: float = 1.5
    margin: float = 0.3
    max_drift: float = 0.05
    heartbeat_interval: float = 0.25
    heartbeat_timeout: float = 1.0
    reconnect_max: float = 0.3
    handshake_timeout: float = 1.0

    @property
    def silence(self) -> float:
        """How long a node must be silent before its keys may be released."""
        return self.lease * (1 + self.max_drift) ** 2 + self.margin

    def paxos(self) -> dict[str, Any]:
        return {"lease": self.lease, "margin": self.margin, "max_drift": self.max_drift}


@dataclass
class ChaosCluster:
    """Voters node1..nodeN as OS processes (durable), this process as client `console`."""

    size: int = 3
    seed: int = 0
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        self.local = LocalCluster(self.size, pythonpath=[REPO_ROOT], prefix="paxtor-chaos-")
        self.stopped: set[str] = set()  # SIGSTOPped nodes
        self._tag = 0

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def voters(self) -> list[str]:
        return self.local.voters

    @property
    def workdir(self) -> Path:
        return self.local.workdir

    def argv(self, number: int) -> list[str]:
        settings = {
            "cluster_size": self.size, "base_port": self.local.base_port, "seed": self.seed,
            "data_dir": str(self.local.workdir / "data"), "paxos": self.timing.paxos(),
            "heartbeat_interval": self.timing.heartbeat_interval,
            "heartbeat_timeout": self.timing.heartbeat_timeout, "reconnect_max": self.timing.reconnect_max,
            "handshake_timeout": self.timing.handshake_timeout,
        }  # fmt: skip
        return [sys.executable, "-m", "tests.chaos.node_main", str(number), json.dumps(settings)]

    def start(self, timeout: float = 30.0) -> Any:
        """Start every voter, join as the client, wait for a quorum lease here."""
        for number in range(1, self.size + 1):
            self.local.start(number, self.argv(number))
        node = self.local.join(
            CLIENT_NAME, heartbeat_interval=self.timing.heartbeat_interval,
            heartbeat_timeout=self.timing.heartbeat_timeout, handshake_timeout=self.timing.handshake_timeout,
            reconnect_max=self.timing.reconnect_max, paxos=self.timing.paxos(),
        )  # fmt: skip
        node.run(self._wait_connected, timeout)
        return node

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while set(self.voters) - set(connected_nodes()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"voters not connected after {timeout} s: {self.logs_tail()}")
            self.local.check_running()
            gevent.sleep(0.1)
        paxtor.wait_for_quorum(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        for name in list(self.stopped):
            self.cont(name)
        self.local.close()

    def process(self, name: str) -> NodeProcess:
        return self.local.processes[name]

    def pid_of(self, name: str) -> int:
        return self.process(name).pid

    # -- process faults -------------------------------------------------------------------
    def kill9(self, name: str) -> int:
        pid = self.pid_of(name)
        self.process(name).kill()
        self.stopped.discard(name)
        return pid

    def restart(self, name: str) -> int:
        number = int(name[4:])
        return self.local.start(number, self.argv(number)).pid

    def sigstop(self, name: str) -> None:
        self.process(name).pause()
        self.stopped.add(name)

    def cont(self, name: str) -> None:
        proc = self.process(name)
        if proc.alive():
            proc.resume()
        self.stopped.discard(name)

    # -- link faults (run in a process of the client node) --------------------------------
    def apply_links(self, ops: list[tuple[Any, ...]], nodes: list[str], timeout: float = 3.0) -> dict[str, str]:
        """Apply link fault `ops` inside each of `nodes`' OS processes (by remote spawn of
        `agent.apply_faults`); {node: "ok", or why not}. Must run in a process of this node."""
        me = self_pid()
        self._tag += 1
        acks = {name: "no answer" for name in nodes}
        waiting = set()
        for name in nodes:
            try:
                spawn(agent.apply_faults, ops, me, (self._tag, name), node=name)
                waiting.add((self._tag, name))
            except Exception as exc:  # noqa: BLE001 - a node that cannot be reached is reported
                acks[name] = f"spawn failed: {exc}"
        deadline = time.monotonic() + timeout
        while waiting:
            try:
                msg = receive(lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "fault_ack" and m[1] in waiting,
                              timeout=max(0.01, deadline - time.monotonic()))
            except ReceiveTimeout:
                break
            waiting.discard(msg[1])
            acks[msg[1][1]] = msg[2]
        return acks

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The `event` lines of every node log of this run (restarted incarnations included)."""
        found = []
        for path in sorted(self.workdir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("event") == event:
                    found.append(entry)
        return found

    def logs_tail(self) -> str:
        return "\n".join(f"-- {p.name}:\n{p.tail()}" for p in self.local.processes.values())
