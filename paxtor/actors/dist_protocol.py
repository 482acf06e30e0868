"""The frames nodes exchange: one per operation of the distribution seam,
plus remote spawn and goodbye. Pure: builds and reads frames, no I/O.

A frame is a flat tuple ``(opcode, field, ...)``, encoded by the wire codec
like any value. Flat on purpose: a nested frame (dataclasses holding Pids
holding strings) costs the codec one Python callback per object, and a
remote call is four frames (the README's "How it compares" gives the figure).

Pids and refs travel as ``(incarnation, serial)`` pairs, without their node:
a frame only ever concerns a process of the sending node and one of the
receiving node, and says which is which. So the reader rebuilds the sender's
pids with the *authenticated* peer name: a peer cannot relay signals or
speak for a third node, by construction. The encoders check that side of
the contract (`NotFromHere`).

GenServer's `Call` / `Reply` / `Cast` messages have flat forms too (the
common case of a message); any other message, and a Call or Reply not
between the two nodes' own processes, travels whole as a `SEND`.

Importing this module registers the runtime's mailbox values (`Exit`,
`Down`, `Reply`, `Caller`, `Call`, `Cast`) with the codec, so they also
cross the wire as themselves inside other messages.

    SEND          to, msg                      deliver_message
    SEND_NAMED    name, msg                    deliver_named
    CALL          to, caller, ref, request     deliver_message(to, Call(Caller(caller, ref), request))
    CALL_NAMED    name, caller, ref, request   deliver_named
    REPLY         to, ref, value               deliver_message(to, Reply(ref, value))
    CAST          to, msg                      deliver_message(to, Cast(msg))
    CAST_NAMED    name, msg                    deliver_named
    LINK/UNLINK   frm, to                      deliver_link / deliver_unlink
    EXIT          frm, to, reason, via_link    deliver_exit
    MONITOR[_NAME]   watcher, target, ref      deliver_monitor (target: a pid, or a name here)
    DEMONITOR[_NAME] watcher, target, ref      deliver_demonitor
    DOWN[_NAME]   watcher, ref, target, reason deliver_down (target: a pid, or a name there)
    SPAWN         request, "module:qualname", args, kwargs, link, watcher, ref
    SPAWN_REPLY   request, pid or None, error or None
    GOODBYE       reason                       the sender stops; nothing follows
    MESH          own info, peers' infos       the sender's view (`paxtor.actors.mesh`): first
                                               on every connection, again when it changes
    CALL_MONITOR[_NAMED]  to, caller, ref, request   deliver_monitor(caller, to, ref), then CALL
    REPLY_DEMONITORED     to, ref, value             REPLY, then end_monitor(to, ref): the
                                                     sender dropped its side of monitor `ref`
"""

from __future__ import annotations

from typing import Any, Protocol

from paxtor.actors.errors import PaxtorError
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.mesh import NodeInfo, info_to_wire, view_from_wire
from paxtor.actors.messages import Call, Caller, Cast, Down, Exit, Reply, StopRequest
from paxtor.actors.wire import wire_type

__all__ = [
    "ProtocolError",
    "NotFromHere",
    "message_frame",
    "named_message_frame",
    "link_frame",
    "unlink_frame",
    "exit_frame",
    "monitor_frame",
    "demonitor_frame",
    "down_frame",
    "spawn_frame",
    "spawn_reply_frame",
    "goodbye_frame",
    "mesh_frame",
    "call_monitor_frame",
    "call_request_frame",
    "reply_demonitored_frame",
    "apply_frame",
    "SignalSink",
    "SPAWN",
    "SPAWN_REPLY",
    "GOODBYE",
    "MESH",
]

for _cls in (Exit, Down, Reply, Caller, Call, Cast, StopRequest):
    wire_type(_cls, name=f"actors.{_cls.__name__}")
del _cls

(
    SEND,
    SEND_NAMED,
    CALL,
    CALL_NAMED,
    REPLY,
    CAST,
    CAST_NAMED,
    LINK,
    UNLINK,
    EXIT,
    MONITOR,
    MONITOR_NAME,
    DEMONITOR,
    DEMONITOR_NAME,
    DOWN,
    DOWN_NAME,
    SPAWN,
    SPAWN_REPLY,
    GOODBYE,
    CALL_MONITOR,
    CALL_MONITOR_NAMED,
    REPLY_DEMONITORED,
    MESH,
) = range(1, 24)


