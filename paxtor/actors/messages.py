"""The values the runtime itself puts in mailboxes, and the errors it raises.

Mailbox values (`Exit`, `Down`, `Reply`, and GenServer's `Call`, `Cast` and
`StopRequest`) are frozen slotted dataclasses so they
compare by value, are cheap to build, and the wire codec can register them.
Exit reasons are any value: a string such as ``"normal"``, ``"killed"``,
``"noproc"``, ``"noconnection"``, or the exception that crashed a process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from greenlet import GreenletExit

from paxtor.actors.errors import PaxtorError, PaxtorTimeout
from paxtor.actors.ids import Pid, Ref

__all__ = [
    "Exit",
    "Down",
    "Reply",
    "Caller",
    "Call",
    "Cast",
    "StopRequest",
    "ReceiveTimeout",
    "ProcessExit",
    "NoProc",
    "NotAProcess",
    "CallError",
    "CallTimeout",
    "StartError",
    "AlreadyStarted",
    "NotDistributed",
    "NORMAL",
    "KILL",
    "KILLED",
    "NOPROC",
    "NOCONNECTION",
    "SHUTDOWN",
    "fast_frozen_init",
]

NORMAL = "normal"
KILL = "kill"
KILLED = "killed"
NOPROC = "noproc"
NOCONNECTION = "noconnection"
SHUTDOWN = "shutdown"


_T = TypeVar("_T")


def fast_frozen_init(cls: type[_T]) -> type[_T]:
    """Give a frozen slotted dataclass an ``__init__`` that fills its slots
    through their descriptors: the generated one goes through
    ``object.__setattr__`` and costs twice as much, on the message hot path.
    Instances stay frozen. (Apply above ``@dataclass``; no defaults.)"""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    namespace = {f"_set_{n}": cls.__dict__[n].__set__ for n in names}
    body = "".join(f"    _set_{n}(self, {n})\n" for n in names) or "    pass\n"
    exec(f"def __init__(self, {', '.join(names)}):\n{body}", namespace)  # noqa: S102 - fixed template
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Exit:
    """A trapped exit signal: `pid` (a linked process, or the sender of
    `exit(pid, reason)`) sent `reason` to a process that traps exits."""

    pid: Pid
    reason: Any


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Down:
    """The one notification of a monitor: the process `pid` went down.

    `pid` is the monitored Pid, or ``(name, node)`` for a monitor taken by
    registered name (as in Erlang), or the `Via` for an unresolved via name.
    """

    ref: Ref
    pid: Any
    reason: Any


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a request tagged `ref`, the ref of a monitor the
    requester took on the server. Delivered only while that monitor is
    active (OTP's alias bound to a monitor), so a reply that arrives after
    its call timed out or failed never lands in the mailbox."""

    ref: Ref
    value: Any


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Caller:
    """Who to answer: the calling process and the call's ref (OTP's From)."""

    pid: Pid
    ref: Ref


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Call:
    """A `call` request as it travels to the server."""

    caller: Caller
    request: Any


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Cast:
    """A `cast` message as it travels to the server."""

    msg: Any


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class StopRequest:
    """`GenServer.stop`'s request: the server runs `terminate(reason)` and exits with
    `reason` when it reaches this message (OTP's ``sys:terminate``)."""

    reason: Any


class ReceiveTimeout(PaxtorTimeout):
    """`receive(timeout=...)` found no matching message in time."""


class ProcessExit(GreenletExit):
    """Raised inside a process to end it with `reason` (see `exit(reason)`).

    It derives from GreenletExit (a BaseException) so that ordinary
    ``except Exception`` blocks do not swallow it, and gevent does not report
    it as an error. Catching it and carrying on makes a process that ignores
    its own death: do not.
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"ProcessExit({self.reason!r})"


class NoProc(PaxtorError, LookupError):
    """The destination names no live process (dead pid, unregistered name)."""

    def __init__(self, dest: Any, detail: str = "") -> None:
        message = f"no process: {dest!r}" + (f" ({detail})" if detail else "")
        super().__init__(message)
        self.dest = dest


class NotAProcess(PaxtorError, RuntimeError):
    """A process-only operation ran where no process can live (the gevent hub)."""


class NotDistributed(PaxtorError, RuntimeError):
    """An operation needs another node but this node has no distribution."""


class CallError(PaxtorError):
    """A `call` failed: the server exited (with `reason`) before replying,
    or was not there (`reason == "noproc"`)."""

    def __init__(self, reason: Any, dest: Any = None, request: Any = None) -> None:
        super().__init__(reason, dest, request)
        self.reason = reason
        self.dest = dest
        self.request = request

    def __str__(self) -> str:
        return (
            f"call to {self.dest!r} failed with reason {self.reason!r} "
            f"(request {self.request!r})"
        )


class CallTimeout(CallError, PaxtorTimeout):
    """A `call` got no reply within its timeout (reason ``"timeout"``)."""

    def __init__(self, dest: Any = None, request: Any = None, timeout: float | None = None) -> None:
        super().__init__("timeout", dest, request)
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"call to {self.dest!r} got no reply within {self.timeout}s "
            f"(request {self.request!r})"
        )


class StartError(PaxtorError):
    """A server failed to start: its `init` raised or stopped with `reason`
    (OTP's ``{error, Reason}``)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"process failed to start: {self.reason!r}"


class AlreadyStarted(StartError):
    """A server could not register its name: `pid` already holds it
    (OTP's ``{error, {already_started, Pid}}``)."""

    def __init__(self, name: Any, pid: Pid | None) -> None:
        super().__init__(("already_started", pid))
        self.name = name
        self.pid = pid

    def __str__(self) -> str:
        return f"name {self.name!r} is already registered to {self.pid!r}"
