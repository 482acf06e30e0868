"""A cluster of voter and client-node OS processes, and this process as the console.

Built on `paxtor.testing.LocalCluster` (fresh cookie, free ports, one temporary
directory, every child killed by pid at the end) with nodes started as
`tests.chaos.node_main` so each carries a `FaultInjector` and a slow disk.
Voters are ``node1..nodeN``, client nodes ``node<N+1>..``; each node has its
own loopback address (``hosts=``, `Addresses`) so iptables rules can cut
node pairs; the console (this process, ``console``) has one too and is never
cut off: it is the control channel. Faults on links are applied by remote
spawn of `tests.chaos.agent.apply_faults` in the node's own process; kill -9,
restart, SIGSTOP and SIGCONT act on the pid; a node may run under
libfaketime (`ClockSkew`), set at its start and kept across restarts.
"""

from __future__ import annotations

import json
import os
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
from tests.chaos import agent, clocks

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
    tombstone_ttl: float = 10.0  # short: runs collect the tombstones of idle lock keys

    @property
    def silence(self) -> float:
        """How long a node must be silent before its keys may be released."""
        return self.lease * (1 + self.max_drift) ** 2 + self.margin

    def paxos(self) -> dict[str, Any]:
        return {
            "lease": self.lease, "margin": self.margin, "max_drift": self.max_drift,
            "tombstone_ttl": self.tombstone_ttl,
        }


@dataclass(frozen=True)
class ClockSkew:
    """A node's clock under libfaketime: `rate` x real, `offset` s, monotonic clock faked or not."""

    rate: float
    offset: float
    fake_monotonic: bool

    def __str__(self) -> str:
        return (f"faketime x{self.rate:.3f} {self.offset:+.0f} s "
                f"({'wall and monotonic' if self.fake_monotonic else 'wall only: FAKETIME_DONT_FAKE_MONOTONIC=1'})")


@dataclass(frozen=True)
class Addresses:
    """One loopback address per node of a run: 127.a.b.(10+N) for nodeN, 127.a.b.2 for the
    console; a.b from this process's pid, so concurrent runs never share an address."""

    prefix: str

    @classmethod
    def for_this_process(cls) -> Addresses:
        pid = os.getpid()
        return cls(f"127.{(pid >> 8) & 255}.{pid & 255}")

    @property
    def console(self) -> str:
        return f"{self.prefix}.2"

    def of(self, name: str) -> str:
        if name == CLIENT_NAME:
            return self.console
        return f"{self.prefix}.{10 + int(name[4:])}"


@dataclass
class ChaosCluster:
    """Voters node1..nodeN and `clients` client nodes as OS processes (durable), this
    process as the console; `clock_skews` puts some nodes (by number) under libfaketime."""

    size: int = 3
    seed: int = 0
    timing: Timing = field(default_factory=Timing)
    clients: int = 1
    clock_skews: dict[int, ClockSkew] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.local = LocalCluster(self.size, pythonpath=[REPO_ROOT], prefix="paxtor-chaos-",
                                  spare=self.clients + 1)  # fmt: skip
        self.addresses = Addresses.for_this_process()
        self.stopped: set[str] = set()  # SIGSTOPped nodes
        self._tag = 0

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def voters(self) -> list[str]:
        return self.local.voters

    @property
    def client_nodes(self) -> list[str]:
        return [f"node{self.size + k}" for k in range(1, self.clients + 1)]

    @property
    def nodes(self) -> list[str]:
        """Every node the nemesis may fault: the voters and the client nodes (not the console)."""
        return [*self.voters, *self.client_nodes]

    def hosts(self) -> dict[int, str]:
        return {int(name[4:]): self.addresses.of(name) for name in self.nodes}

    @property
    def workdir(self) -> Path:
        return self.local.workdir

    def argv(self, number: int) -> list[str]:
        settings = {
            "cluster_size": self.size, "base_port": self.local.base_port, "seed": self.seed,
            "data_dir": str(self.local.workdir / "data"), "paxos": self.timing.paxos(),
            "heartbeat_interval": self.timing.heartbeat_interval,
            "heartbeat_timeout": self.timing.heartbeat_timeout, "reconnect_max": self.timing.reconnect_max,
            "handshake_timeout": self.timing.handshake_timeout, "hosts": self.hosts(),
            "voter": number <= self.size,
        }  # fmt: skip
        argv = [sys.executable, "-m", "tests.chaos.node_main", str(number), json.dumps(settings)]
        skew = self.clock_skews.get(number)
        if skew is not None:  # `env` execs python under libfaketime: the pid stays the node's
            env = clocks.faketime_env(skew.rate, skew.offset, skew.fake_monotonic)
            argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
        return argv

    def start(self, timeout: float = 30.0) -> Any:
        """Start every voter and client node, join as the console, wait for a quorum lease here."""
        for number in range(1, self.size + self.clients + 1):
            self.local.start(number, self.argv(number))
        node = self.local.join(
            CLIENT_NAME, heartbeat_interval=self.timing.heartbeat_interval,
            heartbeat_timeout=self.timing.heartbeat_timeout, handshake_timeout=self.timing.handshake_timeout,
            reconnect_max=self.timing.reconnect_max, paxos=self.timing.paxos(),
            host=self.addresses.console, hosts=self.hosts(),
            seeds=[f"{self.addresses.of(c)}:{self.local.base_port + int(c[4:])}" for c in self.client_nodes],
        )  # fmt: skip
        node.run(self._wait_connected, timeout)
        return node

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while set(self.nodes) - set(connected_nodes()):
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
        """Apply link fault `ops` (and ("fsync_delay", s)) inside each of `nodes`' OS processes (by remote spawn of
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