class ProtocolError(PaxtorError, ValueError):
    """A frame that is not one of ours (the connection cannot be trusted)."""


class NotFromHere(PaxtorError, ValueError):
    """A signal whose sending side is not a process of this node (a bug)."""


# -- encoding (here: this node's name; the peer's pids are known by routing) --------


def _mine(here: str, pid: Any) -> None:
    if pid.node != here:
        raise NotFromHere(f"{pid!r} is not a process of node {here!r}")


def message_frame(here: str, to: Pid, msg: Any) -> tuple[Any, ...]:
    """`msg` for `to` (a process of the peer)."""
    cls = msg.__class__
    if cls is Call:
        caller = msg.caller
        if caller.__class__ is Caller:
            pid, ref = caller.pid, caller.ref
            if pid.node == here and ref.node == here:
                return (CALL, to.incarnation, to.serial, pid.incarnation, pid.serial,
                        ref.incarnation, ref.serial, msg.request)
    elif cls is Reply:
        ref = msg.ref
        if ref.node == to.node:
            return (REPLY, to.incarnation, to.serial, ref.incarnation, ref.serial, msg.value)
    elif cls is Cast:
        return (CAST, to.incarnation, to.serial, msg.msg)
    return (SEND, to.incarnation, to.serial, msg)


def named_message_frame(here: str, name: str, msg: Any) -> tuple[Any, ...]:
    """`msg` for the process registered as `name` on the peer."""
    cls = msg.__class__
    if cls is Call:
        caller = msg.caller
        if caller.__class__ is Caller:
            pid, ref = caller.pid, caller.ref
            if pid.node == here and ref.node == here:
                return (CALL_NAMED, name, pid.incarnation, pid.serial, ref.incarnation, ref.serial, msg.request)
    elif cls is Cast:
        return (CAST_NAMED, name, msg.msg)
    return (SEND_NAMED, name, msg)


def call_monitor_frame(target: Any, call: Call) -> tuple[Any, ...]:
    """A monitor of `target` by the caller of `call` under the call's ref,
    then `call` for `target`, in one frame: the whole of a remote GenServer
    call's request. The caller's pid and ref must be of this node."""
    caller = call.caller
    return call_request_frame(target, caller.pid, caller.ref, call.request)


def call_request_frame(target: Any, caller: Pid, ref: Ref, request: Any) -> tuple[Any, ...]:
    """`call_monitor_frame` from the call's parts (no Call to build first)."""
    if target.__class__ is Pid:
        return (CALL_MONITOR, target.incarnation, target.serial, caller.incarnation, caller.serial,
                ref.incarnation, ref.serial, request)
    return (CALL_MONITOR_NAMED, target[0], caller.incarnation, caller.serial, ref.incarnation, ref.serial, request)


def reply_demonitored_frame(here: str, to: Pid, reply: Reply) -> tuple[Any, ...]:
    """`reply` for `to`, whose monitor on the replying process under the
    reply's ref the sender has dropped (so `to` need not demonitor)."""
    ref = reply.ref
    if ref.node != to.node:
        raise NotFromHere(f"{ref!r} is not a ref of node {to.node!r}")
    return (REPLY_DEMONITORED, to.incarnation, to.serial, ref.incarnation, ref.serial, reply.value)


def link_frame(here: str, frm: Pid, to: Pid) -> tuple[Any, ...]:
    _mine(here, frm)
    return (LINK, frm.incarnation, frm.serial, to.incarnation, to.serial)


def unlink_frame(here: str, frm: Pid, to: Pid) -> tuple[Any, ...]:
    _mine(here, frm)
    return (UNLINK, frm.incarnation, frm.serial, to.incarnation, to.serial)


def exit_frame(here: str, frm: Pid, to: Pid, reason: Any, via_link: bool) -> tuple[Any, ...]:
    _mine(here, frm)
    return (EXIT, frm.incarnation, frm.serial, to.incarnation, to.serial, reason, bool(via_link))


