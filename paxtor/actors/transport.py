"""The sending half of distribution: `NodeTransport`, a distributed node's
``remote`` (the `RemoteTransport` of `paxtor.actors.node`).

Each signal for a remote pid becomes one flat frame (`paxtor.actors.dist_protocol`)
queued on the connection of that pid's node, in call order, so signals
between two processes arrive in send order. While an attempt to connect to
the node is in flight, frames wait here, in order, and go out first when it
comes up (Erlang queues on a pending connection too); if the attempt fails
they are dropped and the node's links and monitors fire "noconnection".
A node neither connected nor being connected is unreachable: the methods
return False and `LocalNode` applies "noconnection" itself.

A remote GenServer call is a monitor of the server and the Call, which
`LocalNode.deliver_call` hands over as one signal (`call`): one frame. Its
reply ends the monitor, as OTP's
``reply_demonitor`` alias does: a process replying to a remote caller that
monitors it under the reply's ref drops that monitor on its side and says
so in the reply's frame; the caller's node drops it too once the reply is
in the mailbox (`LocalNode.end_monitor`), so nothing is left to demonitor.
A remote call is one frame each way, like a raw echo.

A message that cannot be encoded raises TypeError in the sender. An exit
reason that cannot be encoded travels as a `RemoteError` naming its repr
(an exit signal must never be lost). A process that sends faster than the
network drains waits (Erlang's busy dist port).

Remote spawn blocks the caller until the other node answers with the pid;
the caller has recorded its half of the link/monitor before any later
frame (a signal of the new process) is applied.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import structlog
from gevent.hub import Waiter, get_hub
from greenlet import getcurrent

from paxtor.actors.connection import Connection
from paxtor.actors.dist_protocol import (
    CALL_MONITOR,
    REPLY_DEMONITORED,
    NotFromHere,
    call_request_frame,
    demonitor_frame,
    down_frame,
    exit_frame,
    link_frame,
    message_frame,
    monitor_frame,
    named_message_frame,
    reply_demonitored_frame,
    spawn_frame,
    unlink_frame,
)
from paxtor.actors.errors import PaxtorError
from paxtor.actors.function_ref import function_ref
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.messages import Reply
from paxtor.actors.process import PROCESS_ATTR
from paxtor.actors.wire import RemoteError, encode

if TYPE_CHECKING:
    from paxtor.actors.distribution import DistributedNode

__all__ = ["NodeTransport", "NodeUnreachable", "RemoteSpawnError"]

log = structlog.get_logger(__name__)

_WAITING: Any = object()


class NodeUnreachable(PaxtorError, ConnectionError):
    """The node named is not connected (and could not be connected)."""


class RemoteSpawnError(PaxtorError, RuntimeError):
    """The other node could not start the process (e.g. it cannot import
    the function); `node`, `function` and the remote `reason` say why."""

    def __init__(self, node: str, function: str, reason: str) -> None:
        super().__init__(f"node {node!r} could not spawn {function}: {reason}")
        self.node = node
        self.function = function
        self.reason = reason


class _PendingSpawn:
    """A remote spawn waiting for its SpawnReply."""

    __slots__ = ("waiter", "node", "function", "link", "watcher", "ref", "abandoned")

    def __init__(self, node: str, function: str, link: Pid | None, watcher: Pid | None, ref: Ref | None) -> None:
        self.waiter = Waiter()
        self.node = node
        self.function = function
        self.link = link
        self.watcher = watcher
        self.ref = ref
        #: the caller's exit reason once it stopped waiting (it was killed)
        self.abandoned: Any = _WAITING


class _Held:
    """Frames for a node being connected, in order, with their encoded size."""

    __slots__ = ("frames", "size")

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.size = 0


def _unencodable(reason: Any) -> RemoteError:
    """What an exit reason the codec cannot carry becomes on the wire."""
    return RemoteError("paxtor.actors.distribution.UnencodableReason", repr(reason)[:2000])


def _target_node(target: Any) -> str:
    return target.node if target.__class__ is Pid else target[1]


class NodeTransport:
    """A distributed node's RemoteTransport (see the module doc)."""

    __slots__ = ("name", "up", "dist", "_held", "_spawns", "_requests")

    def __init__(self, dist: DistributedNode, up: dict[str, Connection]) -> None:
        self.name = dist.name
        #: peer name -> its connection (shared with PeerConnections)
        self.up = up
        self.dist = dist
        self._held: dict[str, _Held] = {}
        self._spawns: dict[int, _PendingSpawn] = {}
        self._requests = itertools.count(1)

    # -- messages (the hot path) ------------------------------------------------

    def send(self, to: Pid, msg: Any) -> bool:
        conn = self.up.get(to.node)
        if conn is None:
            return self._hold(to.node, message_frame(self.name, to, msg))
        if msg.__class__ is Reply and self._reply_ending_monitor(conn, to, msg):
            return True
        conn.send(message_frame(self.name, to, msg))  # TypeError here if msg cannot be encoded
        if conn.busy:
            _wait_drained(conn)
        return True

    def send_named(self, name: str, node_name: str, msg: Any) -> bool:
        conn = self.up.get(node_name)
        if conn is None:
            return self._hold(node_name, named_message_frame(self.name, name, msg))
        conn.send(named_message_frame(self.name, name, msg))
        if conn.busy:
            _wait_drained(conn)
        return True

    def call(self, caller: Pid, target: Any, ref: Ref, request: Any) -> bool:
        """A GenServer call's request: `caller` monitors `target` (a Pid or
        (name, node)) under `ref`, and the Call follows, in one frame."""
        if caller.node != self.name or ref.node != self.name:
            raise NotFromHere(f"{caller!r} / {ref!r}: not a caller of node {self.name!r}")
        if target.__class__ is Pid:  # `call_request_frame`, inlined
            node_name = target.node
            frame: tuple[Any, ...] = (CALL_MONITOR, target.incarnation, target.serial, caller.incarnation,
                                      caller.serial, ref.incarnation, ref.serial, request)
        else:
            node_name = target[1]
            frame = call_request_frame(target, caller, ref, request)
        conn = self.up.get(node_name)
        if conn is None:
            return self._hold(node_name, frame)
        try:
            conn.send(frame)
        except (TypeError, ValueError):
            conn.send(monitor_frame(self.name, caller, target, ref))  # the monitor alone; the Call raises
            raise
        if conn.busy:
            _wait_drained(conn)
        return True

    def reply_demonitored(self, to: Pid, ref: Ref, value: Any) -> bool:
        """A call's reply for `to`, whose monitor under `ref` on the replying
        process the caller (the node) drops as this is sent; False (nothing
        sent) if `to`'s node is not connected."""
        conn = self.up.get(to.node)
        if conn is None:
            return False
        conn.send((REPLY_DEMONITORED, to.incarnation, to.serial, ref.incarnation, ref.serial, value))
        return True

    def send_frame(self, conn: Connection, frame: tuple[Any, ...]) -> None:
        """Any other frame for `conn`, in order with the signals."""
        conn.send(frame)

    # -- links, exits, monitors ------------------------------------------------------

    def link(self, frm: Pid, to: Pid) -> bool:
        return self._post(to.node, link_frame, frm, to)

    def unlink(self, frm: Pid, to: Pid) -> bool:
        return self._post(to.node, unlink_frame, frm, to)

    def exit(self, frm: Pid, to: Pid, reason: Any, via_link: bool) -> bool:
        try:
            return self._post(to.node, exit_frame, frm, to, reason, via_link)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, NotFromHere):
                raise
            log.warning("unencodable_exit_reason", frm=repr(frm), to=repr(to), reason=repr(reason)[:200])
            return self._post(to.node, exit_frame, frm, to, _unencodable(reason), via_link)

    def monitor(self, watcher: Pid, target: Any, ref: Ref) -> bool:
        return self._post(_target_node(target), monitor_frame, watcher, target, ref)

    def demonitor(self, watcher: Pid, target: Any, ref: Ref) -> bool:
        return self._post(_target_node(target), demonitor_frame, watcher, target, ref)

    def down(self, watcher: Pid, ref: Ref, target: Any, reason: Any) -> bool:
        try:
            return self._post(watcher.node, down_frame, watcher, ref, target, reason)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, NotFromHere):
                raise
            log.warning(
                "unencodable_exit_reason", watcher=repr(watcher), target=repr(target), reason=repr(reason)[:200]
            )
            return self._post(watcher.node, down_frame, watcher, ref, target, _unencodable(reason))

    def _post(self, node_name: str, make_frame: Callable[..., tuple[Any, ...]], *args: Any) -> bool:
        frame = make_frame(self.name, *args)
        conn = self.up.get(node_name)
        if conn is None:
            return self._hold(node_name, frame)
        conn.send(frame)
        return True

    # -- a call's reply ends its monitor ------------------------------------------------

    def _reply_ending_monitor(self, conn: Connection, to: Pid, reply: Reply) -> bool:
        """Send `reply` as the end of `to`'s monitor on the replying process,
        if `to` monitors it under the reply's ref (a call's reply)."""
        proc = getattr(getcurrent(), PROCESS_ATTR, None)
        if proc is None or proc.node is not self.dist.local:
            return False
        ref = reply.ref
        held = proc.monitored_by.get(ref)
        if held is None or ref.node != to.node:
            return False
        watcher = held[0]
        if watcher is not to and watcher != to:
            return False
        conn.send(reply_demonitored_frame(self.name, to, reply))
        self.dist.local.deliver_demonitor(to, proc.pid, ref)  # as if `to` had sent it
        return True

    # -- a node being connected -------------------------------------------------------

    def _hold(self, node_name: str, frame: Any) -> bool:
        """Keep `frame` for `node_name` if an attempt to reach it is in flight."""
        if not self.dist.peers.reaching(node_name):
            return False
        size = len(encode(frame))  # unencodable: TypeError in the sender, as on a connection
        config = self.dist.config
        if size > config.max_frame_size:
            raise ValueError(f"message of {size} bytes exceeds the frame limit of {config.max_frame_size}")
        held = self._held.get(node_name)
        if held is None:
            held = self._held[node_name] = _Held()
        if held.size + size > config.busy_limit:
            log.warning(
                "held_frame_dropped", node=self.dist.name, peer=node_name, reason="too much waiting for the connection"
            )
            return False
        held.frames.append(frame)
        held.size += size
        return True

    def release_held(self, conn: Connection) -> None:
        """The peer of `conn` is up: send what waited for it, first."""
        assert conn.peer is not None
        held = self._held.pop(conn.peer.name, None)
        if held is not None:
            for frame in held.frames:
                conn.send(frame)

    def held_for(self) -> list[str]:
        """The nodes that frames are waiting for."""
        return list(self._held)

    def drop_held(self, node_name: str) -> int:
        """The attempt to reach `node_name` failed: forget what waited for it."""
        held = self._held.pop(node_name, None)
        return len(held.frames) if held is not None else 0

    # -- remote spawn ---------------------------------------------------------------------

    def spawn(
        self,
        node_name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        link: Pid | None,
        monitor: tuple[Pid, Ref] | None,
    ) -> Pid:
        """Start ``fn(*args, **kwargs)`` on `node_name`; block until it answers."""
        ref_text = function_ref(fn)  # a clear TypeError here, in the caller
        dist = self.dist
        if node_name not in self.up and not dist.connect(node_name, timeout=dist.config.handshake_timeout):
            raise NodeUnreachable(f"cannot spawn on node {node_name!r}: it is not connected to {dist.name!r}")
        conn = self.up[node_name]
        watcher, ref = monitor if monitor is not None else (None, None)
        request = next(self._requests)
        self.send_frame(
            conn, spawn_frame(self.name, request, ref_text, args, kwargs, link, watcher, ref)
        )  # TypeError: bad args
        pending = self._spawns[request] = _PendingSpawn(node_name, ref_text, link, watcher, ref)
        try:
            return pending.waiter.get()
        except BaseException as exc:
            if request in self._spawns:
                # The caller stopped waiting (it was killed): when the pid
                # comes back, undo the link/monitor as its death would have.
                pending.abandoned = getattr(exc, "reason", "killed")
            raise

    def spawn_replied(self, peer: str, request: int, pid: Pid | None, error: str | None) -> None:
        """The answer to a remote spawn arrived from node `peer` (in the connection's reader
        greenlet). Only the node asked may answer: a peer cannot speak for a third node."""
        pending = self._spawns.get(request)
        if pending is None:
            return
        if pending.node != peer or (pid is not None and pid.node != peer):
            log.warning("spawn_reply_ignored", node=self.name, peer=peer, asked=pending.node, pid=repr(pid))
            return
        del self._spawns[request]
        loop = get_hub().loop
        if pending.abandoned is not _WAITING:
            if pid is not None:
                self._undo_spawn(pending, pid)
            return
        if pid is None:
            loop.run_callback(pending.waiter.throw, RemoteSpawnError(pending.node, pending.function, error or "no pid"))
            return
        loop.run_callback(pending.waiter.switch, pid)
        if pending.link is not None or pending.watcher is not None:
            # Let the caller run first: it records its half of the link /
            # monitor before any later frame (a signal of the new process) is
            # applied. Callbacks run in order, so the caller resumes first.
            conn = self.up.get(pending.node)  # the connection this reply came on
            if conn is not None:
                conn.defer_rest()
            elif getcurrent() is not get_hub():
                gevent.sleep(0)

    def _undo_spawn(self, pending: _PendingSpawn, pid: Pid) -> None:
        if pending.link is not None:
            self.exit(pending.link, pid, pending.abandoned, True)
        if pending.watcher is not None and pending.ref is not None:
            self.demonitor(pending.watcher, pid, pending.ref)

    def node_lost(self, name: str) -> None:
        """`name` is down or unreachable: fail the remote spawns waiting on it."""
        loop = get_hub().loop
        for request, pending in list(self._spawns.items()):
            if pending.node == name:
                del self._spawns[request]
                if pending.abandoned is _WAITING:
                    error = NodeUnreachable(f"node {name!r} went down before answering spawn of {pending.function}")
                    loop.run_callback(pending.waiter.throw, error)


def _wait_drained(conn: Connection) -> None:
    """Erlang's busy dist port: a process that outruns the network waits
    (never the hub, nor a connection's own greenlets)."""
    current = getcurrent()
    proc = getattr(current, PROCESS_ATTR, None)
    if proc is not None and proc.alive and current is not get_hub():
        conn.wait_drained()
