"""The names and messages the lock modules share (`api`, `home`, `agent`).

How a wake-up travels: whoever drives a release round that hands a lock on
(the key's home, or PaxosKV's binding watcher when an owner died) sends
`LockWake` to the lock agent of the new owner's node; the agent hands a
`LockGranted` to the process only while it is still waiting for that very
request, so no wake-up ever lands in a mailbox after `lock` has returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from paxtor.actors import Pid, Ref, send
from paxtor.actors.wire import wire_type

__all__ = ["LOCKS_BUCKET", "LOCK_AGENT", "LOCK_HOME", "LockWake", "LockGranted", "Recheck", "RECHECK", "send_wake"]

#: The PaxosKV bucket of the locks (user keys never collide with them).
LOCKS_BUCKET = "paxtor.locks"
#: Registered names of the node's lock agent and lock home.
LOCK_AGENT = "paxtor_lock_agent"
LOCK_HOME = "paxtor_lock_home"


@wire_type(name="paxtor.LockWake")
@dataclass(frozen=True, slots=True)
class LockWake:
    """To `pid`'s node agent: request `ref` of `pid` won lock `key` at `epoch`."""

    pid: Pid
    key: bytes
    epoch: int
    ref: Ref


@dataclass(frozen=True, slots=True)
class LockGranted:
    """Agent -> local waiter: request `ref` won lock `key` (its PaxosKV key) at `epoch`."""

    key: bytes
    epoch: int
    ref: Ref


@dataclass(frozen=True, slots=True)
class Recheck:
    """Agent -> local waiter: a wake-up may have been lost (a peer went down); re-read the lock."""


RECHECK = Recheck()


def send_wake(wake: LockWake) -> None:
    """Deliver `wake` to the lock agent of the new owner's node."""
    send((LOCK_AGENT, wake.pid.node), wake)