def monitor_frame(here: str, watcher: Pid, target: Any, ref: Ref) -> tuple[Any, ...]:
    _mine(here, watcher)
    _mine(here, ref)
    if target.__class__ is Pid:
        return (MONITOR, watcher.incarnation, watcher.serial, target.incarnation, target.serial,
                ref.incarnation, ref.serial)
    return (MONITOR_NAME, watcher.incarnation, watcher.serial, target[0], ref.incarnation, ref.serial)


def demonitor_frame(here: str, watcher: Pid, target: Any, ref: Ref) -> tuple[Any, ...]:
    _mine(here, watcher)
    _mine(here, ref)
    if target.__class__ is Pid:
        return (DEMONITOR, watcher.incarnation, watcher.serial, target.incarnation, target.serial,
                ref.incarnation, ref.serial)
    return (DEMONITOR_NAME, watcher.incarnation, watcher.serial, target[0], ref.incarnation, ref.serial)


def down_frame(here: str, watcher: Pid, ref: Ref, target: Any, reason: Any) -> tuple[Any, ...]:
    """Monitor `ref` of `watcher` (a process of the peer) fires for `target` (ours)."""
    if target.__class__ is Pid:
        _mine(here, target)
        return (DOWN, watcher.incarnation, watcher.serial, ref.incarnation, ref.serial,
                target.incarnation, target.serial, reason)
    if target[1] != here:
        raise NotFromHere(f"{target!r} is not a name on node {here!r}")
    return (DOWN_NAME, watcher.incarnation, watcher.serial, ref.incarnation, ref.serial, target[0], reason)


def spawn_frame(
    here: str,
    request: int,
    function: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    link: Pid | None,
    watcher: Pid | None,
    ref: Ref | None,
) -> tuple[Any, ...]:
    """Start ``function(*args, **kwargs)`` on the peer, linked to `link`
    and/or monitored by `watcher` under `ref` (ours), before it runs."""
    link_ids: tuple[int | None, ...] = (None, None)
    watch_ids: tuple[int | None, ...] = (None, None, None, None)
    if link is not None:
        _mine(here, link)
        link_ids = (link.incarnation, link.serial)
    if watcher is not None and ref is not None:
        _mine(here, watcher)
        _mine(here, ref)
        watch_ids = (watcher.incarnation, watcher.serial, ref.incarnation, ref.serial)
    return (SPAWN, request, function, tuple(args), dict(kwargs), *link_ids, *watch_ids)


def spawn_reply_frame(here: str, request: int, pid: Pid | None, error: str | None) -> tuple[Any, ...]:
    if pid is None:
        return (SPAWN_REPLY, request, None, None, error)
    _mine(here, pid)
    return (SPAWN_REPLY, request, pid.incarnation, pid.serial, None)


def goodbye_frame(reason: str) -> tuple[Any, ...]:
    return (GOODBYE, reason)


def mesh_frame(own: NodeInfo, peers: list[NodeInfo]) -> tuple[Any, ...]:
    """This node's view for a peer: its own info and its visible peers'."""
    return (MESH, info_to_wire(own), tuple(info_to_wire(p) for p in peers))


# -- applying: a frame -> the call it stands for ---------------------------------------------


class SignalSink(Protocol):
    """What frames are applied to: a LocalNode's deliver_* methods."""

    def deliver_message(self, to: Pid, msg: Any) -> None: ...
    def deliver_named(self, name: str, node_name: str, msg: Any) -> None: ...
    def deliver_link(self, frm: Pid, to: Pid) -> None: ...
    def deliver_unlink(self, frm: Pid, to: Pid) -> None: ...
    def deliver_exit(self, frm: Pid, to: Pid, reason: Any, via_link: bool) -> None: ...
    def deliver_monitor(self, watcher: Pid, target: Any, ref: Ref) -> None: ...
    def deliver_demonitor(self, watcher: Pid, target: Any, ref: Ref) -> None: ...
    def deliver_down(self, watcher: Pid, ref: Ref, target: Any, reason: Any) -> None: ...
    def end_monitor(self, watcher: Pid, ref: Ref) -> bool: ...
    def deliver_call_monitor(self, caller: Caller, incarnation: int, serial: int, request: Any) -> None: ...
    def deliver_reply_demonitored(self, incarnation: Any, serial: Any, ref: Ref, value: Any) -> None: ...


def _bad_ids(*ids: Any) -> bool:
    for value in ids:
        if value.__class__ is not int:
            return True
    return False


