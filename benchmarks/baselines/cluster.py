"""Process management for the external baseline servers (etcd, ZooKeeper).

The servers are foreign processes: we can only pick ports, start them, poll
them until healthy within a deadline, and kill them by pid. Everything a
cluster starts is tracked here so that leaving the ``with`` block -- normally,
by exception or by Ctrl-C -- kills every process by pid and removes its temp
directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
SETPRIV = "/usr/bin/setpriv"


class ClusterStartError(RuntimeError):
    """A baseline cluster did not become healthy; the message carries log tails."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all bound at once, then released).

    An external server cannot inherit our socket, so there is a small window in
    which another process could take a port; a member that fails to bind shows
    up as an early exit, reported with its log.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True if a TCP connect to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, max_bytes: int = 2000) -> str:
    """The last bytes of a log file, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log: {exc}>"


@dataclass
class ManagedProcess:
    """One server process we started, with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def stop(self, grace_seconds: float = 5.0) -> None:
        """SIGTERM by pid, then SIGKILL by pid if it outlives the grace period."""
        if self.popen.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10.0)):
            if self.popen.poll() is not None:
                return
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class ProcessSet:
    """Processes and a temp directory owned by one cluster; ``close`` undoes all."""

    root: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start argv with output to ``<root>/<name>.log``.

        Own session, so a terminal Ctrl-C reaches only us and we stop the
        servers in order; parent-death signal (via setpriv) so a SIGKILLed
        benchmark does not leave servers behind.
        """
        log_path = self.root / f"{name}.log"
        full_argv = list(argv)
        if os.path.exists(SETPRIV):
            full_argv = [SETPRIV, "--pdeathsig", "KILL", "--", *full_argv]
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                full_argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd or self.root),
                start_new_session=True,
            )
        proc = ManagedProcess(name=name, argv=full_argv, log_path=log_path, popen=popen)
        self.processes.append(proc)
        return proc

    def check_alive(self) -> None:
        """Raise ClusterStartError naming any process that already exited."""
        dead = [p for p in self.processes if p.exited()]
        if dead:
            raise ClusterStartError(
                "; ".join(
                    f"{p.name} (pid {p.pid}) exited with {p.popen.returncode}: {tail(p.log_path)}"
                    for p in dead
                )
            )

    def cpu_seconds(self) -> float:
        """User+system CPU seconds used so far by the live processes (from /proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for proc in self.processes:
            try:
                with open(f"/proc/{proc.pid}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return total / ticks

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{tail(p.log_path)}" for p in self.processes)

    def close(self) -> None:
        """Kill every started process by pid, then remove the temp directory.

        A Ctrl-C or SIGTERM arriving during cleanup (a second signal is common:
        terminal and parent both signal us) does not abort it: the remaining
        servers are killed without grace, the directory is removed, and the
        first such exception is re-raised at the end.
        """
        interrupted: BaseException | None = None
        for proc in self.processes:
            while True:
                try:
                    proc.stop(grace_seconds=5.0 if interrupted is None else 0.0)
                    break
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after cleanup
                    interrupted = interrupted or exc
        while True:
            try:
                shutil.rmtree(self.root, ignore_errors=True)
                break
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after cleanup
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted


def new_process_set(prefix: str) -> ProcessSet:
    """A ProcessSet rooted in a fresh temp directory."""
    return ProcessSet(root=Path(tempfile.mkdtemp(prefix=prefix)))


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    processes: ProcessSet,
    interval: float = 0.1,
) -> None:
    """Poll an external server's state with a deadline (nothing can signal us).

    Fails fast if a process died; on timeout raises with the servers' log tails.
    """
    deadline = time.monotonic() + timeout
    while True:
        processes.check_alive()
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - a server that is not up yet may fail any way
            pass
        if time.monotonic() >= deadline:
            raise ClusterStartError(f"timed out after {timeout:.0f}s waiting for {what}\n{processes.logs()}")
        time.sleep(interval)


INSTALL_ENV = "PAXTOR_BENCH_INSTALL"


def install_permitted(install: bool | None) -> bool:
    """An explicit argument wins; otherwise ``PAXTOR_BENCH_INSTALL=1`` permits apt-get."""
    if install is not None:
        return install
    return os.environ.get(INSTALL_ENV, "") == "1"


def apt_install(package: str, timeout: float = 900.0) -> tuple[bool, str]:
    """``apt-get install -y PACKAGE`` (Debian); (ok, message with the log tail on failure)."""
    apt = shutil.which("apt-get")
    if apt is None:
        return False, "apt-get not found (not a Debian machine)"
    if os.geteuid() != 0:
        return False, f"apt-get install {package} needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def apt_get(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [apt, *args], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout, check=False
        )

    try:
        done = apt_get("install", "-y", "--no-install-recommends", package)
        if done.returncode != 0 and b"Unable to locate package" in done.stderr:
            apt_get("update")  # a fresh machine may have empty package lists
            done = apt_get("install", "-y", "--no-install-recommends", package)
    except subprocess.TimeoutExpired:
        return False, f"apt-get install {package} timed out after {timeout:.0f}s"
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode("utf-8", "replace")[-1500:]
        return False, f"apt-get install {package} failed ({done.returncode}): {output}"
    return True, f"installed {package} with apt-get"
