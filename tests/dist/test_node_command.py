"""`python -m paxtor node` as real OS processes: three headless nodes on a
free block of ports, watched by a distributed node inside the test (the
"tester"), which dials them by number. Kill -9, SIGSTOP/SIGCONT, restart,
SIGTERM, hostile input, CLI errors, and the interactive shell on the hub.

Subprocesses are gevent.subprocess ones (waiting on them or reading their
pipes never blocks the hub the tester runs on) and are killed by pid."""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import gevent.subprocess
import pytest

import paxtor
from paxtor.actors import Down, Exit, call, link, monitor, receive, register, self_pid, send, spawn, trap_exits
from paxtor.actors.distribution import DistributedNode, NodeDown, NodeUp, monitor_nodes, start_distributed
from paxtor.actors.framing import frame
from paxtor.actors.ids import Pid
from paxtor.actors.transport import RemoteSpawnError
from paxtor.testing import LocalCluster, NodeProcess, free_base_port

from . import remote_helpers as rh
from .conftest import WAIT

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
TIMING = dict(heartbeat_interval=0.2, heartbeat_timeout=1.5, handshake_timeout=1.0, reconnect_max=0.3)
NODE_FLAGS = [
    "--cluster-size", "3", "--durability", "memory", "--log-json",
    "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.5",
    "--handshake-timeout", "1", "--reconnect-max", "0.3",
]
NODES = ["node1", "node2", "node3"]


def _env(cookie: str) -> dict[str, str]:
    # tests/ on the path: remote spawns name functions of dist.remote_helpers
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), PAXTOR_COOKIE=cookie)


class Cluster(LocalCluster):
    """node1..node3 as `python -m paxtor node N` OS processes on one free block of ports."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(3, flags=NODE_FLAGS, pythonpath=[REPO, REPO / "tests"], workdir=workdir)
        self.base = self.base_port
        self.start_all()

    @property
    def nodes(self) -> dict[str, NodeProcess]:
        """The voters' processes (the latest of each)."""
        return {name: self.processes[name] for name in NODES}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.close()


@pytest.fixture
def tester(cluster: Cluster) -> DistributedNode:
    """A node in this OS process that dials node1..node3 by number; the test
    body is one of its processes, subscribed to NodeUp/NodeDown."""
    cluster.restart_exited()
    dist = start_distributed("tester", port=0, base_port=cluster.base, cluster_size=3, cookie=cluster.cookie, **TIMING)
    assert dist.wait_for_nodes(NODES, 30), dist.nodes()
    assert self_pid().node == "tester"
    monitor_nodes()
    return dist


def node_event(kind: type, name: str, timeout: float = WAIT) -> Any:
    return receive(lambda m: isinstance(m, kind) and m.node == name, timeout=timeout)


