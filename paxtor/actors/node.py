"""A local node: its processes, names and refs, and the seam to other nodes.

Several `LocalNode`s may live in one OS process. The node table (name ->
LocalNode) is the runtime's only global. The *current node* is the node of
the current process; outside any process it is the node started first that
is still up, else a plain local node ``nonode@nohost`` created on demand.

The distribution seam
---------------------
Every operation that may cross nodes goes through these `LocalNode` methods,
all taking Pids (never Process objects):

    deliver_message(to, msg)                 deliver_named(name, node_name, msg)
    deliver_call(caller, target, ref, request)   (a monitor + a GenServer Call)
    deliver_link(frm, to)                    deliver_unlink(frm, to)
    deliver_exit(frm, to, reason, via_link)  deliver_monitor(watcher, target, ref)
    deliver_demonitor(watcher, target, ref)  deliver_down(watcher, ref, target, reason)

Local primitives call them on the caller's node; the distribution layer
calls them on the receiving node for every signal that arrives from a peer.
Each one looks at the pid it acts on (`to`, `target`, `watcher`):

* its node name and incarnation are this node's: the signal is applied here;
* its node name is this node's but the incarnation is not: the process is
  dead (messages dropped, link -> exit signal "noproc", monitor -> Down "noproc");
* another node: the signal is handed to ``self.remote`` (see
  `RemoteTransport`), which returns True if it queued it on a connection.
  ``remote is None`` (not distributed) or False means the node is
  unreachable: messages and exits are dropped, a link gives the linker an
  exit signal "noconnection", a monitor gives a Down "noconnection".

A ``target`` of a monitor is a Pid or ``(name, node_name)`` (monitor by
registered name; the Down then carries that tuple, as in Erlang).

The node records every link and monitor that crosses to another node, per
peer node name. When the distribution layer loses a peer it calls
`on_node_down(peer)`: every such link fires an exit signal "noconnection"
(from the remote pid, via link) and every monitor a Down "noconnection",
exactly once; monitors held by the lost peer on local processes are dropped.

Co-resident nodes are peers like any other: they exchange signals only
through an attached distribution layer. Only `spawn(..., node=name)` (and
`LocalNode.spawn`) reach into another co-resident node directly.

Reasons stay Python values (exceptions included); encoding is the wire's job.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import gevent
import structlog
from gevent.event import AsyncResult
from gevent.hub import Hub, get_hub
from gevent.monkey import get_original
from greenlet import getcurrent

from paxtor.actors.errors import PaxtorError
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.messages import (
    NOCONNECTION,
    NOPROC,
    SHUTDOWN,
    Call,
    Caller,
    CallError,
    CallTimeout,
    Down,
    NotAProcess,
    Reply,
)
from paxtor.actors.node_slot import NodeSlot
from paxtor.actors.process import PROCESS_ATTR, Process

__all__ = [
    "LocalNode",
    "WrongThread",
    "RemoteTransport",
    "current_node",
    "get_node",
    "all_nodes",
    "stop_all",
    "DEFAULT_NODE_NAME",
]

log = structlog.get_logger(__name__)

DEFAULT_NODE_NAME = "nonode@nohost"

#: The OS thread's id, never a greenlet's (threading.get_ident may be monkey-patched).
_os_thread_ident: Callable[[], int] = get_original("_thread", "get_ident")


class WrongThread(PaxtorError, RuntimeError):
    """A process primitive was called from an OS thread other than the one whose
    gevent hub runs the node: processes, mailboxes and timers live on that hub only."""

_MISSING: Any = object()
_S = TypeVar("_S")

#: The node table: every running LocalNode of this OS process, in start order.
_nodes: dict[str, LocalNode] = {}
#: Last incarnation used per node name, so a restarted node never reuses one.
_last_incarnation: dict[str, int] = {}


class RemoteTransport(Protocol):
    """What the distribution layer attaches as ``node.remote``.

    Each method queues one signal for the node of its remote pid (or
    `node_name`) and returns True, or returns False if that node is not
    connected. Signals to one peer must be delivered in call order. The peer
    applies them by calling the same-named ``deliver_*`` method on its node.
    """

    def send(self, to: Pid, msg: Any) -> bool: ...

    def send_named(self, name: str, node_name: str, msg: Any) -> bool: ...

    def link(self, frm: Pid, to: Pid) -> bool: ...

    def unlink(self, frm: Pid, to: Pid) -> bool: ...

    def exit(self, frm: Pid, to: Pid, reason: Any, via_link: bool) -> bool: ...

    def monitor(self, watcher: Pid, target: Any, ref: Ref) -> bool: ...

    def demonitor(self, watcher: Pid, target: Any, ref: Ref) -> bool: ...

    def down(self, watcher: Pid, ref: Ref, target: Any, reason: Any) -> bool: ...

    def spawn(
        self,
        node_name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        link: Pid | None,
        monitor: tuple[Pid, Ref] | None,
    ) -> Pid:
        """Start a process on `node_name` (blocking the calling process) and
        return its pid. `link`/`monitor` are set up atomically by the remote
        side, before the process runs; the caller's node records its own
        half. The reply must reach the caller before any signal from the new
        process. Raise `NotDistributed`/`ConnectionError` if unreachable."""
        ...


class _PeerEdges:
    """Links and monitors between local processes and one remote node."""

    __slots__ = ("links", "monitors_out", "monitors_in")

    def __init__(self) -> None:
        #: (local pid, remote pid) pairs, insertion ordered
        self.links: dict[tuple[Pid, Pid], None] = {}
        #: monitors held by local watchers: ref -> (watcher, target)
        self.monitors_out: dict[Ref, tuple[Pid, Any]] = {}
        #: monitors held by remote watchers: ref -> local target pid
        self.monitors_in: dict[Ref, Pid] = {}

    def __bool__(self) -> bool:
        return bool(self.links or self.monitors_out or self.monitors_in)


def _node_of(target: Any) -> str:
    return target.node if target.__class__ is Pid else target[1]


class LocalNode:
    """One node living in this OS process."""

    def __init__(self, name: str, incarnation: int, *, is_default: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"node name must be a non-empty str, got {name!r}")
        self.name = name
        self.incarnation = incarnation
        self.is_default = is_default
        self.running = True
        #: serial -> Process of every live process of this node
        self.processes: dict[int, Process] = {}
        #: registered name -> Process (the local registry)
        self.names: dict[str, Process] = {}
        #: the distribution layer, or None when this node is not distributed
        self.remote: RemoteTransport | None = None
        self._serials = itertools.count(1)
        self._refs = itertools.count(1)
        self._peers: dict[str, _PeerEdges] = {}
        self._hub: Hub | None = None
        self._services: dict[NodeSlot[Any], Any] = {}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalNode {self.name}.{self.incarnation} {state}>"

    # -- the services of the layers above (`paxtor.actors.node_slot`) ---------

    def service(self, slot: NodeSlot[_S]) -> _S | None:
        """The service in `slot` on this node, or None if none runs."""
        return self._services.get(slot)

    def require(self, slot: NodeSlot[_S], what: str) -> _S:
        """The service in `slot`; RuntimeError naming `what` if none runs (the node was not
        started with the services, by `paxtor.start_node`)."""
        service = self._services.get(slot)
        if service is None:
            raise RuntimeError(
                f"Paxtor's {what} is not running on node {self.name!r}: "
                "start the node with paxtor.start_node (it starts the services)"
            )
        return service

    def install(self, slot: NodeSlot[_S], service: _S) -> None:
        """Put `service` in `slot`, in place of any there (a restarted service takes over)."""
        self._services[slot] = service

    def uninstall(self, slot: NodeSlot[_S], service: _S) -> None:
        """Empty `slot` if `service` holds it (a service that stops, once)."""
        if self._services.get(slot) is service:
            del self._services[slot]

    def services(self) -> dict[str, Any]:
        """Every service this node runs, by slot name."""
        return {slot.name: service for slot, service in self._services.items()}

    # -- life of the node ----------------------------------------------------

    @classmethod
    def start(cls, name: str, incarnation: int | None = None) -> LocalNode:
        """Create node `name` in this OS process and add it to the node table.

        `incarnation` distinguishes restarts (pids of an earlier incarnation
        are dead); by default one more than the last one used for `name` here.
        """
        return _start(name, incarnation, is_default=False)

    def stop(self) -> None:
        """Kill every process of this node with reason "shutdown" and remove
        the node from the table. Processes are dead when this returns (links
        and monitors fired); their greenlets unwind at their next switch. A
        greenlet the node had adopted and that calls `stop` simply stops
        being a process."""
        if not self.running:
            return
        me = getcurrent()
        for proc in list(self.processes.values()):
            if proc.soft and proc.greenlet is me:
                proc.finish(SHUTDOWN)
                proc.detach()
            else:
                proc.shutdown(SHUTDOWN)
        self.running = False
        self.names.clear()
        self._peers.clear()
        if _nodes.get(self.name) is self:
            del _nodes[self.name]
        log.debug("node_stopped", node=self.name, incarnation=self.incarnation)

    # -- ids -------------------------------------------------------------------

    def make_ref(self) -> Ref:
        """A reference unique in this node incarnation."""
        return Ref(self.name, self.incarnation, next(self._refs))

    def is_local(self, pid: Pid) -> bool:
        """True if `pid` names a process of this node incarnation (alive or not)."""
        return pid.node == self.name and pid.incarnation == self.incarnation

    def lookup(self, pid: Pid) -> Process | None:
        """The live local process `pid` names, if any."""
        if pid.incarnation == self.incarnation and pid.node == self.name:
            return self.processes.get(pid.serial)
        return None

    # -- processes ---------------------------------------------------------------

    def hub(self) -> Hub:
        hub = self._hub
        if hub is None:
            hub = self._hub = get_hub()
        return hub

    def spawn(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        link: Pid | None = None,
        monitor: tuple[Pid, Ref] | None = None,
    ) -> Process:
        """Create a process running ``fn(*args, **kwargs)``, scheduled to start
        at the next hub turn. `link` / `monitor` (watcher, ref) are installed
        on the new process before it can run (the caller adds its own half)."""
        if not self.running:
            raise RuntimeError(f"node {self.name!r} is stopped")
        serial = next(self._serials)
        hub = self._hub or self.hub()
        proc = Process(self, Pid(self.name, self.incarnation, serial), hub, fn, args, kwargs)
        self.processes[serial] = proc
        if link is not None:
            proc.links[link] = None
            if link.node != self.name:
                self._edges(link.node).links[(proc.pid, link)] = None
        if monitor is not None:
            watcher, ref = monitor
            proc.monitored_by[ref] = (watcher, proc.pid)
            if watcher.node != self.name:
                self._edges(watcher.node).monitors_in[ref] = proc.pid
        hub.loop.run_callback(proc.greenlet.switch)
        return proc

    def check_thread(self) -> None:
        """Raise `WrongThread` unless called from the OS thread whose hub runs this node."""
        hub = self.hub()
        if hub.thread_ident != _os_thread_ident():
            raise WrongThread(
                f"node {self.name!r} runs on the gevent hub of OS thread {hub.thread_ident}; it was called "
                f"from OS thread {_os_thread_ident()}. Call Paxtor from greenlets of the node's thread: run the "
                "app under gevent (gunicorn -k gevent, gevent.pywsgi) after gevent.monkey.patch_all(), "
                "not in a thread pool (see the README's 'Threads')"
            )

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a new process of this node and
        return its result (or raise its exception). Works from any greenlet,
        on any node of this OS process. Raises CallError if the process
        exits without returning (killed...), CallTimeout after `timeout`."""
        self.check_thread()
        result: AsyncResult = AsyncResult()

        def body() -> None:
            result.set(fn(*args, **kwargs))

        def on_exit(reason: Any) -> None:
            if result.ready():
                return
            if isinstance(reason, BaseException):
                result.set_exception(reason)
            else:
                result.set_exception(CallError(reason, None, fn))

        proc = self.spawn(body)
        proc.on_exit = on_exit
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            raise CallTimeout(proc.pid, fn, timeout) from None

    def adopt(self, g: Any) -> Process:
        """Make greenlet `g` (not spawned by the runtime) a process of this
        node. A gevent.Greenlet's process ends when it finishes; other
        greenlets (the main one) are "soft", see `paxtor.actors.process`."""
        if isinstance(g, Hub):
            raise NotAProcess("the gevent hub cannot act as a process (receive/call/link would block the loop)")
        if not self.running:
            raise RuntimeError(f"node {self.name!r} is stopped")
        self.check_thread()
        serial = next(self._serials)
        soft = not isinstance(g, gevent.Greenlet)
        proc = Process(self, Pid(self.name, self.incarnation, serial), self.hub(), adopted=g, soft=soft)
        self.processes[serial] = proc
        if not soft:
            g.rawlink(proc.on_adopted_greenlet_done)
        return proc

    def forget(self, proc: Process) -> None:
        """Drop a dead process from the table and the registry."""
        if self.processes.get(proc.pid.serial) is proc:
            del self.processes[proc.pid.serial]
        name = proc.registered_name
        if name is not None:
            proc.registered_name = None
            if self.names.get(name) is proc:
                del self.names[name]

    # -- the seam: messages --------------------------------------------------

    def deliver_message(self, to: Pid, msg: Any) -> None:
        """Deliver `msg` to `to`. A `Reply` whose ref is not a monitor the
        receiver still holds is dropped (the request was given up)."""
        if to.node == self.name:
            if to.incarnation == self.incarnation:
                proc = self.processes.get(to.serial)
                if proc is not None:
                    if msg.__class__ is Reply and msg.ref not in proc.monitors:
                        return
                    proc.mailbox.put(msg)
            return
        remote = self.remote
        if remote is not None and self.running:
            remote.send(to, msg)

    def deliver_named(self, name: str, node_name: str, msg: Any) -> None:
        """Deliver `msg` to the process registered as `name` on `node_name`
        (dropped if there is none)."""
        if node_name == self.name:
            proc = self.names.get(name)
            if proc is not None:
                self.deliver_message(proc.pid, msg)
            return
        remote = self.remote
        if remote is not None and self.running:
            remote.send_named(name, node_name, msg)

    def deliver_call(self, caller: Pid, target: Any, ref: Ref, request: Any) -> None:
        """A GenServer call: `caller` monitors `target` (a Pid or (name,
        node_name)) under `ref`, then sends it ``Call(Caller(caller, ref),
        request)``; the caller has recorded ``monitors[ref] = target``. The
        same as `deliver_monitor` then `deliver_message`/`deliver_named`, as
        one signal, so a transport that has ``call`` sends one frame."""
        node_name = target.node if target.__class__ is Pid else target[1]
        remote = self.remote
        fast = getattr(remote, "call", None) if node_name != self.name else None
        if fast is None:  # a local target, or a transport without `call`
            self.deliver_monitor(caller, target, ref)
            msg = Call(Caller(caller, ref), request)
            if target.__class__ is Pid:
                self.deliver_message(target, msg)
            else:
                self.deliver_named(target[0], node_name, msg)
            return
        edges = self._peers.get(node_name)
        if edges is None:
            edges = self._edges(node_name)
        edges.monitors_out[ref] = (caller, target)
        try:
            sent = self.running and fast(caller, target, ref, request)
        except BaseException:
            edges.monitors_out.pop(ref, None)  # the caller demonitors (it holds monitors[ref])
            raise
        if not sent:
            edges.monitors_out.pop(ref, None)
            self.deliver_down(caller, ref, target, NOCONNECTION)

    # -- the seam: links and exits -------------------------------------------

    def deliver_link(self, frm: Pid, to: Pid) -> None:
        """`frm` links to `to` (frm has already recorded its half)."""
        if to.node == self.name:
            proc = self.lookup(to)
            if proc is None:
                self.deliver_exit(to, frm, NOPROC, True)
                return
            proc.links[frm] = None
            if frm.node != self.name:
                self._edges(frm.node).links[(to, frm)] = None
            return
        edges = self._edges(to.node)
        edges.links[(frm, to)] = None
        remote = self.remote
        if remote is None or not self.running or not remote.link(frm, to):
            edges.links.pop((frm, to), None)
            self.deliver_exit(to, frm, NOCONNECTION, True)

    def deliver_unlink(self, frm: Pid, to: Pid) -> None:
        """`frm` removes its link with `to` (frm has already dropped its half)."""
        if to.node == self.name:
            proc = self.lookup(to)
            if proc is not None:
                proc.links.pop(frm, None)
            if frm.node != self.name:
                self._drop_link(frm.node, (to, frm))
            return
        self._drop_link(to.node, (frm, to))
        remote = self.remote
        if remote is not None and self.running:
            remote.unlink(frm, to)

    def deliver_exit(self, frm: Pid, to: Pid, reason: Any, via_link: bool) -> None:
        """An exit signal from `frm` to `to`: by a link (`via_link`) or by `exit/2`."""
        if to.node == self.name:
            if via_link and frm.node != self.name:
                self._drop_link(frm.node, (to, frm))
            proc = self.lookup(to)
            if proc is not None:
                proc.exit_signal(frm, reason, via_link)
            return
        if via_link:
            self._drop_link(to.node, (frm, to))
        remote = self.remote
        if remote is not None and self.running:
            remote.exit(frm, to, reason, via_link)

    # -- the seam: monitors ------------------------------------------------------

    def deliver_monitor(self, watcher: Pid, target: Any, ref: Ref) -> None:
        """`watcher` monitors `target` (a Pid or (name, node_name)) under `ref`;
        the watcher has already recorded ``monitors[ref] = target``."""
        if target.__class__ is Pid:
            node_name = target.node
            local = node_name == self.name
            proc = self.processes.get(target.serial) if local and target.incarnation == self.incarnation else None
        else:
            node_name = target[1]
            local = node_name == self.name
            proc = self.names.get(target[0]) if local else None
        if local:
            if proc is None:
                self.deliver_down(watcher, ref, target, NOPROC)
                return
            proc.monitored_by[ref] = (watcher, target)
            if watcher.node != node_name:
                self._edges(watcher.node).monitors_in[ref] = proc.pid
            return
        edges = self._edges(node_name)
        edges.monitors_out[ref] = (watcher, target)
        remote = self.remote
        if remote is None or not self.running or not remote.monitor(watcher, target, ref):
            edges.monitors_out.pop(ref, None)
            self.deliver_down(watcher, ref, target, NOCONNECTION)

    def deliver_call_monitor(self, caller: Caller, incarnation: int, serial: int, request: Any) -> None:
        """A remote GenServer call's request for the local process
        (`incarnation`, `serial`): ``caller.pid`` monitors it under
        ``caller.ref``, then it gets ``Call(caller, request)``. The same as
        `deliver_monitor` then `deliver_message`, with one lookup."""
        proc = self.processes.get(serial) if incarnation == self.incarnation else None
        watcher, ref = caller.pid, caller.ref
        if proc is None:
            self.deliver_down(watcher, ref, Pid(self.name, incarnation, serial), NOPROC)
            return
        target = proc.pid
        proc.monitored_by[ref] = (watcher, target)
        if watcher.node != self.name:
            self._edges(watcher.node).monitors_in[ref] = target
        proc.mailbox.put(Call(caller, request))

    def deliver_reply(self, proc: Process, caller: Caller, value: Any) -> None:
        """Local `proc` answers `caller`'s call with `value`: as
        ``deliver_message(caller.pid, Reply(caller.ref, value))``. To a caller
        of another node that monitors `proc` under the call's ref (a remote
        GenServer call), the reply ends that monitor too, in one frame (as the
        transport's `send` does for such a `Reply`)."""
        to = caller.pid
        if to.node != self.name:
            ref = caller.ref
            held = proc.monitored_by.get(ref)
            remote = self.remote
            if held is not None and remote is not None and self.running and ref.node == to.node:
                watcher = held[0]
                fast = getattr(remote, "reply_demonitored", None)
                if (watcher is to or watcher == to) and fast is not None and fast(to, ref, value):
                    del proc.monitored_by[ref]  # as if `to` had demonitored
                    edges = self._peers.get(to.node)
                    if edges is not None:
                        edges.monitors_in.pop(ref, None)
                    return
        self.deliver_message(to, Reply(caller.ref, value))

    def deliver_reply_demonitored(self, incarnation: Any, serial: Any, ref: Ref, value: Any) -> None:
        """A call's reply for the local process (`incarnation`, `serial`) that
        also ends its monitor `ref` on the replier (`end_monitor`): delivered
        only if the process still holds that monitor, as `deliver_message`
        does for a `Reply`; one lookup for both."""
        if incarnation != self.incarnation:
            return
        proc = self.processes.get(serial)
        if proc is None:
            return
        target = proc.monitors.pop(ref, _MISSING)
        if target is _MISSING:
            return  # the call was given up: the reply is dropped
        proc.mailbox.put(Reply(ref, value))
        edges = self._peers.get(_node_of(target))
        if edges is not None:
            edges.monitors_out.pop(ref, None)

    def deliver_demonitor(self, watcher: Pid, target: Any, ref: Ref) -> None:
        """`watcher` drops its monitor `ref` on `target` (already dropped its half)."""
        if target.__class__ is Pid:
            node_name = target.node
            local = node_name == self.name
            proc = self.processes.get(target.serial) if local and target.incarnation == self.incarnation else None
        else:
            node_name = target[1]
            local = node_name == self.name
            proc = self.names.get(target[0]) if local else None
        if local:
            if proc is not None:
                proc.monitored_by.pop(ref, None)
            if watcher.node != node_name:
                edges = self._peers.get(watcher.node)
                if edges is not None:
                    edges.monitors_in.pop(ref, None)
            return
        edges = self._peers.get(node_name)
        if edges is not None:
            edges.monitors_out.pop(ref, None)
        remote = self.remote
        if remote is not None and self.running:
            remote.demonitor(watcher, target, ref)

    def deliver_down(self, watcher: Pid, ref: Ref, target: Any, reason: Any) -> None:
        """Monitor `ref` of `watcher` fires: `target` went down with `reason`.
        Delivered at most once: ignored if the watcher dropped the monitor."""
        if watcher.node == self.name:
            proc = self.lookup(watcher)
            if proc is None:
                return
            held = proc.monitors.pop(ref, _MISSING)
            if held is _MISSING:
                return
            node_name = _node_of(held)
            if node_name != self.name:
                edges = self._peers.get(node_name)
                if edges is not None:
                    edges.monitors_out.pop(ref, None)
            proc.mailbox.put(Down(ref, target, reason))
            return
        edges = self._peers.get(watcher.node)
        if edges is not None:
            edges.monitors_in.pop(ref, None)
        remote = self.remote
        if remote is not None and self.running:
            remote.down(watcher, ref, target, reason)

    # -- the seam: losing a peer -------------------------------------------------

    def on_node_down(self, node_name: str) -> None:
        """The connection to `node_name` is lost: fire every link and monitor
        across it once with "noconnection"."""
        edges = self._peers.pop(node_name, None)
        if not edges:
            return
        for local, remote_pid in list(edges.links):
            proc = self.lookup(local)
            if proc is not None:
                proc.exit_signal(remote_pid, NOCONNECTION, True)
        for ref, (watcher, target) in list(edges.monitors_out.items()):
            self.deliver_down(watcher, ref, target, NOCONNECTION)
        for ref, target_pid in edges.monitors_in.items():
            proc = self.lookup(target_pid)
            if proc is not None:
                proc.monitored_by.pop(ref, None)

    def end_monitor(self, watcher: Pid, ref: Ref) -> bool:
        """The remote side ended monitor `ref` of local `watcher` (a call's
        reply ends it, like OTP's ``reply_demonitor`` alias): forget it here
        too, sending nothing. True if the watcher still held it."""
        proc = self.lookup(watcher)
        if proc is None:
            return False
        target = proc.monitors.pop(ref, _MISSING)
        if target is _MISSING:
            return False
        edges = self._peers.get(_node_of(target))
        if edges is not None:
            edges.monitors_out.pop(ref, None)
        return True

    def peer_edges(self, node_name: str) -> tuple[int, int, int]:
        """(links, monitors held here, monitors held there) across to
        `node_name`: for the distribution layer's diagnostics and tests."""
        edges = self._peers.get(node_name)
        if edges is None:
            return (0, 0, 0)
        return (len(edges.links), len(edges.monitors_out), len(edges.monitors_in))

    def _edges(self, node_name: str) -> _PeerEdges:
        edges = self._peers.get(node_name)
        if edges is None:
            edges = self._peers[node_name] = _PeerEdges()
        return edges

    def _drop_link(self, node_name: str, pair: tuple[Pid, Pid]) -> None:
        edges = self._peers.get(node_name)
        if edges is not None:
            edges.links.pop(pair, None)


