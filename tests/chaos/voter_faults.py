"""The nemeses that change who votes: wipe a voter's disk, and change the voters under load.

- ``wipe``: kill -9 a voter, delete its data directory, start it again with
  the same command after the fault's hold. It comes back as a learner and
  catches up by itself (README: Voters that lose their disk); the fault ends
  once it has (or after `STEP_TIMEOUT`, noted): a fault that took other
  voters away before that would be the loss of a majority's state, which no
  consensus survives.
- ``wipe_holder``: the schedule that loses writes if a wiped voter votes
  before it caught up. A minority of the voters is stopped while the cold
  probe (`Probe`) writes fresh keys and takes a fresh lock (only the others
  hold them); the minority comes back; one voter that holds the writes is
  wiped and started again; once it says it votes, the other voters that hold
  the writes are stopped, and the probe reads every key and tries the lock
  from a client node through the quorum that is left: the wiped voter and
  the minority (`checkers.check_cold_probe`). Under ``--amnesia`` (the
  negative control) the wiped voter votes at once and the probe must find
  lost writes or two holders.
- ``reconfigure``: ``replace`` (kill -9 a voter as a dead machine, start a
  spare with ``--voter``, ``python -m paxtor cluster replace``; the dead one
  comes back as a non-voter at the end) or ``resize`` (start two acceptors
  that do not vote, add them with `paxtor.cluster.set_voters` from the
  console, and at the end remove two of the grown set with ``python -m paxtor
  cluster remove``), all under the workloads' load. A node that was a voter
  before is wiped before it is added again, as the README says to. The cold
  probe writes before the change and reads after it: keys written once must
  have moved.

Faults are scheduled against the first voters' names; `slots` maps each to
the voter in its place now (a replaced voter's slot goes to its
replacement), so later faults hit voters.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.subprocess

from paxtor import cluster as voters_api
from paxtor.actors import ReceiveTimeout, receive, self_pid, send, spawn
from paxtor.actors.distribution import nodes as connected_nodes
from paxtor.actors.node import current_node
from paxtor.paxos.paxos_node import open_paxos_node
from tests.chaos.harness import CLIENT_NAME, ChaosCluster
from tests.chaos.workloads import RECORDER, now, probe_hold, probe_read, probe_write

#: Keys the cold probe writes per fault.
PROBE_KEYS = 20
#: How long the cold probe of a `reconfigure` may take to read back.
PROBE_READ_SECONDS = 5.0
#: How long a step of a voter fault may wait for nodes to come up or a voter to catch up.
STEP_TIMEOUT = 15.0
#: How long one change of the voters may take.
CHANGE_TIMEOUT = 30.0
#: Seconds a fault of each kind takes beyond its gap and hold (starting nodes, changes,
#: the probe's phases): the runner plans the workloads' deadline with it.
EXTRA_SECONDS = {"wipe": 1.0, "wipe_holder": 3.0, "reconfigure": 12.0}


class Probe:
    """Cold data across a voter fault (`tests.chaos.workloads`, cold probe): fresh keys
    written and a fresh lock held before it, read back and tried from a client node after."""

    def __init__(self, number: int, client: str, note: Callable[[str], None]) -> None:
        self.keys = [("probe", number, i) for i in range(PROBE_KEYS)]
        self.lock_key = ("probe-lock", number)
        self.client = client
        self.note = note
        self.me = self_pid()
        self.recorder = (RECORDER, CLIENT_NAME)
        self.holder: Any = None
        self.reading = False

    def write(self) -> None:
        """Write the keys and take the lock (from this node), and wait until both are done."""
        self.holder = spawn(probe_hold, self.lock_key, self.recorder, self.me)
        spawn(probe_write, self.keys, self.recorder, self.me, now() + STEP_TIMEOUT, self.lock_key)
        written = _await(lambda m: isinstance(m, tuple) and m[:2] == ("probe_written", self.lock_key))
        holding = _await(lambda m: isinstance(m, tuple) and m[:2] == ("probe_holding", self.lock_key))
        self.note(f"cold probe: {written[2] if written else 0} of {len(self.keys)} keys written, lock "
                  f"{self.lock_key!r} held with token {holding[2] if holding else None}")  # fmt: skip

    def read(self, seconds: float) -> None:
        """Start reading the keys back and trying the lock on the client node, for `seconds` at most."""
        spawn(probe_read, self.keys, self.lock_key, self.recorder, self.me, now() + seconds, node=self.client)
        self.reading = True

    def finish(self) -> None:
        """Wait for the read, then let the holder go."""
        if self.reading:
            done = _await(lambda m: m == ("probe_read_done", self.lock_key))
            self.note(f"cold probe read from {self.client}" + ("" if done else f": not done in {STEP_TIMEOUT:g} s"))
        send(self.holder, ("probe_release",))


def _await(match: Callable[[Any], bool]) -> Any:
    try:
        return receive(match, timeout=STEP_TIMEOUT)
    except ReceiveTimeout:
        return None


class VoterFaults:
    """Plays the voter nemeses on `cluster`, logging each step through `note`."""

    def __init__(self, cluster: ChaosCluster, note: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.note = note
        #: a scheduled target (a first voter's name) -> the voter in its place now
        self.slots = {name: name for name in cluster.voters}
        self._probes = 0
        self._probe: Probe | None = None  # of the fault in progress
        self._stopped: list[str] = []  # voters a wipe_holder stopped, to start at its end
        self._replaced: str | None = None  # the dead voter of the replace in progress
        self._grown = False  # a resize in progress: shrink at its end

    def voter(self, name: str) -> str:
        """The voter in `name`'s place now (other nodes: `name` itself)."""
        return self.slots.get(name, name)

    # -- wipe -------------------------------------------------------------------------------

    def wipe(self, name: str) -> None:
        pid = self.cluster.wipe(name)
        self.note(f"wipe {name}: kill -9 (pid {pid}), data directory deleted")

    def restart_wiped(self, name: str) -> None:
        pid = self.cluster.restart(name)
        self.note(f"restart {name} (pid {pid}) with an empty directory: a learner until it catches up")

    def wipe_end(self, name: str) -> None:
        self.restart_wiped(name)
        self.note(f"{name}: {self._votes_again(name)}")

    # -- wipe_holder ------------------------------------------------------------------------

    def wipe_holder_start(self, targets: tuple[str, ...], hold: float) -> None:
        """Targets: (the voter to wipe, *the minority, *the rest); see the module docstring."""
        size = len(targets)
        wiped, down, rest = targets[0], list(targets[1 : 1 + (size - 1) // 2]), list(targets[1 + (size - 1) // 2 :])
        probe = self._new_probe()
        if probe is None:
            return
        for name in down:
            self.note(
                f"kill -9 {name} (pid {self.cluster.kill9(name)}): writes now live on {', '.join(rest + [wiped])}"
            )
        probe.write()
        for name in down:
            self.note(f"restart {name} (pid {self.cluster.restart(name)})")
        self._wait_connected(down)
        self.wipe(wiped)
        self.restart_wiped(wiped)
        self.note(f"{wiped}: {self._votes_again(wiped)}")
        for name in rest:
            self.note(
                f"kill -9 {name} (pid {self.cluster.kill9(name)}): the quorum left is {', '.join([wiped, *down])}"
            )
        self._stopped = rest
        probe.read(hold)

    def wipe_holder_end(self) -> None:
        self._finish_probe()
        stopped, self._stopped = self._stopped, []
        for name in stopped:
            self.note(f"restart {name} (pid {self.cluster.restart(name)})")

    def _new_probe(self) -> Probe | None:
        client = next(iter(self.cluster.client_nodes), None)
        if client is None:
            self.note("no cold probe: it reads from a client node, and this run has none")
            return None
        self._probes += 1
        self._probe = Probe(self._probes, client, self.note)
        return self._probe

    def _finish_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.finish()

    def _votes_again(self, name: str) -> str:
        """Wait until the wiped voter says it votes again (caught up, or the negative control)."""
        process = self.cluster.process(name)
        try:
            entry = process.wait_for_log(
                lambda e: e.get("event") in ("catch_up_done", "negative_control_wiped_voter_votes"), STEP_TIMEOUT
            )
        except TimeoutError:
            return f"still a learner after {STEP_TIMEOUT:g} s"
        if entry["event"] == "catch_up_done":
            return f"caught up ({entry.get('records')} records in {entry.get('seconds')} s) and votes"
        return "votes at once, with nothing (NEGATIVE CONTROL)"

    # -- reconfigure ------------------------------------------------------------------------

    def reconfigure_start(self, targets: tuple[str, ...]) -> None:
        """Targets: ("replace", the voter whose machine dies) or ("resize",)."""
        probe = self._new_probe()
        if probe is not None:
            probe.write()
        if targets[0] == "replace":
            self._replace(self.voter(targets[1]))
        else:
            self._grow()

    def reconfigure_end(self, seed: float) -> None:
        """A grown cluster shrinks again, by two voters `seed` picks; the cold probe reads
        through the voters now; the dead machine of a replace comes back (not a voter)."""
        if self._grown:
            self._grown = False
            voters = self.cluster.voters
            leaving = sorted(random.Random(seed).sample(voters, 2), key=voters.index)
            self._cli("remove", leaving, voters)
        if self._probe is not None:
            self._probe.read(PROBE_READ_SECONDS)
            self._finish_probe()
        dead, self._replaced = self._replaced, None
        if dead is not None:
            self.note(f"restart {dead} (pid {self.cluster.restart(dead)}): not a voter any more")

    def _replace(self, old: str) -> None:
        new = self._free_acceptors(1)
        if not new or old not in self.cluster.voters:
            self.note(f"replace {old}: no spare acceptor left")
            return
        self.note(f"replace: kill -9 {old} (pid {self.cluster.kill9(old)}), its machine is gone")
        self._replaced = old
        self._start(new)
        voters = [new[0] if v == old else v for v in self.cluster.voters]
        self._cli("replace", [old, new[0]], voters)

    def _grow(self) -> None:
        new = self._free_acceptors(2)
        if len(new) < 2:
            self.note("resize: no two spare acceptors left")
            return
        self._start(new)
        self._api([*self.cluster.voters, *new])
        self._grown = True

    def _free_acceptors(self, count: int) -> list[str]:
        """`count` acceptor nodes that are not voters: spares never started first, then
        nodes that ran before (voters once: `_start` wipes them)."""
        cluster = self.cluster
        free = [n for n in cluster.acceptor_nodes if n not in cluster.voters]
        fresh = [n for n in free if n not in cluster.local.processes]
        return [*fresh, *(n for n in free if n not in fresh)][:count]

    def _start(self, names: list[str]) -> None:
        """Start `names` as acceptors that do not vote yet; one that ran before may hold keys
        from when it was a voter, and is wiped first (README: Operations)."""
        for name in names:
            if name in self.cluster.local.processes:
                self.cluster.wipe(name)
                self.note(f"wipe {name} before it is added back (it may hold keys from when it was a voter)")
            self.note(f"start {name} --voter (pid {self.cluster.restart(name)}): an acceptor, not a voter yet")
        self._wait_connected(names)

    def _api(self, voters: list[str]) -> None:
        """``paxtor.cluster.set_voters`` from this (the console) node."""
        began = time.monotonic()
        self.note(f"paxtor.cluster.set_voters({voters}) from the console ...")
        try:
            done = voters_api.set_voters(voters, timeout=CHANGE_TIMEOUT)
            self.note(f"... voters now {', '.join(done)} ({time.monotonic() - began:.1f} s)")
        except Exception as exc:  # noqa: BLE001 - a change that failed under faults is reported
            self.note(f"... failed after {time.monotonic() - began:.1f} s: {type(exc).__name__}: {str(exc)[:200]}")
        self._follow()

    def _cli(self, action: str, names: list[str], reach: list[str]) -> None:
        """``python -m paxtor cluster ACTION NAMES --seeds (one voter that stays)``, as an
        operator runs it: it finds the other voters through that one."""
        cluster = self.cluster
        seed = next(v for v in reach if v in cluster.voters and v not in names)
        argv = [sys.executable, "-m", "paxtor", "cluster", action, *names, "--seeds", cluster.seed_of(seed),
                "--timeout", str(CHANGE_TIMEOUT)]  # fmt: skip
        began = time.monotonic()
        self.note(f"python -m paxtor cluster {action} {' '.join(names)} --seeds {seed}'s address ...")
        out = gevent.subprocess.run(argv, env=cluster.local.env, cwd=str(cluster.workdir), capture_output=True,
                                    text=True, timeout=CHANGE_TIMEOUT + 30)  # fmt: skip
        said = (out.stdout.strip() or out.stderr.strip() or "(nothing)").splitlines()[-1]
        self.note(f"... exit {out.returncode} ({time.monotonic() - began:.1f} s): {said[:300]}")
        self._follow()

    def _follow(self) -> None:
        """Read the voters the cluster has now; move the slots of voters that left to the new ones."""
        try:
            voters = list(voters_api.voters(fresh=True, timeout=STEP_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - keep the last known voters
            self.note(f"voters not read: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.cluster.current_voters = voters
        unplaced = [v for v in voters if v not in self.slots.values()]
        for slot, name in list(self.slots.items()):
            if name not in voters and unplaced:
                self.slots[slot] = unplaced.pop(0)
        moved = {s: n for s, n in self.slots.items() if s != n}
        self.note(f"voters: {', '.join(voters)}" + (f"  (faults for {moved} hit those)" if moved else ""))

    # -- waiting ---------------------------------------------------------------------------

    def _wait_connected(self, names: list[str]) -> None:
        """Until this node is connected to `names` and has heard what they are (a change checks)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        node = open_paxos_node(current_node())
        while time.monotonic() < deadline:
            peers = node.peers if node is not None else {}
            if all(n in connected_nodes() and n in peers for n in names):
                return
            gevent.sleep(0.1)
        self.note(f"not connected to {[n for n in names if n not in connected_nodes()]} after {STEP_TIMEOUT:g} s")

