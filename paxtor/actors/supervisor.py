"""Supervisor: starts children in order, restarts them by strategy, stops them
in reverse order, and gives up (exits "shutdown") when restarts come too fast.

It follows OTP's supervisor: it is a gen_server that traps exits, learns of
child deaths through links and uses a monitor while it stops a child, so a
child that ignores "shutdown" is killed after its shutdown time. Giving up is
an exit, so the parent supervisor sees it and applies its own strategy: that
is how a failure climbs the tree.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import structlog

from paxtor.actors.child_spec import ChildSpec, ChildStartError, Shutdown, is_normal_exit
from paxtor.actors.errors import PaxtorError
from paxtor.actors.gen_server import GenServer, Stop, call, stop_process
from paxtor.actors.ids import Pid
from paxtor.actors.messages import Down, Exit, ReceiveTimeout, StartError
from paxtor.actors.outcome import Err, Ok, Outcome
from paxtor.actors.primitives import (
    exit,
    monitor,
    receive,
    self_pid,
    send,
    trap_exits,
    unlink,
)

__all__ = [
    "Supervisor",
    "SupervisorError",
    "ChildNotFound",
    "RestartIntensity",
    "shutdown_child",
    "shutdown_children",
    "STRATEGIES",
    "RESTARTING",
]

log = structlog.get_logger(__name__)

STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")
#: `which_children`'s pid for a child whose restart failed and is tried again (OTP's
#: ``restarting``); a child that is stopped has None (OTP's ``undefined``).
RESTARTING = "restarting"


class SupervisorError(PaxtorError, RuntimeError):
    """A supervisor refused a request (child running, already present, ...)."""


class ChildNotFound(SupervisorError, LookupError):
    """No child with that id (or pid) under this supervisor."""


# ---------------------------------------------------------------------------
# Pure parts: restart intensity and the choice of children a restart touches.


class RestartIntensity:
    """Counts restarts in a sliding window: more than `max_restarts` within
    `max_seconds` means restarting is not helping, so the supervisor gives up.
    Pure: the caller passes the (monotonic) time."""

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        check_intensity(max_restarts, max_seconds)
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._times: list[float] = []

    def add_restart(self, now: float) -> bool:
        """Record a restart at `now`; False once the limit is exceeded."""
        self._times = [t for t in self._times if now - t < self.max_seconds]
        self._times.append(now)
        return len(self._times) <= self.max_restarts


def check_intensity(max_restarts: Any, max_seconds: Any) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not 0 < max_seconds < float("inf")
    ):
        raise ValueError(f"max_seconds must be a number > 0, got {max_seconds!r}")


def restart_group(strategy: str, ids: Sequence[Hashable], failed: Hashable) -> list[Hashable]:
    """The ids (in start order) that a restart of `failed` stops and starts again."""
    if strategy == "one_for_one":
        return [failed]
    if strategy == "one_for_all":
        return list(ids)
    return list(ids[ids.index(failed) :])  # rest_for_one


# ---------------------------------------------------------------------------
# Stopping children (shared with DynamicSupervisor).


def shutdown_child(pid: Pid, shutdown: Shutdown) -> Any:
    """Stop a linked child as OTP does and return its exit reason.

    Monitor it, send exit "shutdown" and wait up to `shutdown` seconds for its
    Down, then kill it; "brutal_kill" kills at once, "infinity" waits forever.
    The link is removed and a pending Exit from it flushed, so the caller does
    not later mistake this stop for a crash.
    """
    return shutdown_children([(pid, shutdown)])[pid]


def shutdown_children(children: Iterable[tuple[Pid, Shutdown]]) -> dict[Pid, Any]:
    """Stop several children at once (each with its own shutdown time) and
    return their exit reasons; DynamicSupervisor stops its children this way."""
    refs: dict[Any, Pid] = {}
    deadlines: dict[Pid, float] = {}
    now = time.monotonic()
    for pid, shutdown in children:
        ref = monitor(pid)
        refs[ref] = pid
        if shutdown == "brutal_kill":
            exit(pid, "kill")
        else:
            exit(pid, "shutdown")
            if shutdown != "infinity":
                deadlines[pid] = now + float(shutdown)
    reasons: dict[Pid, Any] = {}
    while len(reasons) < len(refs):
        timeout = None
        if deadlines:
            timeout = max(0.0, min(deadlines.values()) - time.monotonic())
        try:
            down = receive(match=lambda m: isinstance(m, Down) and m.ref in refs, timeout=timeout)
        except ReceiveTimeout:
            now = time.monotonic()
            for pid in list(deadlines):
                if deadlines[pid] <= now:
                    del deadlines[pid]
                    log.warning("child_shutdown_timeout", pid=pid)
                    exit(pid, "kill")
            continue
        pid = refs[down.ref]
        reasons[pid] = _unlink_flush(pid, down.reason)
        deadlines.pop(pid, None)
    return reasons


def _unlink_flush(pid: Pid, default_reason: Any) -> Any:
    """Unlink and take the child's Exit if it came: its reason is the real one
    when the monitor only said "noproc"."""
    unlink(pid)
    try:
        msg = receive(match=lambda m: isinstance(m, Exit) and m.pid == pid, timeout=0)
    except ReceiveTimeout:
        return default_reason
    return msg.reason


def _expected_shutdown_reason(spec: ChildSpec, reason: Any) -> bool:
    """OTP's view of a clean stop; anything else is logged as a shutdown error."""
    if reason == "killed" and spec.shutdown == "brutal_kill":
        return True
    if reason == "shutdown":
        return True
    if spec.restart != "permanent":
        return reason == "normal" or (isinstance(reason, tuple) and reason[:1] == ("shutdown",))
    return False


