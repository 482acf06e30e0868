"""DynamicSupervisor: starts children on demand, each restarted on its own.

Elixir's DynamicSupervisor (OTP's simple_one_for_one): no children at start,
children known by pid, strategy one_for_one only. A child whose start fails
is the caller's error, raised in the caller; the supervisor stays up. When it
stops, all children are told to stop at once, each killed after its own
shutdown time, as OTP stops simple_one_for_one children.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from paxtor.actors.child_spec import ChildSpec, ChildStartError
from paxtor.actors.gen_server import GenServer, call
from paxtor.actors.ids import Pid
from paxtor.actors.messages import Exit
from paxtor.actors.outcome import Err, Ok, Outcome
from paxtor.actors.primitives import self_pid, send, trap_exits
from paxtor.actors.supervisor import (
    RESTARTING,
    RestartIntensity,
    Supervisor,
    check_intensity,
    count_by_type,
    dispatch,
    log_child_exit,
    log_shutdown,
    record_restart,
    shutdown_children,
    unwrap,
)

__all__ = ["DynamicSupervisor", "start_child"]

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class _TryAgainRestart:
    """A restart that failed is tried again from the mailbox, so calls get
    a turn in between; each attempt counts towards the restart intensity."""

    old_pid: Pid


_REQUESTS = {"start_child": 1, "terminate_child": 1, "which_children": 0, "count_children": 0}


class _DynamicSupervisorServer(GenServer):
    """The dynamic supervisor's gen_server; users go through `DynamicSupervisor`."""

    def init(self, max_restarts: int, max_seconds: float, max_children: int | None) -> None:
        trap_exits(True)
        self.me = self_pid()
        self.intensity = RestartIntensity(max_restarts, max_seconds)
        self.max_children = max_children
        self.children: dict[Pid, ChildSpec] = {}
        # children whose restart failed, keyed by their last (dead) pid
        self.restarting: dict[Pid, ChildSpec] = {}

    def handle_call(self, request: Any, caller: Any) -> Any:
        return dispatch(self, request, _REQUESTS)

    def _call_start_child(self, spec: ChildSpec) -> Outcome[Any, Any]:
        if not isinstance(spec, ChildSpec):
            return Err(("bad_request", spec))
        if self.max_children is not None and self._size() >= self.max_children:
            return Err("max_children")
        try:
            pid = spec.start_process()
        except ChildStartError as err:
            return Err(("start_failed", err))
        if pid is not None:
            self.children[pid] = spec
            log.debug("child_started", supervisor=self.me, child=spec.id, pid=pid)
        return Ok(pid)

    def _call_terminate_child(self, pid: Pid) -> Outcome[Any, Any]:
        if pid in self.restarting:
            del self.restarting[pid]
            return Ok(None)
        spec = self.children.pop(pid, None)
        if spec is None:
            return Err("not_found")
        reason = shutdown_children([(pid, spec.shutdown)])[pid]
        log_shutdown(self.me, spec, pid, reason)
        return Ok(None)

    def _call_which_children(self) -> list[tuple[Any, Pid | str, str]]:
        rows: list[tuple[Any, Pid | str, str]] = [(spec.id, pid, spec.type) for pid, spec in self.children.items()]
        rows += [(spec.id, RESTARTING, spec.type) for spec in self.restarting.values()]
        return rows

    def _call_count_children(self) -> dict[str, int]:
        specs = list(self.children.values()) + list(self.restarting.values())
        return count_by_type(spec.type for spec in specs) | {
            "specs": len(specs),
            "active": len(self.children),
        }

    def handle_cast(self, request: Any) -> None:
        log.warning("supervisor_unexpected_cast", supervisor=self.me, request=request)

    def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Exit):  # the parent's Exit is GenServer's business
            spec = self.children.pop(msg.pid, None)
            if spec is not None:
                self._child_exited(msg.pid, spec, msg.reason)
            return
        if isinstance(msg, _TryAgainRestart):
            spec = self.restarting.pop(msg.old_pid, None)
            if spec is not None:
                self._restart(msg.old_pid, spec)
            return
        log.warning("supervisor_unexpected_message", supervisor=self.me, message=msg)

    def terminate(self, reason: Any) -> None:
        children = list(self.children.items())
        self.children.clear()
        self.restarting.clear()
        reasons = shutdown_children((pid, spec.shutdown) for pid, spec in children)
        for pid, spec in children:
            log_shutdown(self.me, spec, pid, reasons[pid])

    def _child_exited(self, pid: Pid, spec: ChildSpec, reason: Any) -> None:
        restart = spec.restarts_after(reason)
        log_child_exit(self.me, spec, pid, reason, restart)
        if restart:
            self._restart(pid, spec)

    def _restart(self, old_pid: Pid, spec: ChildSpec) -> None:
        record_restart(self.intensity, self.me, spec.id)
        try:
            pid = spec.start_process()
        except ChildStartError as err:
            log.error("child_restart_failed", supervisor=self.me, child=spec.id, reason=err.reason)
            self.restarting[old_pid] = spec
            send(self.me, _TryAgainRestart(old_pid))
            return
        if pid is not None:
            self.children[pid] = spec
        log.info("child_restarted", supervisor=self.me, child=spec.id, old_pid=old_pid, pid=pid)

    def _size(self) -> int:
        return len(self.children) + len(self.restarting)


