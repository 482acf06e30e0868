"""The node-level services of the Paxtor layer, started on every node.

`paxtor_services(node)` lists them as child specs for the node's root
supervisor, after PaxosKV's own services (they propose rounds):

- the two PaxosKV buckets of the layer, apart from user keys:
  ``paxtor.locks`` (release policy `hand_to_next`: a released lock goes to
  the first waiter in the same round; `wake_new_owner` tells it) and
  ``paxtor.names`` (default policy: a released key is empty);
- the `LockAgent` (who holds/waits for locks here, their wake-ups; withdraws
  dead waiters) and the `LockHome` (proposes the rounds of the locks homed
  here, batched per key);
- the singleton `DynamicSupervisor` (keepers of the singletons homed here);
- the `NameServer` (per-node pid cache, lookups and starts);
- the `ObserveServer` (what `paxtor.cluster_info` asks each node; read-only)
  and the `EventServer` (`paxtor.subscribe`).
"""

from __future__ import annotations

from typing import Any

from paxtor import paxos
from paxtor.actors import ChildSpec, DynamicSupervisor
from paxtor.lock_agent import LockAgent
from paxtor.lock_home import LockHome, wake_new_owner
from paxtor.lock_messages import LOCKS_BUCKET
from paxtor.lock_register import hand_to_next
from paxtor.name_server import SINGLETON_SUPERVISOR, NameServer
from paxtor.observe.events import EventServer
from paxtor.observe.server import ObserveServer
from paxtor.singleton_keeper import NAMES_BUCKET

__all__ = ["paxtor_services"]


def paxtor_services(node: Any = None) -> list[ChildSpec]:
    """Child specs of the Paxtor layer's node services, in start order.

    `node` (the `paxtor.Node` being started) is accepted for symmetry with the
    other service lists; nothing here depends on its settings.
    """
    return [
        paxos.Bucket(LOCKS_BUCKET, release_policy=hand_to_next, on_release=wake_new_owner),
        paxos.Bucket(NAMES_BUCKET),
        LockAgent.child_spec(),
        LockHome.child_spec(),
        # keepers are temporary children (a singleton is never restarted in place)
        DynamicSupervisor.child_spec(id=SINGLETON_SUPERVISOR, name=SINGLETON_SUPERVISOR),
        NameServer.child_spec(),
        ObserveServer.child_spec(),
        EventServer.child_spec(),
    ]
