"""The registered wire names are the protocol, and the durable logs' record names:
this snapshot fails when a type is renamed, moved under another name, or has its
fields changed. Changing it on purpose means bumping `handshake.PROTOCOL_VERSION`
(and, for the acceptor log's types, reading the old form: `paxos.log_codec`)."""

from __future__ import annotations

import importlib
import pkgutil

import paxtor
from paxtor.actors.wire import registered_types

PINNED = {
    "actors.Call": ("caller", "request"),
    "actors.Caller": ("pid", "ref"),
    "actors.Cast": ("msg",),
    "actors.Down": ("ref", "pid", "reason"),
    "actors.Err": ("reason",),
    "actors.Exit": ("pid", "reason"),
    "actors.NodeDown": ("node", "reason"),
    "actors.NodeUp": ("node", "incarnation"),
    "actors.Ok": ("value",),
    "actors.Reply": ("ref", "value"),
    "actors.StopRequest": ("reason",),
    "paxos.Accept": ("bucket", "key", "ballot", "register", "next_ballot", "config"),
    "paxos.Accepted": ("bucket", "key", "ballot", "promised_next"),
    "paxos.Ballot": ("counter", "node"),
    "paxos.Binding": ("pid", "node", "parent", "until"),
    "paxos.Collected": ("bucket", "keys", "counter", "epoch"),
    "paxos.EndedBinding": ("epoch", "binding", "reason"),
    "paxos.Found": ("cluster", "config", "all_blank"),
    "paxos.Heartbeat": ("seq", "config"),
    "paxos.HeartbeatAck": ("seq", "voter", "fence", "config"),
    "paxos.KeyRecord": ("bucket", "key", "promised", "accepted_ballot", "accepted"),
    "paxos.LeaseFence": ("epoch", "binding"),
    "paxos.LeaseHeartbeat": ("sender", "heartbeat"),
    "paxos.MemberHello": ("node", "cluster", "config", "role", "answer"),
    "paxos.MemberState": ("cluster", "config", "voting", "node"),
    "paxos.Nack": ("bucket", "key", "ballot", "promised", "reason", "config"),
    "paxos.Prepare": ("bucket", "key", "ballot", "lease_fence", "config"),
    "paxos.Promise": ("bucket", "key", "ballot", "accepted_ballot", "accepted"),
    "paxos.PromiseFloor": ("counter",),
    "paxos.Register": ("epoch", "filled", "value", "binding", "lease_fences", "op_marks"),
    "paxos.VoterConfig": ("version", "voters", "previous"),
    "paxtor.AwaitStart": ("reply_to", "tag"),
    "paxtor.ClusterInfo": (
        "observer", "taken_at", "voters", "quorum", "nodes", "voter_info", "locks", "singletons", "complete",
        "scanned", "errors",
    ),  # fmt: skip
    "paxtor.LockInfo": ("key", "holder", "token", "waiters"),
    "paxtor.NodeInfo": ("name", "incarnation", "role", "address", "up", "lease", "connected"),
    "paxtor.SingletonInfo": ("key", "pid", "node", "since", "state"),
    "paxtor.VoterInfo": ("name", "up", "lease", "keys", "log_bytes", "fsync_ms", "fsyncs"),
    "paxtor.LockWake": ("pid", "key", "epoch", "ref"),
    "paxtor.StartSingleton": ("key", "start", "args", "user_key"),
    "paxtor.Started": ("tag", "child"),
}


def _import_every_module() -> None:
    for module in pkgutil.walk_packages(paxtor.__path__, "paxtor."):
        if module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)


def test_every_wire_name_and_its_fields_are_pinned() -> None:
    _import_every_module()
    library = {name: fields for name, fields in registered_types().items() if not name.startswith("test")}
    assert library == PINNED


def test_no_wire_name_is_a_module_path() -> None:
    _import_every_module()
    names = [name for name in registered_types() if not name.startswith("test")]
    assert not [name for name in names if ":" in name or name.startswith("paxtor.paxos")]
