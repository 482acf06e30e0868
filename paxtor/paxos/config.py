"""The settings of one node's PaxosKV: voters, lease timing, round timing, storage.

One frozen value, checked at construction, handed to every PaxosKV process of
the node. The lease numbers are the safety model's (`paxtor.paxos.lease`):
an acceptor vetoes a "noconnection" release until it has heard nothing from
the owner's node for ``lease * (1 + max_drift)**2 + margin`` (`silence`).
Defaults suit a LAN or loopback; tests shorten them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paxtor.paxos.collection import max_request_time
from paxtor.paxos.lease import silence_threshold
from paxtor.paxos.voter_config import check_voter_names
from paxtor.paxos.wire_format import MAX_ENCODED_SIZE

__all__ = ["PaxosConfig", "numbered_voters", "MAX_REQUEST_BYTES"]

#: The default largest request (key and value, encoded): etcd's 1.5 MiB (its
#: ``--max-request-bytes``), about ZooKeeper's 1 MB znode (``jute.maxbuffer``).
MAX_REQUEST_BYTES = 3 * 2**19
#: The smallest `max_request_bytes` a node takes: room for a lock's register.
MIN_REQUEST_BYTES = 2**12


def numbered_voters(cluster_size: int) -> tuple[str, ...]:
    """The default voter set: ``node1 .. node<cluster_size>``."""
    if not isinstance(cluster_size, int) or isinstance(cluster_size, bool) or cluster_size < 1:
        raise ValueError(f"cluster_size must be an int >= 1, got {cluster_size!r}")
    return tuple(f"node{i}" for i in range(1, cluster_size + 1))


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


@dataclass(frozen=True)
class PaxosConfig:
    """How one node takes part in PaxosKV.

    ``voters``: the voters a new cluster is founded with (later changes are
    decided by the cluster: `paxtor.paxos.voter_config`; quorum is always
    counted against the configuration, never the connected nodes). ``voter``:
    whether this node has an acceptor (it must then be one of ``voters``; it
    votes once it belongs to the cluster's configuration). ``lease``/``margin``/``max_drift``: the
    safety model. ``heartbeat_interval``: how often the lease is renewed
    (default lease/4). ``timeout``: default time a `put`/`get`/`propose`
    may take before `NoQuorum`. ``attempt_timeout``: one round's wait for
    replies before it is retried. ``release_stagger``: how long a node that
    is not first in line waits before it proposes a release itself.
    ``thrifty_after``: a phase is first sent to a quorum only; the other
    voters get it after this long without a decision (None: always all).
    ``bucket_grace``: how long after start a node waits for a bucket to be
    started before releasing in it with the default policy.
    ``tombstone_ttl``: a key emptied this long ago is dropped from every voter
    once all are connected (`paxtor.paxos.collector`; None: never). No
    request retries for longer than about half of it (its op mark must outlive it).
    ``resume_change_after``: a change of the voters found half-way (a joint
    configuration) this long is finished by a voter (its coordinator died).
    ``found``: False for a node that must join an existing cluster and never
    found one (`paxtor.start_node`'s ``join``).
    ``max_request_bytes``: the most a request's key and value (or the register a
    change function makes) may take encoded; more is a ValueError in the caller,
    before anything is sent. Every message of a round carries them, every voter
    logs them: the bound keeps one caller from stalling the node's loop (and
    costing every owner on it its lease). At most `MAX_ENCODED_SIZE` (a frame).
    """

    voters: tuple[str, ...]
    voter: bool = True
    durability: str = "fsync"
    data_dir: Path | None = None
    lease: float = 3.0
    margin: float = 0.5
    max_drift: float = 0.05
    heartbeat_interval: float | None = None
    timeout: float = 5.0
    attempt_timeout: float = 1.0
    release_stagger: float = 0.25
    bucket_grace: float = 2.0
    one_rtt: bool = True
    thrifty_after: float | None = 0.01
    compact_ratio: float = 4.0
    compact_min_bytes: int = 1 << 20
    tombstone_ttl: float | None = 60.0
    resume_change_after: float = 30.0
    found: bool = True
    max_request_bytes: int = MAX_REQUEST_BYTES
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", check_voter_names(self.voters))
        if self.durability not in ("fsync", "memory"):
            raise ValueError(f"durability must be 'fsync' or 'memory', got {self.durability!r}")
        if self.durability == "fsync" and self.voter and self.data_dir is None:
            raise ValueError("a durable voter needs a data_dir")
        for name in ("lease", "timeout", "attempt_timeout", "release_stagger", "compact_ratio", "resume_change_after"):
            _positive(name, getattr(self, name))
        if self.thrifty_after is not None:
            _positive("thrifty_after", self.thrifty_after)
        if self.tombstone_ttl is not None:
            _positive("tombstone_ttl", self.tombstone_ttl)
        if self.heartbeat_interval is None:
            object.__setattr__(self, "heartbeat_interval", self.lease / 4)
        _positive("heartbeat_interval", self.heartbeat_interval)  # type: ignore[arg-type]
        if self.heartbeat_interval >= self.lease:  # type: ignore[operator]
            raise ValueError("heartbeat_interval must be shorter than the lease")
        if self.margin < 0 or self.max_drift < 0 or self.bucket_grace < 0:
            raise ValueError("margin, max_drift and bucket_grace must be >= 0")
        size = self.max_request_bytes
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_REQUEST_BYTES <= size <= MAX_ENCODED_SIZE:
            raise ValueError(
                f"max_request_bytes must be an int from {MIN_REQUEST_BYTES} to {MAX_ENCODED_SIZE}, got {size!r}"
            )

    @property
    def silence(self) -> float:
        """How long an acceptor must hear nothing from a node to release its bindings."""
        return silence_threshold(self.lease, self.max_drift, self.margin)

    @property
    def max_request_time(self) -> float | None:
        """The longest a request may retry (`collection.max_request_time`; None: unbounded)."""
        if self.tombstone_ttl is None:
            return None
        return max_request_time(self.tombstone_ttl, self.max_drift)

    def is_voter(self, node_name: str) -> bool:
        return node_name in self.voters
