"""The tombstone collector of a voter: drops keys emptied long ago, on every voter at once.

Every ``tombstone_ttl / 4`` seconds, if every voter of the (stable) voter
configuration is connected and votes, it takes
the keys this node's acceptor has held as tombstones for ``tombstone_ttl``
(`LocalAcceptor.due_tombstones`) and, per bucket, runs one `Collection`:

- asks every voter's acceptor which of them it holds durably, and at which
  ballot (``("tombstones", bucket, keys)`` calls);
- each key is handled by one voter only: the first, in the key's
  rendezvous order of the voters, of those that hold it (the others see the
  same reports and leave it alone);
- what every voter holds at one ballot, the handling voter tells every
  voter to drop (``("collect", ...)``); each acceptor drops what is still
  exactly that tombstone and logs it;
- what only some voters hold (a thrifty round reached just a quorum), it
  proposes once more with ``spread=True``: an identity round whose accept
  goes to every voter. A later pass then finds the key everywhere.

Any voter unreachable or slow: the batch is skipped, nothing is dropped; its
keys come due again one ttl later. Requests never retry for longer than
about half the ttl (`collection.max_request_time`), so a retry can never find
its op mark collected.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable, Sequence
from typing import Any

import structlog

from paxtor.actors import GenServer, call, self_pid
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import distributed_node
from paxtor.actors.ids import Pid
from paxtor.actors.messages import CallError
from paxtor.actors.timers import send_after
from paxtor.actors.wire import encode
from paxtor.paxos.collection import Collection
from paxtor.paxos.envelopes import ACCEPTOR_NAME, PROPOSER_NAME, ProposeDone
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.proposer_engine import ProposeRequest
from paxtor.paxos.register import identity

__all__ = ["TombstoneCollector", "COLLECTOR_NAME", "first_holder"]

log = structlog.get_logger(__name__)

COLLECTOR_NAME = "paxos_collector"
#: Keys asked about per call (one bucket).
BATCH = 256
#: Keys examined per pass: the rest wait for the next pass.
PASS_LIMIT = 4096
#: Spread rounds in flight at most.
MAX_SPREADS = 512
#: A voter's answer to one call may take this long before the batch is skipped.
CALL_TIMEOUT = 5.0
_TICK = ("paxos_collector", "tick")


def first_holder(key: Hashable, voters: Sequence[str], holders: set[str]) -> str | None:
    """The voter that handles ``key``: the first holder in the key's rendezvous order
    of ``voters`` (the same on every node: a digest of the encoded key, not `hash`)."""
    if not holders:
        return None
    packed = encode(key)

    def weight(voter: str) -> bytes:
        return hashlib.blake2b(packed + b"\0" + voter.encode(), digest_size=8).digest()

    return max(holders, key=weight)


class TombstoneCollector(GenServer):
    """See the module docstring. Runs on voters, registered as ``paxos_collector``."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        ttl = node.config.tombstone_ttl
        if node.local_acceptor is None or ttl is None:
            raise RuntimeError("the tombstone collector runs on voters with a tombstone_ttl")
        self.node = node
        self.ttl = ttl
        self.me = self_pid()
        self.voting = node.local_acceptor
        # spread rounds in flight -> when they were sent (a round lost with a crashed
        # proposer never answers; requests end within half a ttl, so after a ttl it stops counting)
        self.spreading: dict[tuple[str, Hashable], float] = {}
        self.collected = 0
        self._arm()

    def _arm(self) -> None:
        send_after(self.node.local, self.me, self.ttl / 4, _TICK)

    def handle_info(self, msg: Any) -> None:
        if msg == _TICK:
            self._safe_pass()
            self._arm()
        elif msg.__class__ is ProposeDone:
            self.spreading.pop(msg.tag, None)
        else:
            super().handle_info(msg)

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "stats":
            return {"collected": self.collected, "tombstones": self.voting.tombstone_count()}
        if request == "collect_now":  # tests and operators: one pass at once
            self._safe_pass()
            return self.collected
        return super().handle_call(request, caller)

    # -- one pass --------------------------------------------------------------------------

    def _safe_pass(self) -> None:
        try:
            self._pass()
        except Exception:  # noqa: BLE001 - never a crash loop under the PaxosKV supervisor
            log.exception("tombstone_collection_failed", node=self.node.name)

    def _pass(self) -> None:
        config = self.node.voter_config
        if config is None or config.joint or not self.node.voting:
            return  # no configuration yet, or a change under way: nothing is dropped
        voters = config.voters
        dist = distributed_node(self.node.local)
        connected = set(dist.nodes()) if dist is not None else set()
        if any(v != self.node.name and (v not in connected or v in self.node.learners) for v in voters):
            return  # a voter is away or is catching up: nothing can be dropped
        by_bucket: dict[str, list[Hashable]] = {}
        for bucket, key in self.voting.due_tombstones(self.ttl, PASS_LIMIT):
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), BATCH):
                if not self._collect(bucket, keys[start : start + BATCH], voters):
                    return

    def _collect(self, bucket: str, keys: list[Hashable], voters: Sequence[str]) -> bool:
        """One batch; False if a voter did not answer (the rest of the pass is skipped)."""
        collection = Collection(bucket, keys, voters)
        for voter in voters:
            held = self._ask(voter, ("tombstones", bucket, tuple(keys)))
            if held is None:
                return False
            collection.on_report(voter, held)
        mine = self.node.name
        holders = collection.holders()
        forget = tuple(
            (key, ballot) for key, ballot in collection.forget()
            if first_holder(key, voters, holders[key]) == mine
        )  # fmt: skip
        if forget:
            dropped = 0
            for voter in voters:
                count = self._ask(voter, ("collect", bucket, forget))
                if voter == mine and count is not None:
                    dropped = count
            self.collected += dropped
            log.debug("tombstones_collected", node=mine, bucket=bucket, keys=len(forget))
        for key in collection.lagging():
            if first_holder(key, voters, holders[key]) == mine:
                self._spread(bucket, key)
        return True

    def _ask(self, voter: str, request: tuple[Any, ...]) -> Any:
        try:
            return call((ACCEPTOR_NAME, voter), request, timeout=CALL_TIMEOUT)
        except CallError as exc:
            log.info("tombstone_collection_skipped", node=self.node.name, voter=voter, reason=str(exc)[:200])
            return None

    def _spread(self, bucket: str, key: Hashable) -> None:
        """An identity round that carries the key's tombstone to every voter."""
        slot = (bucket, key)
        now = time.monotonic()
        if len(self.spreading) >= MAX_SPREADS:
            for lost in [s for s, sent in self.spreading.items() if now - sent > self.ttl]:
                del self.spreading[lost]
        if slot in self.spreading or len(self.spreading) >= MAX_SPREADS:
            return
        self.spreading[slot] = now
        request = ProposeRequest(bucket, key, identity, checked=True, reply_to=self.me, tag=slot, spread=True)
        self.node.local.deliver_named(PROPOSER_NAME, self.node.name, request)


def _start(node: PaxosNode) -> Pid | None:
    return TombstoneCollector.start_link(node, name=COLLECTOR_NAME)
