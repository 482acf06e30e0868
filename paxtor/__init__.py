"""Paxtor: CP cluster-wide locks and singleton processes for gevent."""

from paxtor.actors.errors import PaxtorError, PaxtorTimeout
from paxtor.actors.messages import CallError, CallTimeout
from paxtor.actors.node import WrongThread
from paxtor.locks import Fence, LockNotHeld, StaleToken, lock, locked, try_lock, unlock
from paxtor.node import Node, start_node
from paxtor.observe import ClusterInfo, cluster_info, subscribe, unsubscribe
from paxtor.paxos import NoQuorum, wait_for_quorum
from paxtor.singletons import (
    SingletonStartError,
    SingletonUnreachable,
    name,
    registered,
    whereis,
)

__all__ = [
    "Node",
    "start_node",
    "wait_for_quorum",
    "lock",
    "try_lock",
    "unlock",
    "locked",
    "name",
    "whereis",
    "registered",
    "Fence",
    "StaleToken",
    "LockNotHeld",
    "SingletonStartError",
    "SingletonUnreachable",
    "NoQuorum",
    "WrongThread",
    "PaxtorError",
    "PaxtorTimeout",
    "CallError",
    "CallTimeout",
    "cluster_info",
    "ClusterInfo",
    "subscribe",
    "unsubscribe",
]
