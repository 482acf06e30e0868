"""Cluster singletons: ``paxtor.name(key, child_spec)`` names exactly one process per key.

- `paxtor.singletons.api`: ``name``, ``whereis``, ``registered`` and the `Via` module;
- `paxtor.singletons.register`: a singleton as one PaxosKV register (pure);
- `paxtor.singletons.keeper`: claims a key, starts its child, hands the key over;
- `paxtor.singletons.name_server`: a node's lookups and starts;
- `paxtor.singletons.services`: the singleton services a node runs.

``docs/architecture.md`` shows how a singleton's messages travel.
"""

from paxtor.singletons.api import (
    SingletonStartError,
    SingletonUnreachable,
    name,
    registered,
    whereis,
)

__all__ = ["name", "whereis", "registered", "SingletonStartError", "SingletonUnreachable"]
