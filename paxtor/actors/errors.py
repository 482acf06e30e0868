"""The base of every error Paxtor raises: `PaxtorError`, and `PaxtorTimeout` for the timeouts.

Each layer's errors derive from `PaxtorError` (the actors runtime's, the
store's `NoQuorum`, the lock and singleton errors), so ``except
PaxtorError`` catches what Paxtor itself refused or could not do, and
nothing of the caller's own. Every timeout is also a `TimeoutError`, so
``except TimeoutError`` catches them all. Errors that are also a standard
kind keep that base too (`NoProc` is a `LookupError`, `LockNotHeld` a
`RuntimeError`, a bad argument still a `ValueError` or `TypeError`).
The full tree is in docs/architecture.md.
"""

from __future__ import annotations

__all__ = ["PaxtorError", "PaxtorTimeout"]


class PaxtorError(Exception):
    """Something Paxtor refused or could not do."""


class PaxtorTimeout(PaxtorError, TimeoutError):
    """Paxtor gave up waiting (a `TimeoutError`)."""

    def __init__(self, *args: object) -> None:
        # Plain exception arguments: OSError's own __init__ would read two or
        # more of them as (errno, strerror, filename) and drop the rest.
        Exception.__init__(self, *args)
