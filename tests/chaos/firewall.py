"""iptables partitions between chaos nodes, each on its own 127.0.0.0/8 address.

Every rule lives in one chain per run, ``PAXTOR-CHAOS-<pid>``, jumped to from
INPUT for loopback traffic only; `Firewall.close` (also run for chains left
by a dead harness, found by pid) removes the jump and the chain. A rule is
``-s A -d B -j DROP``: packets from node A's address to node B's are lost,
both for new connections and for those already open (the jump sits at the
top of INPUT, before any conntrack accept).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

CHAIN_PREFIX = "PAXTOR-CHAOS-"
_CHAIN = re.compile(rf"^-N ({CHAIN_PREFIX}(\d+))$", re.MULTILINE)


class FirewallUnavailable(RuntimeError):
    """iptables cannot be used here (not root, not installed, no kernel support)."""


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, check=check, timeout=20)


def probe() -> str | None:
    """None if iptables works here, else why not (one line)."""
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install -y iptables)"
    if os.geteuid() != 0:
        return "iptables needs root"
    chain = f"{CHAIN_PREFIX}{os.getpid()}P"
    try:
        _ipt("-N", chain)
    except subprocess.CalledProcessError as exc:
        return f"iptables does not work here: {exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"iptables does not work here: {exc}"
    _ipt("-X", chain, check=False)
    return None


def remove_stale_chains() -> list[str]:
    """Remove the chains of harnesses that are no longer running; their names."""
    listing = _ipt("-S", check=False).stdout
    removed = []
    for chain, pid in _CHAIN.findall(listing):
        if pid != str(os.getpid()) and not _alive(int(pid)):
            _remove_chain(chain)
            removed.append(chain)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_chain(chain: str) -> None:
    while _ipt("-D", "INPUT", "-i", "lo", "-j", chain, check=False).returncode == 0:
        pass
    _ipt("-F", chain, check=False)
    _ipt("-X", chain, check=False)


class Firewall:
    """This run's chain: `drop(a, b)` adds a rule, `heal()` empties the chain, `close()` removes it."""

    def __init__(self) -> None:
        why = probe()
        if why is not None:
            raise FirewallUnavailable(why)
        remove_stale_chains()
        self.chain = f"{CHAIN_PREFIX}{os.getpid()}"
        _remove_chain(self.chain)  # one left by an earlier run of this process
        _ipt("-N", self.chain)
        _ipt("-I", "INPUT", "1", "-i", "lo", "-j", self.chain)
        self.rules: list[tuple[str, str]] = []

    def drop(self, src: str, dst: str) -> None:
        """Lose every packet from address `src` to address `dst`."""
        _ipt("-A", self.chain, "-s", src, "-d", dst, "-j", "DROP")
        self.rules.append((src, dst))

    def heal(self) -> None:
        _ipt("-F", self.chain)
        self.rules.clear()

    def close(self) -> None:
        _remove_chain(self.chain)
        self.rules.clear()

    def listing(self) -> str:
        return _ipt("-S", self.chain, check=False).stdout
