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

Spare nodes ``node<N+clients+1>..`` run acceptors that are not voters yet
(``python -m paxtor node M --voter``): the `reconfigure` nemesis starts them
and makes them voters. `current_voters` follows the changes; `nodes` is
every node process started. ``amnesia`` is the negative control of the wipe
nemesis: every node lets a voter whose directory was wiped vote at once
(`node_main.let_wiped_voters_vote`).
"""

from __future__ import annotations

import json
import os
import shutil
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
    resume_change_after: float = 4.0  # short: a change whose coordinator failed is finished within a run

    @property
    def silence(self) -> float:
        """How long a node must be silent before its keys may be released."""
        return self.lease * (1 + self.max_drift) ** 2 + self.margin

    def paxos(self) -> dict[str, Any]:
        return {
            "lease": self.lease, "margin": self.margin, "max_drift": self.max_drift,
            "tombstone_ttl": self.tombstone_ttl, "resume_change_after": self.resume_change_after,
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
    """Voters node1..nodeN, `clients` client nodes and `spares` spare acceptors as OS
    processes (durable), this process as the console; `clock_skews` puts some nodes (by
    number) under libfaketime. A spare starts when the nemesis first starts it (`restart`)."""

    size: int = 3
    seed: int = 0
    timing: Timing = field(default_factory=Timing)
    clients: int = 1
    clock_skews: dict[int, ClockSkew] = field(default_factory=dict)
    spares: int = 0
    amnesia: bool = False

    def __post_init__(self) -> None:
        self.local = LocalCluster(self.size, pythonpath=[REPO_ROOT], prefix="paxtor-chaos-",
                                  spare=self.clients + self.spares + 1)  # fmt: skip
        self.addresses = Addresses.for_this_process()
        self.stopped: set[str] = set()  # SIGSTOPped nodes
        #: the voters as the last change left them (the nemesis keeps it current)
        self.current_voters: list[str] = list(self.local.voters)
        self._tag = 0

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def voters(self) -> list[str]:
        """The voters now (node1..nodeN until a `reconfigure` changes them)."""
        return list(self.current_voters)

    @property
    def client_nodes(self) -> list[str]:
        return [f"node{self.size + k}" for k in range(1, self.clients + 1)]

    @property
    def spare_nodes(self) -> list[str]:
        """Acceptors that are not voters at the start (`reconfigure` adds them)."""
        first = self.size + self.clients
        return [f"node{first + k}" for k in range(1, self.spares + 1)]

    @property
    def acceptor_nodes(self) -> list[str]:
        """Every node that runs an acceptor: the first voters and the spares."""
        return [*self.local.voters, *self.spare_nodes]

    def beyond_numbered(self) -> list[str]:
        """The nodes others do not find by number (node1..nodeN are): every node lists them
        as seeds, so a spare made a voter is connected to all, as an operator's seeds would."""
        return [*self.client_nodes, *self.spare_nodes]

    @property
    def nodes(self) -> list[str]:
        """Every node process started (the nemesis faults and heals them; not the console)."""
        return sorted(self.local.processes, key=lambda name: int(name[4:]))

    def hosts(self) -> dict[int, str]:
        numbers = range(1, self.size + self.clients + self.spares + 1)
        return {n: self.addresses.of(f"node{n}") for n in numbers}

    @property
    def workdir(self) -> Path:
        return self.local.workdir

    def data_dir(self, name: str) -> Path:
        """Node `name`'s own data directory (node.meta and its acceptor log)."""
        return self.local.workdir / "data" / name

    def argv(self, number: int) -> list[str]:
        settings = {
            "cluster_size": self.size, "base_port": self.local.base_port, "seed": self.seed,
            "data_dir": str(self.local.workdir / "data"), "paxos": self.timing.paxos(),
            "heartbeat_interval": self.timing.heartbeat_interval,
            "heartbeat_timeout": self.timing.heartbeat_timeout, "reconnect_max": self.timing.reconnect_max,
            "handshake_timeout": self.timing.handshake_timeout, "hosts": self.hosts(),
            "voter": f"node{number}" in self.acceptor_nodes, "amnesia": self.amnesia,
            "seeds": [self.seed_of(n) for n in self.beyond_numbered() if n != f"node{number}"],
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
            seeds=[self.seed_of(n) for n in self.beyond_numbered()],
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

    def seed_of(self, name: str) -> str:
        """``host:port`` of node `name` (a `--seeds` entry)."""
        return f"{self.addresses.of(name)}:{self.local.base_port + int(name[4:])}"

    # -- process faults -------------------------------------------------------------------
    def kill9(self, name: str) -> int:
        pid = self.pid_of(name)
        self.process(name).kill()
        self.stopped.discard(name)
        return pid

    def restart(self, name: str) -> int:
        """Start node `name` (again) with its usual command; its pid (a spare's first start too)."""
        number = int(name[4:])
        return self.local.start(number, self.argv(number)).pid

    def wipe(self, name: str) -> int:
        """kill -9 node `name` and delete its data directory (a lost disk); the pid killed."""
        pid = self.kill9(name)
        shutil.rmtree(self.data_dir(name))
        return pid

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
        acks = dict.fromkeys(nodes, "no answer")
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
                msg = receive(
                    lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "fault_ack" and m[1] in waiting,
                    timeout=max(0.01, deadline - time.monotonic()),
                )
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
