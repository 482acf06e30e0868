"""The proposer's rule for VETOED rounds (proposer.py's contract): a lease fence that
names a pid of THIS node which is not a live, granted owner here is vouched for
(the pid is killed if alive, then released with that real reason); a held owner's
fence, or another node's, is left to the veto."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from paxtor.actors import Down, monitor, receive, spawn
from paxtor.actors.ids import Pid
from paxtor.actors.node import LocalNode
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.config import PaxosConfig
from paxtor.paxos.envelopes import VouchRelease
from paxtor.paxos.membership import QuorumView
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.proposer import VETOED, Decision, ExactlyOnce, ProposerState
from paxtor.paxos.proposer_engine import ProposerEngine, ProposeRequest, _Pending
from paxtor.paxos.proposer_server import NodeHost, ProposerServer
from paxtor.paxos.register import Binding, LeaseFence, Register, identity


def _vetoed(*fences: LeaseFence) -> Decision:
    proposed = Register(epoch=3, filled=False, lease_fences=fences)
    return Decision(VETOED, Ballot(1, ("node1", 7)), proposed=proposed, retry_after=0.1)


def _parked() -> None:
    receive()


def test_vouching_for_this_nodes_fenced_pids():
    local = LocalNode.start("node1", 7)
    node = PaxosNode(PaxosConfig(voters=("node1", "node2", "node3"), durability="memory"), local)
    sent: list[Any] = []
    fake = SimpleNamespace(node=node, deliver_named=lambda name, node_name, msg: sent.append(msg))
    engine = ProposerEngine(
        NodeHost(node, QuorumView(node)),
        name=node.name,
        identity=node.identity,
        incarnation=node.incarnation,
        state=ProposerState(node.identity),
        rng=random.Random(0),
        default_timeout=1.0,
        attempt_timeout=1.0,
        wait_interval=0.1,
        thrifty_after=None,
    )
    pending = _Pending(ProposeRequest("b", "k", identity), None, 0.0, ExactlyOnce(identity, node.identity))

    def body() -> dict[str, Any]:
        held, waiter = spawn(_parked), spawn(_parked)
        dead = spawn(lambda: None)
        ref = monitor(dead)
        receive(lambda m: isinstance(m, Down) and m.ref == ref)
        node.holds[held] = {("b", "k"): 2}  # a live, granted owner of tenure 2
        waiter_ref = monitor(waiter)
        fences = [
            LeaseFence(2, Binding(pid=held)),
            LeaseFence(3, Binding(pid=waiter)),
            LeaseFence(4, Binding(pid=dead)),
            LeaseFence(5, Binding(pid=Pid("node1", 6, 99))),  # an earlier life of this node
            LeaseFence(6, Binding(pid=Pid("node2", 1, 5))),  # another node's: its business
        ]
        engine._vouch(pending, _vetoed(*fences))
        for effect in engine._flush():  # the adapter kills the waiter and asks for the releases
            ProposerServer._duty(fake, effect)  # type: ignore[arg-type]
        down = receive(lambda m: isinstance(m, Down) and m.ref == waiter_ref, timeout=5)
        return {"waiter_reason": down.reason, "held_alive": local.lookup(held) is not None}

    result = local.run(body)
    assert result == {"waiter_reason": "lease_expired", "held_alive": True}
    assert all(isinstance(m, VouchRelease) for m in sent)
    assert [(m.fence.epoch, m.reason) for m in sent] == [(3, "lease_expired"), (4, "noproc"), (5, "noproc")]
