"""Fault injection for node-to-node links: partitions, delay and loss.

Off unless a `FaultInjector` is given to the connections (ConnectionConfig
``faults=``); then every frame, heartbeats and handshake included, passes
the same checks in the production code path. One injector serves a whole OS
process (which may host several nodes); it keeps one `LinkFaults` per
directed pair (local node, peer node), looked up by connections when they
learn the peer's name, and shared by every later connection between that
pair, so a partition survives reconnects.

Semantics, from the local node's side of a link:
  block_out / block_in  drop every frame sent / received (a partition: the
                        silence also stops heartbeats, so the heartbeat
                        timeout fires and the link goes down);
  delay_out             hold each sent frame that many seconds (order kept);
  drop_out / drop_in    drop each data frame with that probability, drawn
                        from the injector's seeded RNG (heartbeats pass, so
                        loss alone does not take the link down);
  block_dial            the local node's dials to the peer fail at once, as
                        if a firewall refused them; dials the other way still
                        work (one-way reachability).
Changes apply at once to live connections.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["LinkFaults", "FaultInjector"]


@dataclass(eq=False)
class LinkFaults:
    """The faults applied on one node's link to one peer (see module doc)."""

    block_out: bool = False
    block_in: bool = False
    delay_out: float = 0.0
    drop_out: float = 0.0
    drop_in: float = 0.0
    block_dial: bool = False
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def drops_outgoing(self) -> bool:
        """Whether the next data frame sent is lost."""
        return self.block_out or (self.drop_out > 0.0 and self.rng.random() < self.drop_out)

    def drops_incoming(self) -> bool:
        """Whether the next data frame received is lost."""
        return self.block_in or (self.drop_in > 0.0 and self.rng.random() < self.drop_in)

    def clear(self) -> None:
        """Back to a healthy link."""
        self.block_out = self.block_in = self.block_dial = False
        self.delay_out = self.drop_out = self.drop_in = 0.0


class FaultInjector:
    """A process-wide table of `LinkFaults`, keyed by (local node, peer node).

    Helpers take a direction ``src -> dst`` and set the sender's side and,
    for blocks, the receiver's side too, so the fault holds whether one or
    both nodes live in this OS process.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._links: dict[tuple[str, str], LinkFaults] = {}

    def link(self, local: str, peer: str) -> LinkFaults:
        """The faults of `local`'s link to `peer` (created healthy on first use)."""
        key = (local, peer)
        faults = self._links.get(key)
        if faults is None:
            faults = self._links[key] = LinkFaults(rng=self.rng)
        return faults

    def block(self, src: str, dst: str) -> None:
        """Drop everything sent from `src` to `dst` (one way)."""
        self.link(src, dst).block_out = True
        self.link(dst, src).block_in = True

    def unblock(self, src: str, dst: str) -> None:
        """Undo `block(src, dst)`."""
        self.link(src, dst).block_out = False
        self.link(dst, src).block_in = False

    def partition(self, a: str, b: str) -> None:
        """Drop everything between `a` and `b`, both ways."""
        self.block(a, b)
        self.block(b, a)

    def block_dials(self, src: str, dst: str) -> None:
        """`src` can no longer dial `dst` (connections `dst` dials to `src` still work)."""
        self.link(src, dst).block_dial = True

    def delay(self, src: str, dst: str, seconds: float) -> None:
        """Hold every frame from `src` to `dst` for `seconds` (0 to stop)."""
        self.link(src, dst).delay_out = seconds

    def drop(self, src: str, dst: str, probability: float) -> None:
        """Lose each data frame from `src` to `dst` with `probability`."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self.link(src, dst).drop_out = probability

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Clear faults: between `a` and `b`, or all of `a`'s, or all of them."""
        for (local, peer), faults in self._links.items():
            if a is None or (b is None and a in (local, peer)) or {local, peer} == {a, b}:
                faults.clear()
