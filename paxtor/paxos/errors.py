"""The errors PaxosKV raises to its callers."""

from __future__ import annotations

from paxtor.actors.errors import PaxtorError
from paxtor.paxos.register import ChangeRejected

__all__ = ["NoQuorum", "ChangeRejected", "NotRunning"]


class NoQuorum(PaxtorError):
    """No quorum of voters answered in time; the operation did not complete.

    ``maybe_applied`` is False when nothing was sent that could still be
    chosen (the value is certainly not written), True when some acceptors
    may have accepted it: a later round may then still choose it.
    """

    def __init__(self, message: str = "no quorum of voters answered in time", *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class NotRunning(PaxtorError, RuntimeError):
    """PaxosKV is not running on the current node (no `start_node`, or it stopped)."""
