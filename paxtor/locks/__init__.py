"""Cluster-wide locks: fair, reentrant, fenced, released when the owner exits.

- `paxtor.locks.api`: ``lock``, ``try_lock``, ``unlock``, ``locked``;
- `paxtor.locks.register`: the lock as one PaxosKV register (pure);
- `paxtor.locks.home`: the one node that proposes the rounds of a contended lock;
- `paxtor.locks.agent`: who holds or waits for a lock on this node, and their wake-ups;
- `paxtor.locks.messages`: the names and messages these share;
- `paxtor.locks.fence`: the resource side of the fencing token;
- `paxtor.locks.services`: the lock services a node runs.

``docs/architecture.md`` shows how a lock's messages travel.
"""

from paxtor.locks.api import LockNotHeld, lock, locked, try_lock, unlock
from paxtor.locks.fence import Fence, StaleToken

__all__ = ["lock", "try_lock", "unlock", "locked", "LockNotHeld", "Fence", "StaleToken"]