def _name(name: Any) -> str:
    if name.__class__ is not str:
        raise ProtocolError("a registered name is a str")
    return name


def _send(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, inc, serial, msg = f
    node.deliver_message(Pid(here, inc, serial), msg)


def _send_named(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, name, msg = f
    node.deliver_named(_name(name), here, msg)


def _caller(peer: str, c_inc: Any, c_serial: Any, r_inc: Any, r_serial: Any) -> Caller:
    if c_inc.__class__ is not int or c_serial.__class__ is not int or r_inc.__class__ is not int \
            or r_serial.__class__ is not int:
        raise ProtocolError("bad caller ids")
    return Caller(Pid(peer, c_inc, c_serial), Ref(peer, r_inc, r_serial))


def _call(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, inc, serial, c_inc, c_serial, r_inc, r_serial, request = f
    node.deliver_message(Pid(here, inc, serial), Call(_caller(peer, c_inc, c_serial, r_inc, r_serial), request))


def _call_named(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, name, c_inc, c_serial, r_inc, r_serial, request = f
    node.deliver_named(_name(name), here, Call(_caller(peer, c_inc, c_serial, r_inc, r_serial), request))


def _call_monitor(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, inc, serial, c_inc, c_serial, r_inc, r_serial, request = f
    if c_inc.__class__ is not int or c_serial.__class__ is not int or r_inc.__class__ is not int \
            or r_serial.__class__ is not int:
        raise ProtocolError("bad caller ids")
    if inc.__class__ is not int or serial.__class__ is not int:
        raise ProtocolError("bad process ids")
    node.deliver_call_monitor(Caller(Pid(peer, c_inc, c_serial), Ref(peer, r_inc, r_serial)), inc, serial, request)


def _call_monitor_named(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, name, c_inc, c_serial, r_inc, r_serial, request = f
    caller = _caller(peer, c_inc, c_serial, r_inc, r_serial)
    node.deliver_monitor(caller.pid, (_name(name), here), caller.ref)
    node.deliver_named(name, here, Call(caller, request))


def _reply(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, inc, serial, r_inc, r_serial, value = f
    node.deliver_message(Pid(here, inc, serial), Reply(Ref(here, r_inc, r_serial), value))


def _reply_demonitored(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, inc, serial, r_inc, r_serial, value = f
    node.deliver_reply_demonitored(inc, serial, Ref(here, r_inc, r_serial), value)


def _cast(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, inc, serial, msg = f
    node.deliver_message(Pid(here, inc, serial), Cast(msg))


def _cast_named(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, name, msg = f
    node.deliver_named(_name(name), here, Cast(msg))


def _pair(f: tuple, peer: str, here: str) -> tuple[Pid, Pid]:
    _, f_inc, f_serial, t_inc, t_serial = f
    if _bad_ids(f_inc, f_serial, t_inc, t_serial):
        raise ProtocolError("bad process ids")
    return Pid(peer, f_inc, f_serial), Pid(here, t_inc, t_serial)


def _link(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    node.deliver_link(*_pair(f, peer, here))


def _unlink(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    node.deliver_unlink(*_pair(f, peer, here))


def _exit(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, f_inc, f_serial, t_inc, t_serial, reason, via_link = f
    if _bad_ids(f_inc, f_serial, t_inc, t_serial):
        raise ProtocolError("bad process ids")
    node.deliver_exit(Pid(peer, f_inc, f_serial), Pid(here, t_inc, t_serial), reason, via_link is True)


def _watch(f: tuple, peer: str, here: str) -> tuple[Pid, Any, Ref]:
    _, w_inc, w_serial, t_inc, t_serial, r_inc, r_serial = f
    if _bad_ids(w_inc, w_serial, t_inc, t_serial, r_inc, r_serial):
        raise ProtocolError("bad process or ref ids")
    return Pid(peer, w_inc, w_serial), Pid(here, t_inc, t_serial), Ref(peer, r_inc, r_serial)


def _watch_name(f: tuple, peer: str, here: str) -> tuple[Pid, Any, Ref]:
    _, w_inc, w_serial, name, r_inc, r_serial = f
    if _bad_ids(w_inc, w_serial, r_inc, r_serial):
        raise ProtocolError("bad process or ref ids")
    return Pid(peer, w_inc, w_serial), (_name(name), here), Ref(peer, r_inc, r_serial)


def _monitor(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    node.deliver_monitor(*_watch(f, peer, here))


def _monitor_name(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    node.deliver_monitor(*_watch_name(f, peer, here))


def _demonitor(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    node.deliver_demonitor(*_watch(f, peer, here))


def _demonitor_name(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    node.deliver_demonitor(*_watch_name(f, peer, here))


def _down(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, w_inc, w_serial, r_inc, r_serial, t_inc, t_serial, reason = f
    if _bad_ids(w_inc, w_serial, r_inc, r_serial, t_inc, t_serial):
        raise ProtocolError("bad process or ref ids")
    node.deliver_down(Pid(here, w_inc, w_serial), Ref(here, r_inc, r_serial), Pid(peer, t_inc, t_serial), reason)


def _down_name(f: tuple, peer: str, here: str, node: SignalSink) -> None:
    _, w_inc, w_serial, r_inc, r_serial, name, reason = f
    if _bad_ids(w_inc, w_serial, r_inc, r_serial):
        raise ProtocolError("bad process or ref ids")
    node.deliver_down(Pid(here, w_inc, w_serial), Ref(here, r_inc, r_serial), (_name(name), peer), reason)


def _spawn(f: tuple, peer: str, here: str, node: SignalSink) -> tuple[str, tuple]:
    _, request, function, args, kwargs, l_inc, l_serial, w_inc, w_serial, r_inc, r_serial = f
    if request.__class__ is not int or function.__class__ is not str:
        raise ProtocolError("bad spawn request")
    if args.__class__ is not tuple or kwargs.__class__ is not dict or any(k.__class__ is not str for k in kwargs):
        raise ProtocolError("spawn arguments must be a tuple and a dict with str keys")
    link = watch = None
    if l_inc is not None:
        if _bad_ids(l_inc, l_serial):
            raise ProtocolError("bad link ids")
        link = Pid(peer, l_inc, l_serial)
    if w_inc is not None:
        if _bad_ids(w_inc, w_serial, r_inc, r_serial):
            raise ProtocolError("bad monitor ids")
        watch = (Pid(peer, w_inc, w_serial), Ref(peer, r_inc, r_serial))
    return "spawn", (request, function, args, kwargs, link, watch)


def _spawn_reply(f: tuple, peer: str, here: str, node: SignalSink) -> tuple[str, tuple]:
    _, request, inc, serial, error = f
    if request.__class__ is not int or (error is not None and error.__class__ is not str):
        raise ProtocolError("bad spawn reply")
    if inc is None:
        return "spawn_reply", (request, None, error or "no pid")
    if _bad_ids(inc, serial):
        raise ProtocolError("bad pid in spawn reply")
    return "spawn_reply", (request, Pid(peer, inc, serial), None)


def _goodbye(f: tuple, peer: str, here: str, node: SignalSink) -> tuple[str, tuple]:
    _, reason = f
    return "goodbye", (str(reason)[:200],)


def _mesh(f: tuple, peer: str, here: str, node: SignalSink) -> tuple[str, tuple]:
    _, own, peers = f
    return "mesh", view_from_wire(own, peers)


_APPLY: tuple[Any, ...] = (
    None, _send, _send_named, _call, _call_named, _reply, _cast, _cast_named, _link, _unlink, _exit,
    _monitor, _monitor_name, _demonitor, _demonitor_name, _down, _down_name, _spawn, _spawn_reply, _goodbye,
    _call_monitor, _call_monitor_named, _reply_demonitored, _mesh,
)


def apply_frame(frame: Any, peer: str, here: str, node: SignalSink) -> tuple[str, tuple] | None:
    """Apply a frame from node `peer` to node `here`: a signal becomes the
    ``deliver_*`` call(s) it stands for on `node` (returns None); spawn,
    spawn_reply, goodbye and mesh come back as ``(operation, arguments)`` for the
    distribution layer. Raises ProtocolError for anything else."""
    try:
        op = frame[0] if frame.__class__ is tuple else None
        if op.__class__ is not int or not 0 < op < len(_APPLY):
            raise ProtocolError(f"not a frame: {str(frame)[:100]}")
        return _APPLY[op](frame, peer, here, node)
    except (IndexError, ValueError, TypeError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"malformed frame: {exc}") from None
