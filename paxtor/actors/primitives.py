"""The process primitives user code calls: spawn, send, receive, link,
monitor, exit, trap_exits, self_pid (Erlang's BIFs).

They act for the *current process*. A greenlet the runtime did not spawn
(the main greenlet, a test body, a gevent.pywsgi request handler) becomes a
process of the current node the first time it needs to be one (`self_pid`,
`receive`, `link`, `monitor`, `spawn_link`, `call`...): see
`paxtor.actors.process` for what exit signals do to such adopted greenlets.
`send` and `spawn` need no process and adopt nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greenlet import getcurrent

from paxtor.actors.ids import Pid, Ref
from paxtor.actors.mailbox import check_timeout
from paxtor.actors.messages import Down, NoProc, NotDistributed, ProcessExit
from paxtor.actors.node import LocalNode, current_node, get_node
from paxtor.actors.process import PROCESS_ATTR, Process
from paxtor.actors.registry import Via, resolve

__all__ = [
    "current_process",
    "self_pid",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "make_ref",
    "send",
    "receive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exits",
    "is_alive",
]

_MISSING: Any = object()


def current_process() -> Process:
    """The process of the current greenlet, adopting the greenlet if needed.

    For an adopted (soft) greenlet whose process was ended by an exit
    signal, raises that `ProcessExit` once; the call after adopts anew.
    """
    g = getcurrent()
    try:
        proc: Process = getattr(g, PROCESS_ATTR)
    except AttributeError:
        return current_node().adopt(g)
    if proc.alive:
        return proc
    if proc.soft:
        proc.detach()
        exc = proc.mailbox.interrupt
        if exc is not None:
            proc.mailbox.interrupt = None
            raise exc
        return current_node().adopt(g)
    # A spawned process running code after its exit (its node stopped, and
    # it runs on until its next switch): still itself, but its mailbox
    # raises ProcessExit at the next receive.
    return proc


def self_pid() -> Pid:
    """The pid of the current process (adopting the current greenlet)."""
    return current_process().pid


# -- spawning ----------------------------------------------------------------------


def _target_node(here: LocalNode, node: Any) -> LocalNode | None:
    if node is None:
        return here
    if isinstance(node, LocalNode):
        if not node.running:
            raise RuntimeError(f"node {node.name!r} is stopped")
        return node
    if not isinstance(node, str):
        raise TypeError(f"node= takes a node name, got {node!r}")
    if node == here.name:
        return here
    return get_node(node)


def spawn_opt(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    node: Any = None,
    link: bool = False,
    monitor_ref: Ref | None = None,
) -> Pid:
    """Erlang's spawn_opt: `spawn` with the link and/or the monitor (under a
    ref the caller made with ``make_ref``) installed before the process runs."""
    if not callable(fn):
        raise TypeError(f"spawn() needs a callable, got {fn!r}")
    if kwargs is None:
        kwargs = {}
    me = current_process() if (link or monitor_ref is not None) else None
    here = me.node if me is not None else current_node()
    target = _target_node(here, node)
    my_pid = me.pid if me is not None else None
    link_to = my_pid if link else None
    watch = (my_pid, monitor_ref) if monitor_ref is not None else None
    if target is not None:
        if target is not here and here.remote is None and me is not None:
            raise NotDistributed(
                f"cannot link to or monitor a process on node {target.name!r}: node {here.name!r} "
                "has no distribution attached to carry its exit signal (plain spawn works)"
            )
        pid = target.spawn(fn, args, kwargs, link=link_to, monitor=watch).pid  # type: ignore[arg-type]
    else:
        remote = here.remote
        if remote is None:
            raise NotDistributed(
                f"cannot spawn on node {node!r}: it is not a node of this OS process "
                f"and node {here.name!r} has no distribution attached"
            )
        pid = remote.spawn(node, fn, args, kwargs, link_to, watch)  # type: ignore[arg-type]
    if me is not None:
        remote_node = pid.node != here.name
        if link:
            me.links[pid] = None
            if remote_node:
                here._edges(pid.node).links[(my_pid, pid)] = None  # type: ignore[index]
        if monitor_ref is not None:
            me.monitors[monitor_ref] = pid
            if remote_node:
                here._edges(pid.node).monitors_out[monitor_ref] = (my_pid, pid)  # type: ignore[assignment]
    return pid


def make_ref() -> Ref:
    """A new reference, unique in the current node incarnation."""
    return current_node().make_ref()


def spawn(fn: Callable[..., Any], *args: Any, node: Any = None, **kwargs: Any) -> Pid:
    """Start a process running ``fn(*args, **kwargs)`` and return its pid.

    `node` names the node to run it on: the current one by default, another
    node of this OS process, or (through distribution) a remote node.
    """
    return spawn_opt(fn, args, kwargs, node=node)


def spawn_link(fn: Callable[..., Any], *args: Any, node: Any = None, **kwargs: Any) -> Pid:
    """`spawn`, linked to the caller atomically (before the process runs)."""
    return spawn_opt(fn, args, kwargs, node=node, link=True)


def spawn_monitor(fn: Callable[..., Any], *args: Any, node: Any = None, **kwargs: Any) -> tuple[Pid, Ref]:
    """`spawn`, monitored by the caller atomically; returns (pid, monitor ref)."""
    ref = current_process().node.make_ref()
    return spawn_opt(fn, args, kwargs, node=node, monitor_ref=ref), ref


# -- messages ------------------------------------------------------------------------


def send(dest: Any, msg: Any) -> None:
    """Send `msg` to `dest` (Pid, registered name, (name, node) or Via).

    Never blocks. A message to a dead pid, an unreachable node or a
    ``(name, node)`` that is not registered is dropped silently; a bare name
    that is not registered here raises NoProc (Erlang's badarg, the one
    failing case of ``!``).
    """
    if dest.__class__ is Pid:
        try:
            node = getcurrent()._paxtor_process.node
        except AttributeError:
            node = current_node()
        node.deliver_message(dest, msg)
        return
    if dest.__class__ is Via:
        dest.module.send(dest.key, msg)
        return
    target = resolve(dest)
    if target is None:
        if dest.__class__ is str:
            raise NoProc(dest, "no process is registered under this name")
        return
    node = current_node()
    if isinstance(target, Pid):
        node.deliver_message(target, msg)
    else:
        node.deliver_named(target[0], target[1], msg)


def receive(match: Callable[[Any], bool] | None = None, timeout: float | None = None) -> Any:
    """Take the oldest message of the current process's mailbox for which
    `match(msg)` is true (any message if `match` is None); others stay
    queued in order. `timeout=None` waits forever, ``0`` only looks, else
    seconds; raises ReceiveTimeout when it runs out."""
    if timeout is not None:
        check_timeout(timeout)
    try:
        proc = getcurrent()._paxtor_process
    except AttributeError:
        proc = current_process()
    else:
        if not proc.alive:
            proc = current_process()
    return proc.mailbox.receive(match, timeout)


# -- links, monitors, exits --------------------------------------------------------------


def link(pid: Pid) -> None:
    """Link the current process and `pid` (both ways). Linking to a dead pid
    sends the caller an exit signal "noproc" (an ``Exit(pid, "noproc")``
    message when it traps exits)."""
    if not isinstance(pid, Pid):
        raise TypeError(f"link() takes a Pid, got {pid!r} (use whereis() for names)")
    me = current_process()
    if pid == me.pid or pid in me.links:
        return
    me.links[pid] = None
    me.node.deliver_link(me.pid, pid)
    me.raise_if_killed()


def unlink(pid: Pid) -> None:
    """Remove the link between the current process and `pid`, if any. An
    ``Exit`` message already queued from it stays queued (as in Erlang)."""
    if not isinstance(pid, Pid):
        raise TypeError(f"unlink() takes a Pid, got {pid!r}")
    me = current_process()
    if me.links.pop(pid, _MISSING) is _MISSING:
        return
    me.node.deliver_unlink(me.pid, pid)


def monitor(dest: Any) -> Ref:
    """Monitor `dest`; exactly one ``Down(ref, pid_or_name, reason)`` follows
    its exit (at once, with "noproc", if it is not alive). A monitor taken
    by name reports ``(name, node_name)`` as the Down's pid."""
    me = current_process()
    node = me.node
    ref = node.make_ref()
    cls = dest.__class__
    if cls is Pid:
        target: Any = dest
    elif cls is str:
        target = (dest, node.name)
    elif cls is tuple:
        if len(dest) != 2 or not isinstance(dest[0], str) or not isinstance(dest[1], str):
            raise TypeError(f"a named destination is (name, node_name), got {dest!r}")
        target = dest
    elif cls is Via:
        resolved = dest.module.whereis_name(dest.key)
        if resolved is None:
            me.mailbox.put(Down(ref, dest, "noproc"))
            return ref
        target = resolved
    else:
        raise TypeError(f"not a destination (Pid, name, (name, node) or Via): {dest!r}")
    me.monitors[ref] = target
    node.deliver_monitor(me.pid, target, ref)
    return ref


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Drop monitor `ref`. With `flush`, also remove its Down if already
    queued. Returns True if the monitor was still active."""
    me = current_process()
    target = me.monitors.pop(ref, _MISSING)
    if target is not _MISSING:
        me.node.deliver_demonitor(me.pid, target, ref)
        return True
    if flush:
        me.mailbox.remove_if(lambda m: m.__class__ is Down and m.ref == ref)
    return False


def exit(*args: Any) -> None:
    """``exit(reason)``: end the current process with `reason` (not a crash).
    ``exit(pid, reason)``: send `pid` an exit signal (see the table in
    `paxtor.actors.process`); "kill" cannot be trapped."""
    if len(args) == 1:
        raise ProcessExit(args[0])
    if len(args) != 2:
        raise TypeError(f"exit() takes (reason) or (pid, reason), got {len(args)} arguments")
    pid, reason = args
    if not isinstance(pid, Pid):
        raise TypeError(f"exit(pid, reason) takes a Pid, got {pid!r}")
    me = current_process()
    me.node.deliver_exit(me.pid, pid, reason, False)
    me.raise_if_killed()


def trap_exits(flag: bool = True) -> bool:
    """Set whether the current process turns exit signals into ``Exit``
    messages; returns the previous setting."""
    me = current_process()
    old = me.trap_exits
    me.trap_exits = bool(flag)
    return old


def is_alive(pid: Pid) -> bool:
    """True if `pid` is a live process of a node in this OS process."""
    node = get_node(pid.node)
    if node is None:
        return False
    proc = node.lookup(pid)
    return proc is not None and proc.alive and not proc.killed  # a killed one is gone for its senders
