"""Child specifications: how a supervisor starts, restarts and stops one child.

One normal form (`ChildSpec`) so supervisors never guess; `ChildSpec.of`
accepts the shorthands Elixir accepts (a class, `(Class, arg)`, a dict) and
rejects anything else at the call site with an error naming the problem,
before any process is started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import gevent
from greenlet import GreenletExit, getcurrent

from paxtor.actors.ids import Pid
from paxtor.actors.messages import StartError
from paxtor.actors.process import PROCESS_ATTR

__all__ = [
    "ChildSpec",
    "ChildStartError",
    "RESTART_TYPES",
    "CHILD_TYPES",
    "Shutdown",
    "is_normal_exit",
]

Restart = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]
#: seconds (> 0), "brutal_kill" (kill at once) or "infinity" (wait forever)
Shutdown = float | int | Literal["brutal_kill", "infinity"]

RESTART_TYPES: tuple[str, ...] = ("permanent", "transient", "temporary")
CHILD_TYPES: tuple[str, ...] = ("worker", "supervisor")
SHUTDOWN_WORDS: tuple[str, ...] = ("brutal_kill", "infinity")
DEFAULT_WORKER_SHUTDOWN = 5.0
_SPEC_KEYS = frozenset({"id", "start", "restart", "shutdown", "type"})


def is_normal_exit(reason: Any) -> bool:
    """True for the exit reasons a transient child is not restarted for:
    ``"normal"``, ``"shutdown"`` and ``("shutdown", term)`` (OTP's rule)."""
    if isinstance(reason, str):
        return reason in ("normal", "shutdown")
    return (
        isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"
    )


class ChildStartError(StartError):
    """A child's start function raised or returned something other than a Pid.

    `child_id` names the child; `reason` is the exception raised or a text
    saying what was returned instead of a Pid.
    """

    def __init__(self, child_id: Any, reason: Any) -> None:
        super().__init__(reason)
        self.child_id = child_id

    def __str__(self) -> str:
        return f"child {self.child_id!r} failed to start: {self.reason!r}"


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    """How to start one child and what to do when it exits.

    `start` is ``(callable, args_tuple)``; calling it must return the Pid of a
    process linked to the caller (as every ``start_link`` does), or None to
    say "nothing to start" (OTP's ``ignore``). `shutdown` defaults to 5.0
    seconds for a worker and "infinity" for a supervisor, as in Elixir.
    """

    id: Any  # any hashable value (a name, a class...)
    start: tuple[Callable[..., Pid | None], tuple[Any, ...]]
    restart: Restart = "permanent"
    shutdown: Shutdown = None  # type: ignore[assignment]  # None: the type's default, set at init
    type: ChildType = "worker"

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_start(self.id, self.start)
        if self.restart not in RESTART_TYPES:
            raise ValueError(
                f"child {self.id!r}: restart must be one of {RESTART_TYPES}, "
                f"got {self.restart!r}"
            )
        if self.type not in CHILD_TYPES:
            raise ValueError(
                f"child {self.id!r}: type must be one of {CHILD_TYPES}, got {self.type!r}"
            )
        if self.shutdown is None:
            default = "infinity" if self.type == "supervisor" else DEFAULT_WORKER_SHUTDOWN
            object.__setattr__(self, "shutdown", default)
        else:
            _check_shutdown(self.id, self.shutdown)

    @classmethod
    def of(cls, spec: Any, **overrides: Any) -> ChildSpec:
        """Normalise any accepted child spec form, then apply `overrides`
        (Elixir's ``Supervisor.child_spec(spec, overrides)``): e.g.
        ``ChildSpec.of((Worker, 1), id="w1")`` to run two of one class.

        Accepted: a `ChildSpec`; a class (started as ``Class.start_link()``,
        or through ``Class.child_spec()`` if it defines one); ``(Class, arg)``
        (``Class.start_link(arg)`` or ``Class.child_spec(arg)``); a dict with
        keys id, start and optionally restart, shutdown, type.
        """
        base = _normalise(spec)
        if not overrides:
            return base
        unknown = set(overrides) - _SPEC_KEYS
        if unknown:
            raise ValueError(f"unknown child spec keys {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
        return dataclasses.replace(base, **overrides)

    def start_process(self) -> Pid | None:
        """Run the start function in the calling process.

        Returns the new child's Pid, or None when the start function asked to
        be ignored. Raises `ChildStartError` if it raised, exited (``exit(reason)``,
        a gevent Timeout: OTP's ``catch apply``) or returned a non-Pid; an exit
        signal that killed the calling supervisor itself goes on.
        """
        fn, args = self.start
        try:
            result = fn(*args)
        except Exception as exc:  # any failure of user code is a start failure
            raise ChildStartError(self.id, exc) from exc
        except (GreenletExit, gevent.Timeout) as exc:
            caller = getattr(getcurrent(), PROCESS_ATTR, None)
            if caller is not None and caller.killed:
                raise  # the supervisor is being killed, not the start failing
            raise ChildStartError(self.id, getattr(exc, "reason", exc)) from exc
        if result is None or isinstance(result, Pid):
            return result
        raise ChildStartError(
            self.id, f"start function returned {result!r}, expected a Pid or None"
        )

    def restarts_after(self, reason: Any) -> bool:
        """Whether a child that exited with `reason` is to be restarted."""
        if self.restart == "permanent":
            return True
        if self.restart == "transient":
            return not is_normal_exit(reason)
        return False


def _normalise(spec: Any) -> ChildSpec:
    if isinstance(spec, ChildSpec):
        return spec
    if isinstance(spec, type):
        return _from_class(spec, ())
    if isinstance(spec, tuple):
        if len(spec) == 2 and isinstance(spec[0], type):
            return _from_class(spec[0], (spec[1],))
        raise TypeError(
            f"a tuple child spec must be (Class, arg), got {spec!r}; "
            "for a function use ChildSpec(id, start=(fn, args))"
        )
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    raise TypeError(
        f"not a child spec: {spec!r}; expected a ChildSpec, a class, "
        "(Class, arg) or a dict with keys id and start"
    )


def _from_class(klass: type, args: tuple[Any, ...]) -> ChildSpec:
    child_spec = getattr(klass, "child_spec", None)
    if callable(child_spec):
        spec = child_spec(*args)
        if not isinstance(spec, ChildSpec):
            spec = _normalise_returned(klass, spec)
        return spec
    start_link = getattr(klass, "start_link", None)
    if not callable(start_link):
        raise TypeError(
            f"{klass.__qualname__} is not a valid child: it has neither a "
            "child_spec(arg) nor a start_link classmethod"
        )
    return ChildSpec(id=klass, start=(start_link, args))


def _normalise_returned(klass: type, spec: Any) -> ChildSpec:
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    raise TypeError(
        f"{klass.__qualname__}.child_spec() returned {spec!r}; "
        "expected a ChildSpec or a dict"
    )


def _from_mapping(spec: Mapping[str, Any]) -> ChildSpec:
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(
            f"unknown child spec keys {sorted(map(str, unknown))}; allowed: {sorted(_SPEC_KEYS)}"
        )
    for required in ("id", "start"):
        if required not in spec:
            raise ValueError(f"child spec {dict(spec)!r} is missing the required key {required!r}")
    return ChildSpec(**spec)


def _check_id(child_id: Any) -> None:
    try:
        hash(child_id)
    except TypeError:
        raise TypeError(f"child id must be hashable, got {child_id!r}") from None


def _check_start(child_id: Any, start: Any) -> None:
    if not (isinstance(start, tuple) and len(start) == 2):
        raise TypeError(
            f"child {child_id!r}: start must be a (callable, args_tuple) pair, got {start!r}"
        )
    fn, args = start
    if not callable(fn):
        raise TypeError(f"child {child_id!r}: start function {fn!r} is not callable")
    if not isinstance(args, tuple):
        raise TypeError(
            f"child {child_id!r}: start arguments must be a tuple, got {type(args).__name__} {args!r}"
        )


def _check_shutdown(child_id: Any, shutdown: Any) -> None:
    if isinstance(shutdown, str):
        if shutdown in SHUTDOWN_WORDS:
            return
    elif isinstance(shutdown, (int, float)) and not isinstance(shutdown, bool):
        if shutdown > 0 and shutdown != float("inf"):
            return
    raise ValueError(
        f"child {child_id!r}: shutdown must be a number of seconds > 0, "
        f"'brutal_kill' or 'infinity', got {shutdown!r}"
    )
