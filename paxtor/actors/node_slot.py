"""`NodeSlot`: a typed place on every `LocalNode` for one service of a layer above.

A node's services (its Paxos state, its lock table, its name cache...) are
found from the node: ``node.service(PAXOS_NODE)``. Each layer declares the
slots of its own services (``PAXOS_NODE: NodeSlot[PaxosNode] =
NodeSlot("paxos")``), so the actors runtime holds them without importing
those layers, and a type checker knows what each slot holds (aiohttp's
``AppKey`` does the same for an application's services).
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["NodeSlot"]

T = TypeVar("T")


class NodeSlot(Generic[T]):
    """The key of one service on a node; the value it holds is a `T`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"NodeSlot({self.name!r})"