def record_restart(intensity: RestartIntensity, supervisor: Pid, child_id: Any) -> None:
    """Count one restart; past the restart intensity the supervisor stops with "shutdown" (OTP)."""
    if not intensity.add_restart(time.monotonic()):
        log.error(
            "supervisor_max_restarts_reached",
            supervisor=supervisor,
            child=child_id,
            max_restarts=intensity.max_restarts,
            max_seconds=intensity.max_seconds,
        )
        raise Stop("shutdown")


def log_child_exit(supervisor: Pid, spec: ChildSpec, pid: Any, reason: Any, restart: bool) -> None:
    """A child exited on its own: an error unless its reason is a clean one."""
    report = log.info if is_normal_exit(reason) else log.error
    report("child_exited", supervisor=supervisor, child=spec.id, pid=pid, reason=reason, restart=restart)


def log_shutdown(supervisor: Pid, spec: ChildSpec, pid: Pid, reason: Any) -> None:
    if _expected_shutdown_reason(spec, reason):
        log.debug("child_terminated", supervisor=supervisor, child=spec.id, pid=pid, reason=reason)
    else:
        log.warning("child_shutdown_error", supervisor=supervisor, child=spec.id, pid=pid, reason=reason)


# ---------------------------------------------------------------------------
# The supervisor process.


@dataclasses.dataclass(eq=False)  # identity: one record per child
class _Child:
    """A child's spec and its state: running (pid), stopped (None) or waiting
    for another restart attempt after its start failed (restarting)."""

    spec: ChildSpec
    pid: Pid | None = None
    restarting: bool = False

    @property
    def id(self) -> Hashable:
        return self.spec.id


@dataclasses.dataclass(frozen=True)
class _TryAgainRestart:
    """Sent to itself when a restart failed, so other messages get a turn
    before the next attempt (which counts towards the restart intensity)."""

    child_id: Any


