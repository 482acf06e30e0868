"""Cluster singletons: ``paxtor.name(key, child_spec)`` names exactly one process per key.

``via = paxtor.name("apple", Counter)`` starts nothing. The first
``call(via, ...)``, ``send(via, ...)``, ``monitor(via)`` or
``paxtor.whereis(via)`` on any node starts one `Counter` for ``"apple"`` on
one node of the cluster (the key's rendezvous-hashing home), and every later
use, from any node, reaches that one process. When it exits, the key is
released and the next use starts a new one (with a new pid).

The child spec travels as an import reference: ``"pkg.mod:Class"``,
``("pkg.mod:Class", arg)``, a class (turned into its reference), or a
module-level start function; the same code must be installed on every node.

A singleton whose host is up but cannot be reached from this node (a
partition between the two, while both reach the voters) raises
`SingletonUnreachable` at once, naming the host: it is not restarted here,
since it still runs. `paxtor.placement` says which nodes may host singletons.

How exactly one is guaranteed, and what it costs, is in
`paxtor.singletons.keeper` (claim before start) and `paxtor.singletons.name_server`
(per-node cache invalidated by monitors: a steady-state call through a name
costs no consensus round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paxtor import paxos
from paxtor.actors import Pid, Via, self_pid
from paxtor.actors import send as send_to_pid
from paxtor.actors.function_ref import FunctionRefError, function_ref
from paxtor.actors.gen_server import call
from paxtor.actors.messages import NoProc
from paxtor.actors.node import current_node
from paxtor.actors.primitives import is_alive
from paxtor.actors.wire import encode
from paxtor.paxos.register import empty_released, identity, release_if_bound
from paxtor.rounds import Deadline, end_tenure, lease_term, paxos_key, propose
from paxtor.singletons.keeper import NAMES_BUCKET, child_spec_of
from paxtor.singletons.name_server import (
    RESOLVE_TIMEOUT,
    Resolve,
    SingletonStartError,
    SingletonUnreachable,
    name_cache,
)
from paxtor.singletons.register import ended_binding, register_pid, running_pid

__all__ = [
    "name",
    "whereis",
    "registered",
    "SingletonName",
    "SINGLETONS",
    "SingletonStartError",
    "SingletonUnreachable",
    "NAMES_BUCKET",
]

#: How long `register_name` / `unregister_name` may wait for a quorum.
REGISTER_TIMEOUT = 10.0
#: The reason recorded when a Via-registered process unregisters.
UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class SingletonName:
    """What a singleton `Via` carries: the user's key and how to start its process."""

    key: Any
    start: str
    args: tuple[Any, ...] = ()
    pkey: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pkey", paxos_key(self.key))


class _Singletons:
    """The `Via` module of singleton names (Elixir's ``{:via, Paxtor, ...}``)."""

    def __repr__(self) -> str:
        return "paxtor.singletons"

    def whereis_name(self, name: Any) -> Pid | None:
        """The singleton's pid, starting it if `name` is a `SingletonName`; a bare
        key only looks (None if nothing runs under it)."""
        if name.__class__ is SingletonName:
            key, start = name.pkey, name
        else:
            key, start = paxos_key(name), None
        node = current_node()
        cache = name_cache(node)
        pid = cache.pids.get(key)
        if pid is not None and (pid.node != node.name or is_alive(pid)):
            return pid
        outcome = call(cache.server, Resolve(key, start), timeout=RESOLVE_TIMEOUT * 1.5)
        if outcome[0] == "ok":
            found: Pid | None = outcome[1]
            return found
        raise outcome[1]

    def send(self, name: Any, msg: Any) -> None:
        pid = self.whereis_name(name)
        if pid is None:
            raise NoProc(Via(self, name), "no singleton runs under this key")
        send_to_pid(pid, msg)

    def register_name(self, name: Any, pid: Pid) -> bool:
        """Bind the key to `pid`, a live process of this node (``start_link(name=via)``);
        False if the key is taken."""
        if not isinstance(pid, Pid) or pid.node != current_node().name:
            raise ValueError(f"only a process of this node can be registered here, got {pid!r}")
        key = _pkey(name)
        deadline = Deadline(REGISTER_TIMEOUT)
        term = lease_term(deadline)
        reg = propose(NAMES_BUCKET, key, register_pid(pid, pid.node), deadline)
        while running_pid(reg) == pid:
            if paxos.hold(pid, NAMES_BUCKET, key, reg.epoch, term):
                return True
            term = lease_term(deadline)
            reg = propose(NAMES_BUCKET, key, identity, deadline)
        return False

    def unregister_name(self, name: Any) -> None:
        """Release the key if the calling process is the one bound to it."""
        key = _pkey(name)
        deadline = Deadline(REGISTER_TIMEOUT)
        reg = propose(NAMES_BUCKET, key, identity, deadline)
        me = self_pid()
        if running_pid(reg) == me:
            ended = ended_binding(reg.epoch, me, UNREGISTERED)
            end_tenure(NAMES_BUCKET, key, release_if_bound(ended, empty_released), ended, deadline)


