"""GenServer: a process that serves calls and casts, with its state on `self`.

Subclass `GenServer` and override the callbacks::

    class Counter(GenServer):
        def init(self, start=0):
            self.n = start
        def handle_call(self, request, caller):
            self.n += request
            return self.n                      # the reply
        def handle_cast(self, msg): ...
        def handle_info(self, msg): ...        # any other message
        def terminate(self, reason): ...

    pid = Counter.start_link(10, name="counter")
    call("counter", 5)                         # -> 15

`handle_call` returns the reply, or `NoReply` and answers later with
``reply(caller, value)``. Raising ``Stop(reason, reply=...)`` in a callback
stops the server (sending the reply first, if given). An exception in a
callback is the exit reason (logged once, as a crash). `terminate(reason)`
runs on Stop, on a callback crash, and when the parent (the `start_link`
caller) exits while the server traps exits (set ``trap_exits()`` in init).

`start`/`start_link` return once `init` has returned; if it raised or
stopped they raise `StartError` in the starter (`AlreadyStarted` if the
name is taken), and a `start_link` caller is not hit by the link. An `init`
that returns `Ignore` starts nothing: the start returns None (OTP's
``ignore``). ``timeout=`` (default: the class's `start_timeout`, None for
ever) bounds the wait for `init`: past it the server is killed and the start
raises ``StartError("timeout")``. `GenServer.stop(dest, reason)` stops a
server from outside, running its `terminate` (OTP's ``gen_server:stop``).
"""

from __future__ import annotations

from typing import Any

import structlog
from greenlet import getcurrent

from paxtor.actors.errors import PaxtorTimeout
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.mailbox import check_timeout
from paxtor.actors.messages import (
    NOPROC,
    NORMAL,
    SHUTDOWN,
    AlreadyStarted,
    Call,
    Caller,
    CallError,
    CallTimeout,
    Cast,
    Down,
    Exit,
    NoProc,
    ProcessExit,
    ReceiveTimeout,
    Reply,
    StartError,
    StopRequest,
)
from paxtor.actors.primitives import current_process, demonitor, exit, monitor, send, spawn_opt, unlink
from paxtor.actors.registry import Via, register, resolve

__all__ = [
    "GenServer",
    "NoReply",
    "Ignore",
    "Stop",
    "StopRequest",
    "Caller",
    "Call",
    "Cast",
    "call",
    "cast",
    "reply",
]

log = structlog.get_logger(__name__)


