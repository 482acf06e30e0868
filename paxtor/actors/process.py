"""A process: a greenlet with a mailbox, links, monitors and an exit reason.

Exit signals follow the Erlang reference manual ("Processes"):

============  =============  ============  =======================================
via           reason         trap_exits    outcome for the receiver
============  =============  ============  =======================================
link          "normal"       no            ignored
link          any other      no            exits with that reason ("kill" too)
link          any            yes           gets ``Exit(pid, reason)``
exit/2        "kill"         either        exits with "killed" (untrappable)
exit/2        "normal"       no            ignored, unless sent to itself: exits
exit/2        any other      no            exits with that reason
exit/2        not "kill"     yes           gets ``Exit(sender, reason)``
node stop     "shutdown"     either        exits with "shutdown" (untrappable)
============  =============  ============  =======================================

Killing is cooperative: the exit is thrown into the greenlet at its next
switch (a blocking receive, sleep, socket wait...), or raised by its next
``receive``, whichever comes first: a process busy with queued messages
never switches, and signals keep their order as in Erlang (a message sent
after the kill is never handled). A process the runtime spawned ends with
"normal" when its function returns, with the exception it raised (logged
once as ``process_crashed``), or with the reason of ``ProcessExit``
(``exit(reason)``), which is not a crash.

Adopted greenlets (see `LocalNode.adopt`): a ``gevent.Greenlet`` (e.g. a
gevent.pywsgi handler) is killed like any process (the exit is thrown in at
its next switch) and its process ends when it finishes. Any other greenlet,
the main one in particular, is never thrown into, so no exit can land in the
middle of unrelated code: an exit signal ends its *process* at once (links
and monitors fire) and ``ProcessExit`` is raised in it at its current or
next ``receive``/``call`` (or any runtime call that needs the process; at
once if it signalled itself). The call after that adopts it afresh as a
new process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from greenlet import GreenletExit, greenlet

from paxtor.actors.ids import Pid, Ref
from paxtor.actors.mailbox import Mailbox
from paxtor.actors.messages import KILL, KILLED, NORMAL, Exit, ProcessExit

if TYPE_CHECKING:
    from paxtor.actors.node import LocalNode

__all__ = ["Process", "PROCESS_ATTR", "is_reason"]

log = structlog.get_logger(__name__)

#: The attribute naming a greenlet's process (set on every process greenlet).
PROCESS_ATTR = "_paxtor_process"

_UNSET: Any = object()


class ProcessGreenlet(greenlet):
    """The greenlet of a spawned process (a slot is cheaper than a __dict__)."""

    __slots__ = (PROCESS_ATTR,)


def is_reason(reason: Any, name: str) -> bool:
    """True if `reason` is the atom-like string `name` (exceptions never are)."""
    return reason.__class__ is str and reason == name


class Process:
    """Runtime state of one process. Created by `LocalNode`; user code sees
    only its `Pid`. Links are a dict used as an ordered set (deterministic
    iteration, unlike a set of hashed Pids)."""

    __slots__ = (
        "pid",
        "node",
        "greenlet",
        "mailbox",
        "links",
        "monitors",
        "monitored_by",
        "trap_exits",
        "registered_name",
        "alive",
        "exit_reason",
        "soft",
        "on_exit",
        "_kill_reason",
        "_exit_delivered",
        "_fn",
        "_args",
        "_kwargs",
    )

    def __init__(
        self,
        node: LocalNode,
        pid: Pid,
        hub: Any,
        fn: Callable[..., Any] | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        adopted: Any = None,
        soft: bool = False,
    ) -> None:
        self.pid = pid
        self.node = node
        self.links: dict[Pid, None] = {}
        #: monitors this process holds: ref -> target (Pid or (name, node))
        self.monitors: dict[Ref, Any] = {}
        #: monitors on this process: ref -> (watcher Pid, label for Down)
        self.monitored_by: dict[Ref, tuple[Pid, Any]] = {}
        self.trap_exits = False
        self.registered_name: str | None = None
        self.alive = True
        self.exit_reason: Any = None
        self.soft = soft
        #: called with the exit reason once the process is dead (runtime use)
        self.on_exit: Callable[[Any], None] | None = None
        self._kill_reason: Any = _UNSET
        self._exit_delivered = False
        self._fn: Callable[..., Any] | None
        self._args: tuple[Any, ...] | None
        self._kwargs: dict[str, Any] | None
        if adopted is None:
            self._fn = fn
            self._args = args
            self._kwargs = kwargs
            g = ProcessGreenlet(self._run, hub)
            g._paxtor_process = self
        else:
            self._fn = self._args = self._kwargs = None
            g = adopted
            setattr(g, PROCESS_ATTR, self)
        self.greenlet = g
        self.mailbox = Mailbox(g, hub)

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.exit_reason!r}"
        return f"<Process {self.pid!r} {state}>"

    # -- life ---------------------------------------------------------------

    def _run(self) -> None:
        """Body of a spawned process's greenlet: run the function, then exit."""
        reason: Any = NORMAL
        crash: BaseException | None = None
        fn, args, kwargs = self._fn, self._args, self._kwargs
        self._fn = self._args = self._kwargs = None
        try:
            if self._kill_reason is _UNSET:  # not killed before it started
                if kwargs:
                    fn(*args, **kwargs)  # type: ignore[misc]
                else:
                    fn(*args)  # type: ignore[misc]
        except ProcessExit as exc:
            reason = exc.reason
        except GreenletExit:
            reason = KILLED
        except BaseException as exc:  # noqa: BLE001 - a crash is the exit reason
            reason = crash = exc
        del fn, args, kwargs
        if self._kill_reason is not _UNSET:
            reason = self._kill_reason
            crash = None
        if crash is not None:
            self._log_crash(crash)
        self.finish(reason)
        del self.greenlet._paxtor_process  # no cycle left: freed without the GC
        if crash is not None and isinstance(crash, (SystemExit, KeyboardInterrupt)):
            raise crash  # let gevent hand it to the main greenlet, as for any greenlet

    def _log_crash(self, exc: BaseException) -> None:
        log.error(
            "process_crashed",
            pid=repr(self.pid),
            reason=repr(exc),
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    def on_adopted_greenlet_done(self, g: Any) -> None:
        """rawlink callback of an adopted gevent.Greenlet: its process ends."""
        if self._kill_reason is not _UNSET:
            reason = self._kill_reason
        elif g.exception is not None:
            reason = g.exception
            self._log_crash(reason)
        elif isinstance(g.value, ProcessExit):
            reason = g.value.reason
        elif isinstance(g.value, GreenletExit):
            reason = KILLED
        else:
            reason = NORMAL
        self.finish(reason)

    def finish(self, reason: Any) -> None:
        """The process is dead from now on: free its name, drop its monitors,
        signal its links and monitors with `reason`. Idempotent."""
        if not self.alive:
            return
        self.alive = False
        self.exit_reason = reason
        node = self.node
        node.forget(self)
        pid = self.pid
        # Each signal is guarded: a fault in one (say, in the distribution
        # layer) must not keep the others from firing.
        if self.monitors:
            monitors, self.monitors = self.monitors, {}
            for ref, target in monitors.items():
                try:
                    node.deliver_demonitor(pid, target, ref)
                except Exception:  # noqa: BLE001
                    log.exception("exit_signal_failed", pid=repr(pid), signal="demonitor", ref=repr(ref))
        if self.links:
            links, self.links = self.links, {}
            for other in links:
                try:
                    node.deliver_exit(pid, other, reason, True)
                except Exception:  # noqa: BLE001
                    log.exception("exit_signal_failed", pid=repr(pid), signal="exit", to=repr(other))
        if self.monitored_by:
            watchers, self.monitored_by = self.monitored_by, {}
            for ref, (watcher, label) in watchers.items():
                try:
                    node.deliver_down(watcher, ref, label, reason)
                except Exception:  # noqa: BLE001
                    log.exception("exit_signal_failed", pid=repr(pid), signal="down", to=repr(watcher))
        if self.on_exit is not None:
            hook, self.on_exit = self.on_exit, None
            try:
                hook(reason)
            except Exception:  # noqa: BLE001
                log.exception("exit_hook_failed", pid=repr(pid))

    @property
    def killed(self) -> bool:
        """True once an exit signal (or node stop) has doomed this process."""
        return self._kill_reason is not _UNSET

    # -- signals --------------------------------------------------------------

    def exit_signal(self, sender: Pid, reason: Any, via_link: bool) -> None:
        """Apply an exit signal from `sender` (see the table in the module doc)."""
        if not self.alive:
            return
        if via_link:
            if sender not in self.links:
                return  # unlinked meanwhile: the signal is void
            del self.links[sender]
            if self.trap_exits:
                self.mailbox.put(Exit(sender, reason))
            elif not is_reason(reason, NORMAL):
                self.kill(reason)
            return
        if is_reason(reason, KILL):
            self.kill(KILLED)
        elif self.trap_exits:
            self.mailbox.put(Exit(sender, reason))
        elif not is_reason(reason, NORMAL):
            self.kill(reason)
        elif sender == self.pid:
            self.kill(NORMAL)

    def kill(self, reason: Any) -> None:
        """End this process with `reason` (untrappable at this level; callers
        decide trapping). The first reason wins."""
        if not self.alive or self._kill_reason is not _UNSET:
            return
        self._kill_reason = reason
        if self.soft:
            self.finish(reason)
            self.mailbox.interrupt = ProcessExit(reason)
            self.mailbox.wake()
            return
        # Signals keep their order (as in Erlang): a process busy with queued
        # messages never switches, so its next receive raises the exit before
        # any message; one parked elsewhere (sleep, IO) gets it thrown.
        self.mailbox.interrupt = ProcessExit(reason)
        self.mailbox.hub.loop.run_callback(self._throw_exit)

    def _throw_exit(self) -> None:
        g = self.greenlet
        if g and not self._exit_delivered:  # started, not dead, not told yet
            self._exit_delivered = True
            if self.mailbox.interrupt is not None:  # else a receive raised it already
                g.throw(ProcessExit(self._kill_reason))

    def shutdown(self, reason: Any) -> None:
        """Node stop: the process is dead now; its greenlet is told to exit."""
        if self._kill_reason is _UNSET:
            self._kill_reason = reason
        if self.soft:
            if self.alive:
                self.mailbox.interrupt = ProcessExit(self._kill_reason)
                self.mailbox.wake()
            self.finish(self._kill_reason)
            return
        self.finish(self._kill_reason)
        # Dead already, it runs on until its next switch; a receive there
        # must not wait for messages that can no longer come.
        self.mailbox.interrupt = ProcessExit(self._kill_reason)
        self.mailbox.hub.loop.run_callback(self._throw_exit)

    def raise_if_killed(self) -> None:
        """Raise `ProcessExit` now if this (current) process was just killed."""
        if self._kill_reason is _UNSET:
            return
        if self.soft:
            exc = self.mailbox.interrupt
            if exc is not None:
                self.mailbox.interrupt = None
                self.detach()
                raise exc
        elif not self._exit_delivered:
            self._exit_delivered = True
            if self.mailbox.interrupt is not None:  # else a receive raised it already
                raise ProcessExit(self._kill_reason)

    def detach(self) -> None:
        """Forget the adoption of a soft process's greenlet: its next runtime
        call adopts it afresh as a new process."""
        g = self.greenlet
        if getattr(g, PROCESS_ATTR, None) is self:
            delattr(g, PROCESS_ATTR)
