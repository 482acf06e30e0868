"""Process names: the local registry, `Via` names, and resolving any destination.

Rules as in Erlang: a name is held by one process, a process holds at most
one name, the name is freed when the process exits, and only a live process
of a node in this OS process can be registered (on its own node).

A destination ("dest") is a `Pid`, a registered name (str, on the current
node), a ``(name, node_name)`` tuple, or a `Via`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from paxtor.actors.ids import Pid
from paxtor.actors.messages import NoProc
from paxtor.actors.node import current_node, get_node

__all__ = ["register", "unregister", "whereis", "Via", "ViaModule", "resolve", "registered_name"]


class ViaModule(Protocol):
    """What a `Via` module provides (Elixir's ``:via`` protocol)."""

    def register_name(self, key: Any, pid: Pid) -> bool: ...

    def unregister_name(self, key: Any) -> None: ...

    def whereis_name(self, key: Any) -> Pid | None: ...

    def send(self, key: Any, msg: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Via:
    """A name resolved by `module` (any object with the `ViaModule` methods)."""

    module: Any
    key: Any

    def __post_init__(self) -> None:
        for method in ("register_name", "unregister_name", "whereis_name", "send"):
            if not callable(getattr(self.module, method, None)):
                raise TypeError(f"Via module {self.module!r} has no {method}() method")


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a registered name is a non-empty str, got {name!r}")


def register(name: str, pid: Pid) -> None:
    """Register `pid` (a live process of a node in this OS process) as `name`
    on its node. Raises ValueError if the name is taken or the process
    already has a name, NoProc if the process is dead."""
    _check_name(name)
    if not isinstance(pid, Pid):
        raise TypeError(f"register() takes a Pid, got {pid!r}")
    node = get_node(pid.node)
    if node is None:
        raise ValueError(f"cannot register {pid!r}: its node is not running in this OS process")
    proc = node.lookup(pid)
    if proc is None or not proc.alive:
        raise NoProc(pid, "cannot register a dead process")
    holder = node.names.get(name)
    if holder is not None:
        if holder is proc:
            raise ValueError(f"{pid!r} is already registered as {name!r}")
        raise ValueError(f"name {name!r} is already registered to {holder.pid!r}")
    if proc.registered_name is not None:
        raise ValueError(f"{pid!r} already has the name {proc.registered_name!r}")
    node.names[name] = proc
    proc.registered_name = name


def unregister(name: str) -> None:
    """Remove `name` from the current node's registry (ValueError if absent)."""
    _check_name(name)
    node = current_node()
    proc = node.names.pop(name, None)
    if proc is None:
        raise ValueError(f"name {name!r} is not registered on node {node.name!r}")
    proc.registered_name = None


def whereis(name: Any) -> Pid | None:
    """The pid registered as `name` (str on the current node, a `(name,
    node_name)` tuple for a node in this OS process, or a `Via`), or None."""
    if isinstance(name, Via):
        return name.module.whereis_name(name.key)
    if isinstance(name, tuple):
        if len(name) != 2:
            raise TypeError(f"expected (name, node_name), got {name!r}")
        reg, node_name = name
        node = get_node(node_name)
        if node is None:
            raise ValueError(f"whereis cannot look up {reg!r} on {node_name!r}: not a node of this OS process")
        proc = node.names.get(reg)
        return proc.pid if proc is not None else None
    _check_name(name)
    proc = current_node().names.get(name)
    return proc.pid if proc is not None else None


def registered_name(pid: Pid) -> str | None:
    """The name `pid` is registered under, if it is a live local process."""
    node = get_node(pid.node)
    proc = node.lookup(pid) if node is not None else None
    return proc.registered_name if proc is not None else None


def resolve(dest: Any) -> Pid | tuple[str, str] | None:
    """Turn a destination into a sendable target: a Pid, or ``(name,
    node_name)`` for a name on another node; None if a local or Via name is
    not registered. Raises TypeError for anything that is not a destination."""
    cls = dest.__class__
    if cls is Pid:
        return dest
    if cls is str:
        proc = current_node().names.get(dest)
        return proc.pid if proc is not None else None
    if cls is tuple:
        if len(dest) != 2 or not isinstance(dest[0], str) or not isinstance(dest[1], str):
            raise TypeError(f"a named destination is (name, node_name), got {dest!r}")
        node = current_node()
        if dest[1] == node.name:
            proc = node.names.get(dest[0])
            return proc.pid if proc is not None else None
        return dest
    if cls is Via:
        return dest.module.whereis_name(dest.key)
    raise TypeError(f"not a destination (Pid, name, (name, node) or Via): {dest!r}")