class _Sentinel:
    """A named singleton value (`NoReply`, `Ignore`): compared by identity, shown by name."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name  # pickled by reference: the module attribute of that name


#: Returned by `handle_call` to reply later with `reply(caller, value)`.
NoReply = _Sentinel("NoReply")
#: Returned by `init` to start nothing: the start returns None and a supervisor
#: keeps the child's spec without a process (OTP's ``ignore``).
Ignore = _Sentinel("Ignore")

_NO_REPLY: Any = object()
_NO_ARG: Any = object()


class Stop(Exception):
    """Raise in a callback to stop the server with `reason`; in `handle_call`,
    `reply=` is sent to the caller first. In `init`, the start fails."""

    def __init__(self, reason: Any = NORMAL, reply: Any = _NO_REPLY) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply

    def __repr__(self) -> str:
        if self.reply is _NO_REPLY:
            return f"Stop({self.reason!r})"
        return f"Stop({self.reason!r}, reply={self.reply!r})"


def _is_normal_stop(reason: Any) -> bool:
    if reason.__class__ is str:
        return reason == NORMAL or reason == SHUTDOWN
    return reason.__class__ is tuple and len(reason) == 2 and reason[0] == SHUTDOWN


class GenServer:
    """Base class of generic servers; see the module docstring."""

    #: Seconds `start`/`start_link` wait for `init` when they are given no timeout
    #: (a supervisor starting the class by its child spec then gives up too); None: for ever.
    start_timeout: float | None = None

    # -- callbacks (override) ----------------------------------------------

    def init(self, *args: Any) -> Any:
        """Set up the state on `self`. Raise `Stop(reason)` to refuse to start,
        return `Ignore` to start nothing."""

    def handle_call(self, request: Any, caller: Caller) -> Any:
        """Answer `request`: return the reply (or `NoReply`)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls (got {request!r})")

    def handle_cast(self, msg: Any) -> None:
        """Handle a `cast`."""
        raise NotImplementedError(f"{type(self).__name__} does not handle casts (got {msg!r})")

    def handle_info(self, msg: Any) -> None:
        """Handle any other message. By default: log it and carry on."""
        log.warning("gen_server_unexpected_message", server=type(self).__name__, msg=repr(msg))

    def terminate(self, reason: Any) -> None:
        """Clean up before the server exits with `reason`."""

    # -- starting --------------------------------------------------------------

    @classmethod
    def start_link(cls, *args: Any, name: str | Via | None = None, timeout: float | None = None) -> Pid | None:
        """Start a server linked to the caller; returns its pid after `init` returned
        (None if `init` returned `Ignore`). Past `timeout` (default `start_timeout`)
        the server is killed and this raises ``StartError("timeout")``."""
        return _start(cls, args, name, link=True, timeout=timeout)

    @classmethod
    def start(cls, *args: Any, name: str | Via | None = None, timeout: float | None = None) -> Pid | None:
        """Start a server not linked to the caller; as `start_link` otherwise."""
        return _start(cls, args, name, link=False, timeout=timeout)

    @staticmethod
    def stop(dest: Any, reason: Any = NORMAL, timeout: float | None = None) -> None:
        """Stop the server `dest`: it runs ``terminate(reason)`` and exits with `reason`;
        returns once it is gone (OTP's ``gen_server:stop/3``).

        Raises `NoProc` if no process is there, `TimeoutError` if it is still
        running after `timeout` seconds (None: wait for ever), and `CallError`
        with the actual reason if it exited with another one (its `terminate` raised).
        """
        stop_process(dest, reason, timeout)

    @classmethod
    def child_spec(cls, arg: Any = _NO_ARG) -> Any:
        """The default child spec: id is the class, started as
        ``cls.start_link(arg)`` (``cls.start_link()`` without an arg)."""
        from paxtor.actors.child_spec import ChildSpec

        args = () if arg is _NO_ARG else (arg,)
        return ChildSpec(cls, start=(cls.start_link, args))

    # -- the loop ------------------------------------------------------------------

    def _serve(self, parent: Pid | None) -> None:
        me = current_process()
        receive = me.mailbox.receive
        deliver = me.node.deliver_message
        deliver_reply = me.node.deliver_reply
        while True:
            msg = receive()
            cls = msg.__class__
            if cls is Exit and parent is not None and msg.pid == parent:
                self._stop(msg.reason)  # the parent is gone (we trap exits): so are we
            if cls is StopRequest:
                if not _is_normal_stop(msg.reason):
                    log.warning("gen_server_stopped", server=type(self).__name__, reason=repr(msg.reason))
                self._stop(msg.reason)
            try:
                if cls is Call:
                    result = self.handle_call(msg.request, msg.caller)
                    if result is not NoReply:
                        deliver_reply(me, msg.caller, result)
                elif cls is Cast:
                    self.handle_cast(msg.msg)
                else:
                    self.handle_info(msg)
            except ProcessExit as exc:
                if not me.killed:  # exit(reason) called in a callback
                    self.terminate(exc.reason)
                raise
            except Stop as stop:
                if stop.reply is not _NO_REPLY and cls is Call:
                    deliver(msg.caller.pid, Reply(msg.caller.ref, stop.reply))
                if not _is_normal_stop(stop.reason):
                    log.warning("gen_server_stopped", server=type(self).__name__, reason=repr(stop.reason))
                self._stop(stop.reason)
            except Exception as exc:
                self.terminate(exc)
                raise

    def _stop(self, reason: Any) -> None:
        self.terminate(reason)
        raise ProcessExit(reason)


