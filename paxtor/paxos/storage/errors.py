"""The acceptor log's errors."""

from __future__ import annotations

from paxtor.actors.errors import PaxtorError

__all__ = ["AcceptorLogError", "AcceptorLogCorrupt", "AcceptorLogFailed", "AcceptorLogClosed"]


class AcceptorLogError(PaxtorError):
    """Base of the acceptor log's errors."""


class AcceptorLogCorrupt(AcceptorLogError):
    """The files on disk cannot be replayed without losing acknowledged records."""


class AcceptorLogFailed(AcceptorLogError):
    """A write or fsync failed: nothing more is durable, the acceptor must stop voting."""


class AcceptorLogClosed(AcceptorLogError):
    """The log was closed."""
