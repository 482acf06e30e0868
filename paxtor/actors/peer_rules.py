"""Which connection to a peer node to keep, and when to dial again.

Pure rules (no sockets, clocks or greenlets), used by `paxtor.actors.peers`.

One connection per node pair. When two exist, both ends must keep the same
one without talking, so the rule only uses what both ends know:

1. a newer incarnation of the peer wins (the older one is a dead node);
2. for the same incarnation, the connection *initiated by the smaller node
   name* wins (Erlang keeps one by a name comparison too).

At the acceptor, an authenticated peer is refused early when the rule
would close it anyway: while a connection to it is up (a restarted peer, a
newer incarnation, is admitted and replaces it), or while our own dial to
it is handshaking (its TCP connection is made) and ours would win. A dial
still connecting does not count: with one-way reachability it may never
connect, and the peer's dial is the only way the two meet. A dial to a seed
whose name is not known yet counts as a dial to every peer (it may be this
one): without that, two nodes that only know each other as seeds both
admit, and the losing connection's close shows as a NodeDown. A refused
initiator retries later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["ConnectionInfo", "admission", "keeps_new", "Backoff"]


@dataclass(frozen=True)
class ConnectionInfo:
    """What decides between two connections to one peer."""

    peer_incarnation: int
    initiator: str


def admission(
    *,
    local_name: str,
    peer_name: str,
    peer_incarnation: int,
    up_incarnation: int | None,
    dialing: bool,
) -> tuple[bool, str | None]:
    """Whether the acceptor admits a peer that has just authenticated.

    `up_incarnation` is the incarnation of the peer on the connection that
    is up now (None if none); `dialing` is True while our own connection
    attempt to `peer_name` is handshaking. Returns ``(admit, why)``: when
    admitting, `why` is set if the connection that is up must be closed
    first (the peer restarted); when refusing, it is the reason sent.
    """
    if up_incarnation is not None:
        if peer_incarnation > up_incarnation:
            return True, f"peer_restarted: incarnation {up_incarnation} replaced by {peer_incarnation}"
        if peer_incarnation == up_incarnation:
            return False, "already_connected"
        return False, "stale_incarnation"
    if dialing and local_name < peer_name:
        return False, "simultaneous_connect"  # our own attempt wins
    return True, None


def keeps_new(current: ConnectionInfo, new: ConnectionInfo) -> bool:
    """With `current` up, whether `new` (also up) replaces it."""
    if new.peer_incarnation != current.peer_incarnation:
        return new.peer_incarnation > current.peer_incarnation
    if new.initiator != current.initiator:
        return new.initiator < current.initiator
    return False  # same initiator twice: keep the one already in use


class Backoff:
    """Capped exponential backoff with jitter: ``min, 2*min, ... max``,
    each delay drawn uniformly from its upper half (so peers that lost
    each other at once do not redial in lockstep)."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"need 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._next = minimum

    def next(self) -> float:
        """The delay before the next attempt; doubles the one after."""
        ceiling = self._next
        self._next = min(self.maximum, self._next * 2)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """After a success: the next failure starts from the minimum again."""
        self._next = self.minimum
