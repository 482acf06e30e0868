"""PaxosKV: a leaderless per-key Basic Paxos (CASPaxos) key-value store.

The API (the README's "The API in brief") acts on the current node::

    from paxtor import paxos
    paxos.put(key, value, pid=None, node=None, parent=None, until=None, bucket="default")
    paxos.get(key, default=..., stale=False)
    paxos.pid_of(key), paxos.node_of(key), paxos.epoch_of(key)
    paxos.propose(key, change)          # change: Register -> Register
    paxos.start_bucket(name, release_policy, on_release) / paxos.Bucket(...)
    paxos.wait_for_quorum(timeout), paxos.lease_term(), paxos.hold(...), paxos.unhold(...)

How a node runs it: `paxtor.paxos.services`.
"""

from paxtor.paxos.api import (
    epoch_of,
    get,
    hold,
    lease_term,
    node_of,
    pid_of,
    propose,
    put,
    unhold,
    wait_for_quorum,
)
from paxtor.paxos.bucket import Bucket, start_bucket
from paxtor.paxos.config import PaxosConfig
from paxtor.paxos.errors import ChangeRejected, NoQuorum, NotRunning
from paxtor.paxos.register import Binding, EndedBinding, Register

__all__ = [
    "put",
    "get",
    "pid_of",
    "node_of",
    "epoch_of",
    "propose",
    "NoQuorum",
    "NotRunning",
    "ChangeRejected",
    "Bucket",
    "start_bucket",
    "wait_for_quorum",
    "lease_term",
    "hold",
    "unhold",
    "Register",
    "Binding",
    "EndedBinding",
    "PaxosConfig",
]