class _SupervisorServer(GenServer):
    """The supervisor's gen_server; users go through `Supervisor`."""

    def init(
        self,
        specs: Sequence[ChildSpec],
        strategy: str,
        max_restarts: int,
        max_seconds: float,
    ) -> None:
        trap_exits(True)
        self.me = self_pid()
        self.strategy = strategy
        self.intensity = RestartIntensity(max_restarts, max_seconds)
        self.children: list[_Child] = []
        for spec in specs:
            child = _Child(spec)
            try:
                self._start(child)
            except ChildStartError as err:
                self._terminate_all()
                raise Stop(("shutdown", ("failed_to_start_child", err.child_id, err.reason))) from err
            if child.pid is not None or spec.restart != "temporary":
                self.children.append(child)

    # -- requests ----------------------------------------------------------

    def handle_call(self, request: Any, caller: Any) -> Any:
        return dispatch(self, request, _REQUESTS)

    def _call_which_children(self) -> list[tuple[Hashable, Pid | str | None, str]]:
        return [(c.id, RESTARTING if c.restarting else c.pid, c.spec.type) for c in self.children]

    def _call_count_children(self) -> dict[str, int]:
        return count_by_type(c.spec.type for c in self.children) | {
            "specs": len(self.children),
            "active": sum(c.pid is not None for c in self.children),
        }

    def _call_terminate_child(self, child_id: Hashable) -> Outcome[Any, Any]:
        child = self._find(child_id)
        if child is None:
            return Err("not_found")
        child.restarting = False
        self._shutdown(child)
        return Ok(None)

    def _call_restart_child(self, child_id: Hashable) -> Outcome[Any, Any]:
        child = self._find(child_id)
        if child is None:
            return Err("not_found")
        if child.restarting:
            return Err("restarting")
        if child.pid is not None:
            return Err("running")
        try:
            self._start(child)
        except ChildStartError as err:
            return Err(("start_failed", err))
        return Ok(child.pid)

    def _call_delete_child(self, child_id: Hashable) -> Outcome[Any, Any]:
        child = self._find(child_id)
        if child is None:
            return Err("not_found")
        if child.restarting:
            return Err("restarting")
        if child.pid is not None:
            return Err("running")
        self.children.remove(child)
        return Ok(None)

    def _call_start_child(self, spec: ChildSpec) -> Outcome[Any, Any]:
        if not isinstance(spec, ChildSpec):
            return Err(("bad_request", spec))
        existing = self._find(spec.id)
        if existing is not None:
            if existing.pid is not None:
                return Err(("already_started", existing.pid))
            return Err("already_present")
        child = _Child(spec)
        try:
            self._start(child)
        except ChildStartError as err:
            return Err(("start_failed", err))
        if child.pid is not None or spec.restart != "temporary":
            self.children.append(child)
        return Ok(child.pid)

    def handle_cast(self, request: Any) -> None:
        log.warning("supervisor_unexpected_cast", supervisor=self.me, request=request)

    # -- signals -------------------------------------------------------------

    def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Exit):  # the parent's Exit is GenServer's business
            child = self._find_pid(msg.pid)
            if child is not None:
                self._child_exited(child, msg.reason)
            return
        if isinstance(msg, _TryAgainRestart):
            child = self._find(msg.child_id)
            if child is not None and child.restarting:
                self._restart(child)
            return
        log.warning("supervisor_unexpected_message", supervisor=self.me, message=msg)

    def terminate(self, reason: Any) -> None:
        self._terminate_all()

    # -- restarting ------------------------------------------------------------

    def _child_exited(self, child: _Child, reason: Any) -> None:
        pid, child.pid = child.pid, None
        spec = child.spec
        if spec.restart == "temporary":
            self.children.remove(child)
        restart = spec.restarts_after(reason)
        log_child_exit(self.me, spec, pid, reason, restart)
        if restart:
            self._restart(child)

    def _restart(self, child: _Child) -> None:
        record_restart(self.intensity, self.me, child.id)
        ids = [c.id for c in self.children]
        group = [self._find(i) for i in restart_group(self.strategy, ids, child.id)]
        for member in reversed(group):
            if member is not None and member.pid is not None:
                self._shutdown(member)
        for member in group:
            if member is None or member not in self.children:
                continue  # a temporary member stopped for the group is gone
            try:
                self._start(member)
            except ChildStartError as err:
                log.error("child_restart_failed", supervisor=self.me, child=member.id, reason=err.reason)
                member.restarting = True
                send(self.me, _TryAgainRestart(member.id))
                return
            log.info("child_restarted", supervisor=self.me, child=member.id, pid=member.pid)

    # -- starting and stopping one child --------------------------------------

    def _start(self, child: _Child) -> None:
        """Start `child` in this process (so it links to the supervisor)."""
        child.pid = child.spec.start_process()
        child.restarting = False
        log.debug("child_started", supervisor=self.me, child=child.id, pid=child.pid)

    def _shutdown(self, child: _Child) -> None:
        if child.pid is not None:
            pid, child.pid = child.pid, None
            reason = shutdown_child(pid, child.spec.shutdown)
            log_shutdown(self.me, child.spec, pid, reason)
        if child.spec.restart == "temporary" and child in self.children:
            self.children.remove(child)

    def _terminate_all(self) -> None:
        for child in reversed(list(self.children)):
            child.restarting = False
            self._shutdown(child)

    def _find(self, child_id: Hashable) -> _Child | None:
        for child in self.children:
            if child.id == child_id:
                return child
        return None

    def _find_pid(self, pid: Pid) -> _Child | None:
        for child in self.children:
            if child.pid == pid:
                return child
        return None


_REQUESTS = {
    "which_children": 0,
    "count_children": 0,
    "terminate_child": 1,
    "restart_child": 1,
    "delete_child": 1,
    "start_child": 1,
}


def dispatch(server: Any, request: Any, arities: dict[str, int]) -> Any:
    """Route a call ``(op, *args)`` to ``server._call_<op>(*args)``; anything
    malformed is refused with an error reply, never a crash of the server."""
    match request:
        case (str(op), *args) if arities.get(op) == len(args):
            return getattr(server, "_call_" + op)(*args)
    return Err(("bad_request", request))


def count_by_type(types: Iterable[str]) -> dict[str, int]:
    """Children per type, in `count_children`'s keys."""
    counts = {"supervisors": 0, "workers": 0}
    for child_type in types:
        counts["supervisors" if child_type == "supervisor" else "workers"] += 1
    return counts


# ---------------------------------------------------------------------------
# The public face.