def _register(name: str | Via, pid: Pid) -> AlreadyStarted | None:
    if isinstance(name, Via):
        if name.module.register_name(name.key, pid):
            return None
        return AlreadyStarted(name, name.module.whereis_name(name.key))
    try:
        register(name, pid)
    except ValueError:
        return AlreadyStarted(name, resolve(name))  # type: ignore[arg-type]
    return None


def _server_main(
    cls: type[GenServer],
    args: tuple[Any, ...],
    name: str | Via | None,
    starter: Pid,
    ack: Ref,
    parent: Pid | None,
) -> None:
    """Body of a GenServer process: register, init, ack the starter, serve."""
    me = current_process()

    def fail(outcome: Any, registered: bool = True) -> None:
        """Tell the starter the start did not happen (an error, or `Ignore`)."""
        if registered and isinstance(name, Via):
            try:
                name.module.unregister_name(name.key)
            except Exception:  # noqa: BLE001 - best effort, the start failed anyway
                log.exception("via_unregister_failed", name=repr(name))
        if parent is not None:
            unlink(parent)  # the starter gets the outcome, not the exit signal
        send(starter, Reply(ack, outcome))

    if name is not None:
        taken = _register(name, me.pid)
        if taken is not None:
            fail(taken, registered=False)  # the name is someone else's: leave it
            return
    try:
        server = cls()
        result = server.init(*args)
    except Stop as stop:
        fail(StartError(stop.reason))
        raise ProcessExit(stop.reason) from None
    except Exception as exc:
        fail(StartError(exc))
        raise
    if result is Ignore:
        fail(Ignore)
        return  # exits "normal"
    send(starter, Reply(ack, None))
    server._serve(parent)


def _start(
    cls: type[GenServer], args: tuple[Any, ...], name: str | Via | None, link: bool, timeout: float | None
) -> Pid | None:
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"{cls!r} is not a GenServer subclass")
    if name is not None and not isinstance(name, (str, Via)):
        raise TypeError(f"name= takes a str or a Via, got {name!r}")
    if timeout is None:
        timeout = cls.start_timeout
    if timeout is not None:
        check_timeout(timeout)
    me = current_process()
    # The monitor's ref also tags the server's acknowledgement.
    ref = me.node.make_ref()
    parent = me.pid if link else None
    pid = spawn_opt(_server_main, (cls, args, name, me.pid, ref, parent), link=link, monitor_ref=ref)

    def started(m: Any) -> bool:
        c = m.__class__
        if c is Reply or c is Down:
            return m.ref == ref
        return link and c is Exit and m.pid == pid

    try:
        msg = me.mailbox.receive(started, timeout)
    except ReceiveTimeout:
        _abandon_start(pid, ref, link)
        raise StartError("timeout") from None
    if msg.__class__ is Reply:
        outcome = msg.value
        if outcome is None:
            demonitor(ref, flush=True)
            return pid
        _await_down(ref)  # gone, and its name free again, before the starter hears of it
        if outcome is Ignore:
            return None
        if isinstance(outcome.reason, BaseException):
            raise outcome from outcome.reason
        raise outcome
    demonitor(ref, flush=True)
    # Died before acking (killed during init): consume what the link sent.
    if link:
        me.mailbox.remove_if(lambda m: m.__class__ is Exit and m.pid == pid)
    raise StartError(msg.reason)


def _await_down(ref: Ref) -> Any:
    """Wait for the Down of monitor `ref`; its reason."""
    down = current_process().mailbox.receive(lambda m: m.__class__ is Down and m.ref == ref)
    return down.reason


