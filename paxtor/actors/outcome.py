"""`Outcome`: a result that is either `Ok(value)` or `Err(reason)`, as a value.

OTP says ``{ok, Value}`` / ``{error, Reason}``; this is the same, typed: a
reply that may be a refusal (a supervisor's `start_child`), a task's result
or its exit reason, a remote call that answered or failed. Both are
registered wire types, so an outcome crosses nodes as itself. Match on it::

    match outcome:
        case Ok(pid): ...
        case Err("not_found"): ...

or ask `outcome.ok` and read `.value` / `.reason`; `unwrap()` gives the
value or raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, TypeAlias, TypeVar

from paxtor.actors.errors import PaxtorError
from paxtor.actors.wire import wire_type

__all__ = ["Ok", "Err", "Outcome", "OutcomeError"]

T = TypeVar("T")
E = TypeVar("E")


class OutcomeError(PaxtorError):
    """`Err.unwrap()` on a reason that is not an exception: the reason is `.reason`."""

    def __init__(self, reason: Any) -> None:
        super().__init__(f"error outcome: {reason!r}")
        self.reason = reason


@wire_type(name="actors.Ok")
@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """It worked: `value` is the result."""

    value: T

    @property
    def ok(self) -> Literal[True]:
        return True

    def unwrap(self) -> T:
        return self.value


@wire_type(name="actors.Err")
@dataclass(frozen=True, slots=True)
class Err(Generic[E]):
    """It did not: `reason` says why (an exception, or a plain value such as ``"not_found"``)."""

    reason: E

    @property
    def ok(self) -> Literal[False]:
        return False

    def unwrap(self) -> NoReturn:
        """Raise the reason if it is an exception, else an `OutcomeError` carrying it."""
        if isinstance(self.reason, BaseException):
            raise self.reason
        raise OutcomeError(self.reason)


Outcome: TypeAlias = Ok[T] | Err[E]
"""``Outcome[T, E]``: `Ok[T]` or `Err[E]`."""