class Supervisor:
    """Start and query supervisors (OTP's supervisor module)."""

    @staticmethod
    def start_link(
        children: Iterable[Any],
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5,
        name: Any = None,
    ) -> Pid:
        """Start a supervisor linked to the caller; returns once every child
        has started. If one fails, those already started are stopped in
        reverse order, the supervisor exits and this raises."""
        specs = check_children(children)
        check_strategy(strategy)
        check_intensity(max_restarts, max_seconds)
        try:
            pid = _SupervisorServer.start_link(specs, strategy, max_restarts, max_seconds, name=name)
        except StartError as err:
            failed = _failed_child(err.reason)
            if failed is None:
                raise
            raise ChildStartError(*failed) from err
        assert pid is not None  # a supervisor's init never asks to be ignored
        return pid

    @staticmethod
    def child_spec(
        children: Iterable[Any],
        *,
        id: Hashable = None,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5,
        name: Any = None,
        restart: str = "permanent",
        shutdown: Shutdown = "infinity",
    ) -> ChildSpec:
        """A spec that runs a nested supervisor with `children`."""
        specs = check_children(children)
        check_strategy(strategy)
        check_intensity(max_restarts, max_seconds)
        return ChildSpec(
            id=Supervisor if id is None else id,
            start=(Supervisor.start_link, (specs, strategy, max_restarts, max_seconds, name)),
            restart=restart,  # type: ignore[arg-type]
            shutdown=shutdown,
            type="supervisor",
        )

    RESTARTING = RESTARTING

    @staticmethod
    def which_children(sup: Any) -> list[tuple[Hashable, Pid | str | None, str]]:
        """``[(id, pid, type), ...]`` in start order; pid is None for a stopped child
        (or one whose init returned `Ignore`), `RESTARTING` for one whose restart
        failed and is tried again."""
        return call(sup, ("which_children",), timeout=None)

    @staticmethod
    def count_children(sup: Any) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` counts."""
        return call(sup, ("count_children",), timeout=None)

    @staticmethod
    def terminate_child(sup: Any, child_id: Hashable) -> None:
        """Stop a child (per its shutdown); it is kept, stopped, unless temporary."""
        unwrap(call(sup, ("terminate_child", child_id), timeout=None), child_id)

    @staticmethod
    def restart_child(sup: Any, child_id: Hashable) -> Pid | None:
        """Start again a child stopped by `terminate_child`."""
        return unwrap(call(sup, ("restart_child", child_id), timeout=None), child_id)

    @staticmethod
    def delete_child(sup: Any, child_id: Hashable) -> None:
        """Forget a stopped child's spec."""
        unwrap(call(sup, ("delete_child", child_id), timeout=None), child_id)

    @staticmethod
    def start_child(sup: Any, child: Any) -> Pid | None:
        """Add a child at the end and start it."""
        spec = ChildSpec.of(child)
        return unwrap(call(sup, ("start_child", spec), timeout=None), spec.id)

    @staticmethod
    def stop(sup: Any, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the supervisor (children first, in reverse order) and wait until it has
        exited; errors as `GenServer.stop` (NoProc, TimeoutError)."""
        stop_process(sup, reason, timeout)


def unwrap(result: Outcome[Any, Any], child_id: Any) -> Any:
    """Turn a supervisor's `Ok(value)` / `Err(why)` reply into a value or
    the matching exception, raised in the caller."""
    match result:
        case Ok(value):
            return value
        case Err("max_children"):
            raise SupervisorError("the supervisor has reached its max_children")
        case Err("not_found"):
            raise ChildNotFound(f"no child {child_id!r}")
        case Err(("start_failed", error)):
            raise error
        case Err(("already_started", pid)):
            raise SupervisorError(f"child {child_id!r} is already started as {pid!r}")
        case Err("already_present"):
            raise SupervisorError(f"child {child_id!r} is already present (stopped)")
        case Err("running" | "restarting" as state):
            raise SupervisorError(f"child {child_id!r} is {state}")
        case Err(why):
            raise SupervisorError(f"supervisor refused the request for {child_id!r}: {why!r}")
    raise TypeError(f"not a supervisor reply: {result!r}")


def _failed_child(reason: Any) -> tuple[Any, Any] | None:
    """(id, reason) from ``("shutdown", ("failed_to_start_child", id, reason))``."""
    match reason:
        case ("shutdown", ("failed_to_start_child", child_id, child_reason)):
            return child_id, child_reason
    return None


def check_children(children: Iterable[Any]) -> tuple[ChildSpec, ...]:
    """Normalise child specs and refuse duplicate ids, in the caller."""
    if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
        raise TypeError(f"children must be a list of child specs, got {children!r}")
    specs = tuple(ChildSpec.of(child) for child in children)
    seen: set[Any] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(
                f"more than one child spec has the id {spec.id!r}; "
                "give each a unique id, e.g. ChildSpec.of((Worker, arg), id=...)"
            )
        seen.add(spec.id)
    return specs


def check_strategy(strategy: Any) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