def _abandon_start(pid: Pid, ref: Ref, link: bool) -> None:
    """A start timed out: unlink (the kill must not reach the starter), kill the server,
    wait until it is gone, and drop whatever it sent meanwhile (its ack, its exit)."""
    if link:
        unlink(pid)
    exit(pid, "kill")
    _await_down(ref)
    mailbox = current_process().mailbox
    mailbox.remove_if(lambda m: (m.__class__ is Reply and m.ref == ref) or (m.__class__ is Exit and m.pid == pid))


def stop_process(dest: Any, reason: Any, timeout: float | None) -> None:
    """`GenServer.stop` (and `Supervisor.stop`): ask `dest` to stop, wait for its Down."""
    if timeout is not None:
        check_timeout(timeout)
    target = dest if dest.__class__ is Pid else resolve(dest)
    if target is None:
        raise NoProc(dest, "no server to stop")
    ref = monitor(target)
    send(target, StopRequest(reason))
    try:
        down = current_process().mailbox.receive(lambda m: m.__class__ is Down and m.ref == ref, timeout)
    except ReceiveTimeout:
        demonitor(ref, flush=True)
        raise PaxtorTimeout(f"{dest!r} did not stop within {timeout}s") from None
    if down.reason == NOPROC:
        raise NoProc(dest, "no server to stop")
    if down.reason != reason:
        raise CallError(down.reason, dest, StopRequest(reason))


# -- client side -------------------------------------------------------------------------


def call(dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Send `request` to the server `dest` and return its reply.

    Raises CallError (with the server's exit reason, "noproc" if it is not
    there) if the server exits first, CallTimeout after `timeout` seconds
    (None: wait forever). A reply arriving after a timeout is dropped. A
    bad `timeout` raises ValueError before the request is sent.
    """
    if timeout is not None and not (timeout.__class__ is float and timeout >= 0):
        check_timeout(timeout)  # the default timeout, a float, skips the call
    try:
        me = getcurrent()._paxtor_process
        if not me.alive:
            me = current_process()
    except AttributeError:
        me = current_process()
    node = me.node
    target = dest if dest.__class__ is Pid else resolve(dest)
    if target is None:
        raise CallError(NOPROC, dest, request)
    my_pid = me.pid
    if target.__class__ is Pid and target.serial == my_pid.serial and target == my_pid:
        raise CallError("calling_self", dest, request)
    # The monitor's ref tags the request too (as gen:call does).
    ref = node.make_ref()
    me.monitors[ref] = target
    mailbox = me.mailbox
    mark = mailbox.mark()  # what is queued now cannot be the answer
    try:
        if (target.node if isinstance(target, Pid) else target[1]) == node.name:
            node.deliver_monitor(my_pid, target, ref)
            msg = Call(Caller(my_pid, ref), request)
            if isinstance(target, Pid):
                node.deliver_message(target, msg)
            else:
                node.deliver_named(target[0], target[1], msg)
        else:
            node.deliver_call(my_pid, target, ref, request)  # one frame for the monitor and the Call
        try:
            msg = mailbox.receive_answer(ref, timeout, mark)
        except ReceiveTimeout:
            raise CallTimeout(dest, request, timeout) from None
    finally:
        if me.monitors.pop(ref, None) is not None:
            node.deliver_demonitor(my_pid, target, ref)
    if msg.__class__ is Reply:
        return msg.value
    reason = msg.reason
    if isinstance(reason, BaseException):
        raise CallError(reason, dest, request) from reason
    raise CallError(reason, dest, request)


def cast(dest: Any, msg: Any) -> None:
    """Send `msg` to the server `dest` without waiting; never fails."""
    try:
        send(dest, Cast(msg))
    except Exception:  # noqa: BLE001 - cast is fire-and-forget, as in OTP
        log.debug("cast_dropped", dest=repr(dest))


def reply(caller: Caller, value: Any) -> None:
    """Answer a call whose `handle_call` returned `NoReply`."""
    send(caller.pid, Reply(caller.ref, value))
