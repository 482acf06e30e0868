"""Voters that lose their disk, and directories that are not theirs, on real nodes in one
OS process (durable state under the test's tmp_path).

A wiped voter comes back as a learner: it votes on nothing until it has caught up
from the other voters, so no acknowledged value is lost and no lock goes to a second
owner. A directory of another node or another cluster is refused; a node's
incarnations never repeat, not even after a wipe."""

from __future__ import annotations

import shutil

import pytest

import paxtor
from paxtor import paxos
from paxtor.actors import Down, call, monitor, receive, self_pid, send, spawn
from paxtor.paxos.envelopes import ACCEPTOR_NAME, MEMBERSHIP_NAME
from paxtor.paxos.node_meta import NodeMetaMismatch
from paxtor.testing import wait_until

from .conftest import WAIT, Cluster

KEYS = [("k", i) for i in range(60)]


@pytest.fixture
def durable(cluster: Cluster) -> Cluster:
    cluster.durability = "fsync"
    return cluster


def _ready(*nodes) -> None:
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)


def _wipe_and_restart(cluster: Cluster, name: str) -> paxtor.Node:
    cluster.stop(name)
    assert cluster.data_dir is not None
    shutil.rmtree(cluster.data_dir / name)
    return cluster.start(int(name[4:]))


def _write_while_down(cluster: Cluster, down: str, via: str) -> None:
    """Write KEYS while ``down`` is stopped: they live on the other two voters only."""
    cluster.stop(down)
    for i, key in enumerate(KEYS):
        assert cluster[via].run(paxos.put, key, i) == i
    cluster.start(int(down[4:]))
    _ready(cluster[down])


def test_a_wiped_voter_catches_up_before_it_votes_and_no_value_is_lost(durable: Cluster):
    _ready(*durable.start_all())
    _write_while_down(durable, "node1", via="node2")  # KEYS live on node2 and node3
    node2 = _wipe_and_restart(durable, "node2")
    wait_until(lambda: node2.paxos.role == "voter", WAIT)  # caught up from node1 and node3
    # node1 never saw KEYS: only node2's copy can make {node1, node2} answer right
    durable.stop("node3")
    node1 = durable["node1"]
    assert [node1.run(paxos.get, key, default=None) for key in KEYS] == list(range(len(KEYS)))
    assert node2.run(paxos.get, KEYS[7]) == 7


def test_a_wiped_voter_never_votes_while_it_cannot_catch_up(durable: Cluster):
    _ready(*durable.start_all())
    _write_while_down(durable, "node3", via="node2")  # KEYS live on node1 and node2
    node1 = durable["node1"]
    token = node1.run(_lock_and_park, "job")
    durable.stop("node3")
    node2 = _wipe_and_restart(durable, "node2")
    # node1 and node2 are connected, but node2 lost its state: no quorum may answer
    wait_until(lambda: "node2" in node1.nodes(), WAIT)
    assert node2.paxos.role == "learner"
    with pytest.raises(paxos.NoQuorum):
        node1.run(lambda: paxos.get(KEYS[0], timeout=1.0))
    with pytest.raises(paxos.NoQuorum):
        node2.run(paxtor.try_lock, "job")
    # a voter change that asked node2's floor before the wipe must not read its blank state
    assert node1.run(call, (ACCEPTOR_NAME, "node2"), ("snapshot", None), timeout=WAIT) is None
    assert node1.run(call, (ACCEPTOR_NAME, "node2"), ("floor",), timeout=WAIT) is None
    durable.start(3)  # node2 can catch up now
    wait_until(lambda: node2.paxos.role == "voter", WAIT)
    _ready(node2)
    # node1's holder died with node1's lease (no quorum): the next owner's token is larger
    again = node2.run(paxtor.try_lock, "job")
    assert again is not None and again > token
    assert node2.run(paxos.get, KEYS[3]) == 3