def run_cli(*args: str, cookie: str = "x", timeout: float = 30) -> tuple[int, str]:
    proc = gevent.subprocess.Popen(
        [sys.executable, "-m", "paxtor", *args], env=_env(cookie),
        stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err + out


# -- the mesh ---------------------------------------------------------------------------------


def test_three_node_processes_form_a_mesh(cluster, tester):
    me = self_pid()
    for name in NODES:
        others = [n for n in NODES if n != name]
        spawn(rh.report_mesh, me, others, 20.0, node=name)  # a real remote spawn
    reports = sorted(receive(lambda m: m[0] == "mesh", timeout=30) for _ in NODES)
    for (_, name, meshed, peers), expected in zip(reports, NODES):
        assert name == expected and meshed
        assert {n for n in NODES if n != name} | {"tester"} <= set(peers)
    event = cluster.nodes["node1"].wait_for_log(lambda e: e.get("event") == "node_up" and e.get("peer") == "node2")
    assert event["level"] == "info" and event["node"] == "node1"


def test_remote_spawn_and_calls_into_a_node_process(cluster, tester, tmp_path):
    spawn(rh.start_echo_server_and_report, self_pid(), "echo", node="node2")
    kind, server = receive(lambda m: m[0] == "server", timeout=WAIT)
    assert server.node == "node2" and server.incarnation == tester.peer_incarnation("node2")
    assert call(server, ("a", 1)) == ("echo", ("a", 1))
    assert call(("echo", "node2"), "by name") == ("echo", "by name")
    # importable here, not there: a clear error in the caller; node2 lives on
    (tmp_path / "only_in_the_test.py").write_text("def hello():\n    return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import only_in_the_test

        with pytest.raises(RemoteSpawnError, match="cannot import module 'only_in_the_test'"):
            spawn(only_in_the_test.hello, node="node2")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("only_in_the_test", None)
    assert call(server, "still there") == ("echo", "still there")


# -- failures of a node ---------------------------------------------------------------------------


def test_kill_9_fires_noconnection_and_a_restarted_node_is_a_new_node(cluster, tester):
    trap_exits(True)
    old_incarnation = tester.peer_incarnation("node3")
    pid = spawn(rh.waiter, node="node3")
    link(pid)
    ref = monitor(pid)
    cluster.nodes["node3"].signal(signal.SIGKILL)
    down = node_event(NodeDown, "node3")
    assert down.reason  # peer_closed / recv_failed: the kernel closed its sockets
    assert receive(lambda m: isinstance(m, Exit), timeout=WAIT) == Exit(pid, "noconnection")
    assert receive(lambda m: isinstance(m, Down), timeout=WAIT) == Down(ref, pid, "noconnection")

    cluster.nodes["node3"].kill()
    cluster.start(3)
    up = node_event(NodeUp, "node3", timeout=30)
    assert up.incarnation > old_incarnation
    ref = monitor(pid)  # a pid of the old incarnation: dead
    assert receive(lambda m: isinstance(m, Down), timeout=WAIT) == Down(ref, pid, "noproc")


def test_sigstop_is_declared_down_by_heartbeat_and_sigcont_reconnects(cluster, tester):
    incarnation = tester.peer_incarnation("node2")
    node2 = cluster.nodes["node2"]
    node2.signal(signal.SIGSTOP)
    try:
        down = node_event(NodeDown, "node2")
        assert down.reason.startswith("heartbeat_timeout")  # TCP open, the process silent
    finally:
        node2.signal(signal.SIGCONT)
    up = node_event(NodeUp, "node2", timeout=30)
    assert up.incarnation == incarnation  # the same node, back
    spawn(rh.report_node, self_pid(), node="node2")
    assert receive(lambda m: m[0] == "ran_on", timeout=WAIT)[1] == "node2"


def test_sigterm_stops_a_node_cleanly_with_exit_0(cluster, tester):
    node5 = cluster.start(5, extra=["--client", "--seeds", f"127.0.0.1:{tester.port}"])
    up = node_event(NodeUp, "node5", timeout=30)
    node5.signal(signal.SIGTERM)
    assert node5.wait() == 0
    down = node_event(NodeDown, "node5")
    assert down.reason.startswith("peer_stopping")
    events = [e.get("event") for e in node5.events()]
    assert "node_stopping" in events and "distribution_stopped" in events
    stopping = events.index("node_stopping")
    assert [e for e in node5.events()[stopping:] if e.get("level") in ("warning", "error")] == []  # a clean stop
    assert up.incarnation > 0


# -- hostile input -----------------------------------------------------------------------------------


def test_hostile_input_leaves_a_node_up_and_serving(cluster, tester):
    port = cluster.base + 1
    rng = random.Random(7)

    def closed_by_node(sock: Any, timeout: float = WAIT) -> bool:
        with gevent.Timeout(timeout):
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        return True

    junk = gevent.socket.create_connection(("127.0.0.1", port))
    junk.sendall(rng.randbytes(4096))
    oversized = gevent.socket.create_connection(("127.0.0.1", port))
    oversized.sendall(b"\xff\xff\xff\xff" + b"x" * 100)
    half = gevent.socket.create_connection(("127.0.0.1", port))
    half.sendall(frame(b"a" * 100)[:50])
    half.close()
    loris = gevent.socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    loris.sendall(frame(b"h" * 200)[:4])  # announces a 200-byte handshake frame...

    def drip() -> None:  # ...and sends it one byte at a time
        try:
            while True:
                loris.send(b"h")
                gevent.sleep(0.2)
        except OSError:
            pass

    dripper = gevent.spawn(drip)
    try:
        assert closed_by_node(junk) and closed_by_node(oversized)
        assert closed_by_node(loris)
        assert time.monotonic() - started >= 0.9  # dropped at its handshake deadline
    finally:
        dripper.kill()
        for sock in (junk, oversized, loris):
            sock.close()
    assert cluster.nodes["node1"].proc.poll() is None
    assert "node1" in tester.nodes()
    spawn(rh.start_echo_server_and_report, self_pid(), None, node="node1")
    server = receive(lambda m: m[0] == "server", timeout=WAIT)[1]
    assert call(server, "fine") == ("echo", "fine")
    failures = [e for e in cluster.nodes["node1"].events() if e.get("event") == "handshake_failed"]
    reasons = " ".join(e.get("reason", "") for e in failures)
    assert "malformed" in reasons or "frame" in reasons
    assert "handshake_timeout" in reasons


# -- the command line --------------------------------------------------------------------------------


def test_a_port_in_use_is_a_one_line_error(cluster, tester):
    status, output = run_cli("node", "1", "--no-shell", "--base-port", str(cluster.base), *NODE_FLAGS,
                             cookie=cluster.cookie)
    assert status == 2
    assert output.strip().splitlines() == [f"paxtor node: error: port {cluster.base + 1} on 127.0.0.1 is in use "
                                           "(is node1 already running?)"]


def test_a_corrupt_data_directory_is_a_one_line_error(tmp_path):
    # node.meta cannot be trusted: the node refuses to guess an incarnation, and says so in one line
    from paxtor.paxos.node_meta import META_FILE, NodeMeta

    NodeMeta.open(tmp_path / "node1", "fsync")  # what node1's first start leaves
    meta = tmp_path / "node1" / META_FILE
    meta.write_bytes(b"garbage" + meta.read_bytes()[7:])
    status, output = run_cli("node", "1", "--no-shell", "--base-port", str(free_base_port([1])),
                             "--durability", "fsync", "--data-dir", str(tmp_path), "--cluster-size", "1",
                             "--log-json")
    assert status == 2
    errors = [line for line in output.splitlines() if line.startswith("paxtor node: error:")]
    assert len(errors) == 1 and "Traceback" not in output, output


def full_disk_data_dir(root: Path) -> Path:
    """A data directory where node1's first write (its node.meta, through a temp file)
    lands on /dev/full, a device that answers every write with ENOSPC."""
    (root / "node1").mkdir(parents=True)
    (root / "node1" / "node.meta.tmp").symlink_to("/dev/full")
    return root


def test_a_full_disk_at_start_up_is_reported_as_such_not_as_a_listen_failure(tmp_path):
    data = full_disk_data_dir(tmp_path)
    status, output = run_cli("node", "1", "--no-shell", "--base-port", str(free_base_port([1])),
                             "--durability", "fsync", "--data-dir", str(data), "--cluster-size", "1")
    assert status == 2
    errors = [line for line in output.splitlines() if line.startswith("paxtor node: error:")]
    assert errors == [f"paxtor node: error: cannot use the data directory {data / 'node1'}: No space left on device"]
    assert "Traceback" not in output, output


def test_a_listen_failure_is_a_listen_error_with_its_errno(tmp_path):
    from paxtor.actors.listener import ListenError

    base = free_base_port([1])
    with gevent.socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen(1)
        with pytest.raises(ListenError) as info:
            paxtor.start_node("node1", cluster_size=1, base_port=base, cookie="c", durability="memory")
    assert info.value.errno == errno.EADDRINUSE and "cannot listen on 127.0.0.1" in str(info.value)


def test_start_node_raises_the_disk_error_itself(tmp_path):
    from paxtor.actors.listener import ListenError

    data = full_disk_data_dir(tmp_path)
    with pytest.raises(OSError) as info:
        paxtor.start_node("node1", cluster_size=1, base_port=free_base_port([1]), cookie="c", data_dir=data)
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, ListenError)


@pytest.mark.parametrize(
    "args, message",
    [
        (["node", "1", "--bogus"], "unrecognized arguments: --bogus"),
        (["node", "node0"], "a node is '_'"),
        (["node", "web-1"], "pass --client"),
        (["node", "web-1", "--client", "--tls-cert", "x.pem"], "TLS needs all three"),
        (["node", "1", "--durability", "paper"], "invalid choice: 'paper'"),
        (["node", "1", "--heartbeat-timeout", "-1"], "must be > 0"),
        (["node", "1", "--lease", "0"], "must be > 0"),
        (["node", "4", "--no-shell", "--cluster-size", "3", "--base-port", "1"], "--voter to run an acceptor"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message):
    status, output = run_cli(*args)
    assert status == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], output


def test_lease_and_tombstone_flags_reach_paxos(tmp_path):
    with LocalCluster(1, workdir=tmp_path) as one:
        node = one.start(1, extra=["--durability", "memory", "--lease", "0.8", "--lease-margin", "0.2",
                                   "--max-drift", "0.1", "--tombstone-ttl", "7"])
        started = node.wait_for_log("paxos_started")
    assert (started["lease"], started["margin"], started["max_drift"]) == (0.8, 0.2, 0.1)
    assert started["tombstone_ttl"] == 7.0


# -- the shell ------------------------------------------------------------------------------------------


def read_until(stream: Any, pattern: str, timeout: float = 30) -> re.Match[str]:
    seen = ""
    with gevent.Timeout(timeout, AssertionError(f"{pattern!r} not in shell output: {seen!r}")):
        while True:
            line = stream.readline()
            assert line, f"shell output ended before {pattern!r}: {seen!r}"
            seen += line
            found = re.search(pattern, line)
            if found:
                return found


def test_the_shell_runs_on_the_hub_while_it_waits_for_input(cluster, tester):
    register("sink", self_pid())
    shell = cluster.start(4, extra=["--client", "--seeds", f"127.0.0.1:{tester.port}"], shell=True)
    try:
        node_event(NodeUp, "node4", timeout=30)
        stdin, stdout = shell.proc.stdin, shell.proc.stdout
        stdin.write("print('pid:', self_pid(), node(), sorted(nodes()))\n")
        stdin.flush()
        found = read_until(stdout, r"pid: <node4\.(\d+)\.(\d+)> node4 \[(.*)\]")
        shell_pid = Pid("node4", int(found.group(1)), int(found.group(2)))
        assert "'tester'" in found.group(3)
        # a background process: it must keep running while the shell waits for input
        stdin.write("ticker = spawn(lambda: [send(('sink', 'tester'), ('tick', i)) or gevent.sleep(0.05) for i in range(40)])\n")
        stdin.flush()
        ticks = [receive(lambda m: isinstance(m, tuple) and m[0] == "tick", timeout=WAIT)[1] for _ in range(10)]
        assert ticks == list(range(10))
        # the shell is a process: it receives
        send(shell_pid, "hello shell")
        stdin.write("print('got', receive(timeout=10))\n")
        stdin.flush()
        read_until(stdout, r"got hello shell")
        stdin.close()  # EOF: the shell stops the node and exits 0
        assert shell.wait() == 0
        node_event(NodeDown, "node4")
    finally:
        shell.kill()


def test_sigterm_ends_the_shell_and_stops_the_node_with_exit_0(cluster, tester):
    shell = cluster.start(6, extra=["--client", "--seeds", f"127.0.0.1:{tester.port}"], shell=True)
    try:
        node_event(NodeUp, "node6", timeout=30)
        shell.signal(signal.SIGTERM)  # while the shell waits for input
        assert shell.wait() == 0
        assert node_event(NodeDown, "node6").reason.startswith("peer_stopping")
        stopping = [e for e in shell.events() if e.get("event") == "node_stopping"]
        assert [e["reason"] for e in stopping] == ["signal"]
    finally:
        shell.kill()