class DynamicSupervisor:
    """Start and query dynamic supervisors (Elixir's DynamicSupervisor)."""

    @staticmethod
    def start_link(
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5,
        max_children: int | None = None,
        name: Any = None,
    ) -> Pid:
        """Start an empty dynamic supervisor linked to the caller."""
        if strategy != "one_for_one":
            raise ValueError(f"a DynamicSupervisor supports only strategy 'one_for_one', got {strategy!r}")
        check_intensity(max_restarts, max_seconds)
        if max_children is not None and (
            isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
        ):
            raise ValueError(f"max_children must be None or an int >= 0, got {max_children!r}")
        pid = _DynamicSupervisorServer.start_link(max_restarts, max_seconds, max_children, name=name)
        assert pid is not None  # its init never asks to be ignored
        return pid

    @staticmethod
    def child_spec(
        *,
        id: Any = None,
        max_restarts: int = 3,
        max_seconds: float = 5,
        max_children: int | None = None,
        name: Any = None,
        restart: str = "permanent",
    ) -> ChildSpec:
        """A spec that runs a dynamic supervisor under another supervisor."""
        check_intensity(max_restarts, max_seconds)
        return ChildSpec(
            id=DynamicSupervisor if id is None else id,
            start=(
                DynamicSupervisor.start_link,
                ("one_for_one", max_restarts, max_seconds, max_children, name),
            ),
            restart=restart,  # type: ignore[arg-type]
            type="supervisor",
        )

    @staticmethod
    def start_child(sup: Any, child: Any) -> Pid | None:
        """Start a child under `sup`; its pid, or None if its start asked to
        be ignored. A failing start raises `ChildStartError` here."""
        return start_child(sup, child)

    @staticmethod
    def terminate_child(sup: Any, pid: Pid) -> None:
        """Stop the child `pid` per its shutdown and forget it."""
        unwrap(call(sup, ("terminate_child", pid), timeout=None), pid)

    RESTARTING = RESTARTING

    @staticmethod
    def which_children(sup: Any) -> list[tuple[Any, Pid | str, str]]:
        """``[(spec id, pid, type), ...]``; pid is `RESTARTING` for a child whose
        restart failed and is tried again."""
        return call(sup, ("which_children",), timeout=None)

    @staticmethod
    def count_children(sup: Any) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}`` counts."""
        return call(sup, ("count_children",), timeout=None)

    stop = staticmethod(Supervisor.stop)


def start_child(sup: Any, child: Any) -> Pid | None:
    """Start a child under a Supervisor or DynamicSupervisor (both answer
    the same request); raises `ChildStartError` if its start fails, and
    `SupervisorError` if the supervisor refuses (max_children, duplicate id)."""
    return Supervisor.start_child(sup, child)