#: The Via module of every singleton name.
SINGLETONS = _Singletons()


def _pkey(name: Any) -> bytes:
    return name.pkey if name.__class__ is SingletonName else paxos_key(name)


def _child_reference(child_spec: Any) -> tuple[str, tuple[Any, ...]]:
    """``(reference, args)`` for the accepted forms of a singleton child spec."""
    args: tuple[Any, ...]
    if isinstance(child_spec, tuple):
        if len(child_spec) != 2:
            raise TypeError(f"a singleton child spec tuple is (Class or 'pkg.mod:Class', arg), got {child_spec!r}")
        start, args = _reference(child_spec[0]), (child_spec[1],)
    else:
        start, args = _reference(child_spec), ()
    try:
        encode(args)
    except TypeError as exc:
        raise TypeError(f"a singleton's start argument must be a value the wire can carry: {exc}") from None
    try:
        child_spec_of(start, args)  # the same check the home node will make, here and now
    except FunctionRefError as exc:
        raise TypeError(f"cannot use {start!r} as a singleton child spec: {exc}") from None
    return start, args


def _reference(target: Any) -> str:
    if isinstance(target, str):
        return target
    if callable(target):
        try:
            return function_ref(target)
        except FunctionRefError as exc:
            raise TypeError(f"a singleton child spec must be importable on every node: {exc}") from None
    raise TypeError(
        f"not a singleton child spec: {target!r}; use 'pkg.mod:Class', ('pkg.mod:Class', arg), "
        "a class, or (Class, arg) (specs travel as import references)"
    )


# -- the API ------------------------------------------------------------------------------


def name(key: Any, child_spec: Any) -> Via:
    """The name of the cluster singleton for `key`, started from `child_spec` on first use.

    Starts nothing. `key`: any value the wire can carry. `child_spec`:
    ``"pkg.mod:Class"``, ``("pkg.mod:Class", arg)``, a class, ``(Class, arg)``
    or a module-level start function.
    """
    start, args = _child_reference(child_spec)
    return Via(SINGLETONS, SingletonName(key, start, args))


def whereis(via_or_key: Any) -> Pid | None:
    """The pid behind a `Via` (a singleton name is started if needed), or, for a
    bare key, the singleton running under it (None if none: a bare key cannot start one)."""
    pid: Pid | None
    if isinstance(via_or_key, Via):
        pid = via_or_key.module.whereis_name(via_or_key.key)
    else:
        pid = SINGLETONS.whereis_name(via_or_key)
    return pid


def registered() -> list[tuple[Any, Pid]]:
    """The singletons this node hosts: ``[(key, pid), ...]``."""
    return [(user_key, pid) for user_key, pid in name_cache().hosted.values()]