def test_a_refusal_as_a_learner_that_lands_after_the_voter_votes_again_does_not_keep_it_out(cluster: Cluster):
    """A learner's refusal reaches the membership server through the proposer, so it can be
    handled after that voter's newer hello (it caught up and votes): the voter still counts."""
    _ready(*cluster.start_all())
    node1 = cluster["node1"]
    wait_until(lambda: "node2" in node1.run(call, MEMBERSHIP_NAME, "connected_voters"), WAIT)
    node1.run(send, MEMBERSHIP_NAME, ("learner", "node2"))  # what node1's proposer forwards of a refusal
    cluster.stop("node3")  # node2's hello does not change: only an answer to a question can correct node1
    assert node1.run(lambda: paxos.put("after", 1, timeout=WAIT)) == 1  # node1 and node2 answer
    assert "node2" in node1.run(call, MEMBERSHIP_NAME, "connected_voters")


def _lock_and_park(key: str) -> int:
    """Take ``key``'s lock in a process that lives on; its token."""
    me = self_pid()

    def hold() -> None:
        send(me, ("token", paxtor.lock(key)))
        receive()

    spawn(hold)
    return receive(lambda m: isinstance(m, tuple) and m[0] == "token", timeout=WAIT)[1]


def test_a_directory_copied_from_another_node_is_refused(durable: Cluster):
    _ready(*durable.start_all())
    durable.stop("node1")
    durable.stop("node2")
    assert durable.data_dir is not None
    shutil.rmtree(durable.data_dir / "node1")
    shutil.copytree(durable.data_dir / "node2", durable.data_dir / "node1")
    with pytest.raises(NodeMetaMismatch, match="node2"):
        durable.start(1)


def test_an_acceptor_log_copied_from_another_node_is_refused(durable: Cluster):
    from paxtor.paxos.storage import AcceptorLogCorrupt

    _ready(*durable.start_all())
    durable.stop("node1")
    durable.stop("node2")
    assert durable.data_dir is not None
    shutil.rmtree(durable.data_dir / "node1" / "acceptor")  # node1 keeps its own node.meta
    shutil.copytree(durable.data_dir / "node2" / "acceptor", durable.data_dir / "node1" / "acceptor")
    with pytest.raises(AcceptorLogCorrupt, match="acceptor log of node 'node2'"):
        durable.start(1)


def test_a_wiped_node_takes_a_new_incarnation_and_its_old_pids_stay_dead(durable: Cluster):
    _ready(*durable.start_all())
    old = durable["node2"].dist.incarnation
    old_pid = durable["node2"].run(lambda: spawn(receive))
    node2 = _wipe_and_restart(durable, "node2")
    assert node2.dist.incarnation > old
    wait_until(lambda: node2.paxos.role == "voter", WAIT)

    def watch() -> object:
        monitor(old_pid)
        return receive(lambda m: isinstance(m, Down), timeout=WAIT).reason

    assert durable["node1"].run(watch) in ("noproc", "noconnection")


def test_a_node_of_another_cluster_is_refused_at_the_handshake(durable: Cluster):
    from structlog.testing import capture_logs

    from paxtor.paxos.node_meta import NodeMeta

    _ready(*durable.start_all())
    durable.stop("node3")
    assert durable.data_dir is not None
    shutil.rmtree(durable.data_dir / "node3")
    NodeMeta.open(durable.data_dir / "node3", name="node3").set_cluster("0ther0c1u5ter000")
    with capture_logs() as logs:
        node3 = durable.start(3)  # its directory says: another cluster
        assert node3.cluster == "0ther0c1u5ter000"
        wait_until(lambda: any("other_cluster" in str(e.get("reason")) for e in logs), WAIT)
    assert "node3" not in durable["node1"].nodes() and not node3.nodes()


def test_blank_voters_started_to_join_never_found_a_cluster(durable: Cluster):
    durable.configure(found=False)  # what start_node(join=True) and --join set
    nodes = durable.start_all()
    wait_until(lambda: all(len(n.nodes()) >= 2 for n in nodes), WAIT)
    with pytest.raises(paxos.NoQuorum):
        nodes[0].run(lambda: paxos.wait_for_quorum(1.0))
    assert all(n.cluster == "" for n in nodes)  # each waits for a cluster to join