# -- the node table ----------------------------------------------------------------


def _start(name: str, incarnation: int | None, *, is_default: bool) -> LocalNode:
    if name in _nodes:
        raise ValueError(f"node {name!r} is already running in this OS process")
    if incarnation is None:
        incarnation = _last_incarnation.get(name, 0) + 1
    elif not isinstance(incarnation, int) or incarnation < 0:
        raise ValueError(f"incarnation must be a non-negative int, got {incarnation!r}")
    _last_incarnation[name] = max(incarnation, _last_incarnation.get(name, 0))
    node = LocalNode(name, incarnation, is_default=is_default)
    _nodes[name] = node
    log.debug("node_started", node=name, incarnation=incarnation)
    return node


def get_node(name: str) -> LocalNode | None:
    """The running local node called `name`, if any."""
    return _nodes.get(name)


def all_nodes() -> list[LocalNode]:
    """Every running local node, in start order."""
    return list(_nodes.values())


def current_node() -> LocalNode:
    """The node of the current process; else the first started node still
    up; else the plain local node ``nonode@nohost`` (created on demand)."""
    proc = getattr(getcurrent(), PROCESS_ATTR, None)
    if proc is not None and proc.node.running:
        return proc.node
    default = None
    for node in _nodes.values():
        if not node.is_default:
            return node
        default = node
    if default is None:
        default = _start(DEFAULT_NODE_NAME, None, is_default=True)
    return default


def stop_all() -> None:
    """Stop every local node (end of a program, isolation between tests)."""
    for node in list(_nodes.values()):
        node.stop()
