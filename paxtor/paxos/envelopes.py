"""The messages PaxosKV processes send each other, across nodes or within one.

The pure core's `Heartbeat` says nothing of who sent it; `LeaseHeartbeat`
adds the sender, which the acceptor needs for ``heard()`` and for its ack.
(Round messages carry their sender in their flat form, `wire_format`.) The
other messages never leave their node (some carry change functions, which
cannot travel).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from paxtor.actors.ids import Pid
from paxtor.actors.wire import wire_type
from paxtor.paxos.lease import Heartbeat
from paxtor.paxos.register import LeaseFence, Register

__all__ = [
    "LeaseHeartbeat",
    "AcceptedNotice",
    "WatchTenure",
    "VouchRelease",
    "ProposeDone",
    "MembershipChanged",
    "Timer",
]

ACCEPTOR_NAME = "paxos_acceptor"
PROPOSER_NAME = "paxos_proposer"
LEASE_KEEPER_NAME = "paxos_lease"
BINDINGS_NAME = "paxos_bindings"
MEMBERSHIP_NAME = "paxos_membership"


# -- across nodes (the round messages travel flat: see `paxtor.paxos.wire_format`) ------------


@wire_type(name="paxos.LeaseHeartbeat")
@dataclass(frozen=True, slots=True)
class LeaseHeartbeat:
    """A lease keeper's heartbeat to a voter's acceptor (acked at once to ``sender``)."""

    sender: Pid
    heartbeat: Heartbeat


# -- within one node -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptedNotice:
    """Acceptor -> binding watcher: this node's acceptor accepted ``register`` for the key."""

    bucket: str
    key: Hashable
    register: Register


@dataclass(frozen=True, slots=True)
class WatchTenure:
    """Proposer -> binding watcher: a round chose ``register``, bound to a local owner."""

    bucket: str
    key: Hashable
    register: Register


@dataclass(frozen=True, slots=True)
class VouchRelease:
    """Proposer -> binding watcher: a lease fence names a tenure this node must end itself.

    ``reason`` is the real reason this node vouches for (the owner is dead or
    was never granted the tenure here).
    """

    bucket: str
    key: Hashable
    fence: LeaseFence
    reason: Any


@dataclass(frozen=True, slots=True)
class ProposeDone:
    """Proposer -> an asynchronous requester: how its request ``tag`` ended.

    ``register`` is the chosen register on success; otherwise ``error`` is
    the exception the synchronous API would raise. ``applied``: the chosen
    register is one this request's change produced by changing the register
    (rather than a value found in place). Two requests producing the same
    value (two nodes racing the same release) may both see it.
    """

    tag: Any
    register: Register | None
    error: BaseException | None
    applied: bool = False


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """Membership server -> proposer: the configuration, or who can vote, changed."""


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer a PaxosKV process set for itself fired (see `paxtor.actors.timers`)."""

    kind: str
    token: Any
