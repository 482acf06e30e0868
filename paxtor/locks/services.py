"""The lock services every Paxtor node runs, as child specs for its root supervisor.

- the PaxosKV bucket of the locks, ``paxtor.locks``, apart from user keys
  (release policy `hand_to_next`: a released lock goes to the first waiter
  in the same round; `wake_new_owner` tells it);
- the `LockAgent` (who holds or waits for locks here, their wake-ups;
  withdraws dead waiters);
- the `LockHome` (proposes the rounds of the locks homed here, batched per key).

They start after PaxosKV's own services: they propose rounds.
"""

from __future__ import annotations

from paxtor import paxos
from paxtor.actors import ChildSpec
from paxtor.locks.agent import LockAgent
from paxtor.locks.home import LockHome, wake_new_owner
from paxtor.locks.messages import LOCKS_BUCKET
from paxtor.locks.register import hand_to_next

__all__ = ["lock_services"]


def lock_services() -> list[ChildSpec]:
    """Child specs of the node's lock services, in start order."""
    return [
        paxos.Bucket(LOCKS_BUCKET, release_policy=hand_to_next, on_release=wake_new_owner),
        LockAgent.child_spec(),
        LockHome.child_spec(),
    ]
