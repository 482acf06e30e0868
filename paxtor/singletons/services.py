"""The singleton services every Paxtor node runs, as child specs for its root supervisor.

- the PaxosKV bucket of the singletons, ``paxtor.names``, apart from user
  keys (default release policy: a released key is empty);
- the singleton `DynamicSupervisor` (the keepers of the singletons hosted
  here: temporary children, since a singleton is never restarted in place);
- the `NameServer` (per-node pid cache, lookups and starts).

They start after PaxosKV's own services: they propose rounds.
"""

from __future__ import annotations

from paxtor import paxos
from paxtor.actors import ChildSpec, DynamicSupervisor
from paxtor.singletons.keeper import NAMES_BUCKET
from paxtor.singletons.name_server import SINGLETON_SUPERVISOR, NameServer

__all__ = ["singleton_services"]


def singleton_services() -> list[ChildSpec]:
    """Child specs of the node's singleton services, in start order."""
    return [
        paxos.Bucket(NAMES_BUCKET),
        DynamicSupervisor.child_spec(id=SINGLETON_SUPERVISOR, name=SINGLETON_SUPERVISOR),
        NameServer.child_spec(),
    ]
