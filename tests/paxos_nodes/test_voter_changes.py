"""Changing the voters of a running cluster (real nodes in one OS process): add, remove,
replace a dead one, grow and shrink under load, a change whose coordinator dies half-way,
and the mistakes an operator can make."""

from __future__ import annotations

import shutil
import time

import gevent
import pytest

import paxtor
from paxtor import cluster as voters_api
from paxtor import paxos
from paxtor.paxos import reconfig
from paxtor.paxos.reconfig import SYSTEM_BUCKET, VOTERS_KEY, install_on, set_config
from paxtor.testing import wait_for_nodes, wait_until

from .conftest import WAIT, Cluster

KEYS = [("k", i) for i in range(40)]


def _ready(*nodes) -> None:
    for node in nodes:
        node.run(paxos.wait_for_quorum, WAIT)


def _fill(node: paxtor.Node) -> None:
    for i, key in enumerate(KEYS):
        assert node.run(paxos.put, key, i) == i


def _fill_without(cluster: Cluster, down: str, via: str) -> None:
    """Write KEYS while ``down`` is stopped (they live on the two other voters only)."""
    cluster.stop(down)
    _fill(cluster[via])
    _ready(cluster.start(int(down[4:])))


def _all_there(node: paxtor.Node) -> bool:
    return [node.run(paxos.get, key, default=None) for key in KEYS] == list(range(len(KEYS)))


def test_an_added_voter_gets_every_key_and_votes(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    _fill(nodes[0])
    node4 = cluster.start(4, voter=True)  # an acceptor that is not a voter yet
    wait_until(lambda: node4.paxos.voter_config is not None, WAIT)
    wait_for_nodes(node4, cluster.voters)  # the change's install and bulk copy reach it
    assert node4.paxos.role == "client"
    assert nodes[0].run(voters_api.add_voter, "node4") == ("node1", "node2", "node3", "node4")
    wait_until(lambda: node4.paxos.role == "voter", WAIT)
    assert node4.run(paxos.get, KEYS[0], stale=True) == 0  # its own acceptor holds the keys
    # four voters: any three decide; node1 and node2 away, node3 and node4 are not enough ...
    cluster.stop("node1")
    _ready(node4)
    assert _all_there(node4)
    assert node4.run(voters_api.voters) == ("node1", "node2", "node3", "node4")


def test_remove_then_the_removed_voter_no_longer_counts(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    _fill(nodes[0])
    assert nodes[1].run(voters_api.remove_voter, "node3") == ("node1", "node2")
    cluster.stop("node3")
    # two voters: both are needed, and both hold every key
    assert _all_there(cluster["node1"])
    config = cluster["node2"].paxos.voter_config
    assert config is not None and config.voters == ("node1", "node2") and not config.joint


def test_a_dead_voter_is_replaced_by_a_new_machine(cluster: Cluster):
    cluster.durability = "fsync"
    _ready(*cluster.start_all())
    _fill_without(cluster, "node1", via="node2")  # KEYS live on node2 and node3
    cluster.stop("node3")  # the machine is gone for good
    node5 = cluster.start(5, voter=True)
    node1 = cluster["node1"]
    wait_until(lambda: "node5" in node1.paxos.peers, WAIT)
    assert node1.run(voters_api.replace_voter, "node3", "node5") == ("node1", "node2", "node5")
    wait_until(lambda: node5.paxos.role == "voter", WAIT)
    cluster.stop("node2")  # node1 and node5 decide: node5 got what node2 held
    _ready(node5)
    assert _all_there(node5)


def test_grow_to_five_and_back_to_three_under_load(cluster: Cluster):
    cluster.durability = "fsync"
    _ready(*cluster.start_all())
    _fill_without(cluster, "node1", via="node2")  # KEYS live on node2 and node3, who will leave
    nodes = [cluster[name] for name in ("node1", "node2", "node3")]
    extra = [cluster.start(n, voter=True) for n in (4, 5)]
    wait_until(lambda: all(n.paxos.voter_config is not None for n in extra), WAIT)
    tokens: list[int] = []
    errors: list[BaseException] = []
    stop = gevent.event.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                with paxtor.locked("busy", timeout=20) as token:
                    tokens.append(token)
                    paxos.propose("count", _increment, timeout=20)
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)
                return

    worker = gevent.spawn(nodes[0].run, load, timeout=None)
    wait_until(lambda: len(tokens) > 5, WAIT)
    five = ("node1", "node2", "node3", "node4", "node5")
    assert nodes[1].run(voters_api.set_voters, five) == five
    grown = len(tokens)
    assert nodes[2].run(voters_api.set_voters, ("node1", "node4", "node5")) == ("node1", "node4", "node5")
    wait_until(lambda: len(tokens) > grown + 5, WAIT)
    stop.set()
    worker.join(WAIT)
    assert not errors
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # fencing tokens only grow
    cluster.stop("node2")
    cluster.stop("node3")  # no longer voters: the three new ones carry everything
    assert cluster["node1"].run(paxos.get, "count") >= len(tokens) - 1
    assert _all_there(cluster["node4"])


def _increment(register):
    return register.with_value(register.value + 1) if register.filled else register.claim(1)


def test_a_change_whose_coordinator_dies_is_finished_by_a_voter(cluster: Cluster):
    cluster.configure(resume_change_after=0.5)
    nodes = cluster.start_all()
    _ready(*nodes)
    _fill(nodes[0])
    client = cluster.start(6, voter=False)  # the coordinator: it dies after step 1
    node4 = cluster.start(4, voter=True)
    wait_until(lambda: client.paxos.voter_config is not None and node4.paxos.voter_config is not None, WAIT)
    for node in (client, node4):  # node6 never meets node4: the joint quorum needs all three voters
        wait_for_nodes(node, cluster.voters)

    def begin_change() -> None:
        current = client.paxos.voter_config
        joint = current.change_to(("node1", "node2", "node3", "node4"))
        paxos.propose(VOTERS_KEY, set_config(current, joint), bucket=SYSTEM_BUCKET)
        install_on(client.paxos, joint, time.monotonic() + WAIT, enough=joint.is_quorum)

    client.run(begin_change)
    cluster.stop("node6")
    wait_until(lambda: not (nodes[0].paxos.voter_config or client.paxos.voter_config).joint, 3 * WAIT)
    config = nodes[0].paxos.voter_config
    assert config is not None and config.voters == ("node1", "node2", "node3", "node4")
    wait_until(lambda: node4.paxos.role == "voter", WAIT)
    assert _all_there(node4)


def test_an_operator_cannot_add_a_node_that_cannot_vote(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    client = cluster.start(4, voter=False)
    wait_until(lambda: "node4" in nodes[0].paxos.peers, WAIT)
    with pytest.raises(ValueError, match="no acceptor"):
        nodes[0].run(voters_api.add_voter, "node4")
    with pytest.raises(ValueError, match="not connected"):
        nodes[0].run(voters_api.add_voter, "node9")
    with pytest.raises(ValueError, match="not a voter"):
        nodes[0].run(voters_api.replace_voter, "node9", "node4")
    assert client.run(voters_api.voters) == ("node1", "node2", "node3")


def test_a_removed_voter_is_added_back_only_once_its_directory_is_wiped(cluster: Cluster):
    """A removed voter keeps the values it held, and the voters may since collect the
    tombstones that ended them: added back, it would bring them back. The change refuses
    it until it comes back empty."""
    cluster.durability = "fsync"
    nodes = cluster.start_all()
    _ready(*nodes)
    node4 = cluster.start(4, voter=True)
    wait_until(lambda: node4.paxos.voter_config is not None and "node4" in nodes[0].paxos.peers, WAIT)
    nodes[0].run(voters_api.add_voter, "node4")
    _fill(nodes[0])
    assert nodes[0].run(voters_api.remove_voter, "node4") == ("node1", "node2", "node3")
    with pytest.raises(ValueError, match=r"node4 holds \d+ keys from when it was a voter"):
        nodes[0].run(voters_api.add_voter, "node4")
    assert nodes[1].run(voters_api.voters) == ("node1", "node2", "node3")  # nothing changed
    cluster.stop("node4")
    assert cluster.data_dir is not None
    shutil.rmtree(cluster.data_dir / "node4")
    node4 = cluster.start(4, voter=True)
    wait_until(lambda: node4.paxos.voter_config is not None and "node4" in nodes[0].paxos.peers, WAIT)
    assert nodes[0].run(voters_api.add_voter, "node4") == ("node1", "node2", "node3", "node4")
    wait_until(lambda: node4.paxos.role == "voter", WAIT)
    assert node4.run(paxos.get, KEYS[3], stale=True) == 3  # copied in again


def test_the_new_voters_decide_alone_a_silence_threshold_after_the_joint_install(cluster: Cluster, monkeypatch):
    """A lease counted by the old voters alone rests on acks sent before they installed
    the joint configuration: the wait before the final one counts from the end of the
    install, however long the install took."""
    nodes = cluster.start_all()
    _ready(*nodes)
    node4 = cluster.start(4, voter=True)
    wait_until(lambda: node4.paxos.voter_config is not None and "node4" in nodes[0].paxos.peers, WAIT)
    silence = nodes[0].paxos.config.silence
    installed: dict[str, float] = {}
    real_install_on = reconfig.install_on

    def slow_install_on(node, config, deadline, enough):  # type: ignore[no-untyped-def]
        if not config.joint:
            installed.setdefault("final", time.monotonic())  # chosen just before
            return real_install_on(node, config, deadline, enough)
        acks = real_install_on(node, config, deadline, enough)
        gevent.sleep(silence)  # the install took that long (a slow voter)
        installed["joint"] = time.monotonic()
        return acks

    monkeypatch.setattr(reconfig, "install_on", slow_install_on)
    assert nodes[0].run(voters_api.add_voter, "node4") == ("node1", "node2", "node3", "node4")
    assert installed["final"] - installed["joint"] >= silence


def test_a_change_the_voters_that_answer_could_not_finish_is_refused(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    cluster.stop("node3")
    # without node1, the new voters {node2, node3} need node3, which is down: refused, nothing chosen
    with pytest.raises(ValueError, match="node3 cannot now"):
        nodes[1].run(voters_api.remove_voter, "node1")
    assert nodes[1].run(paxos.put, "still", "works") == "works"
    assert nodes[0].run(voters_api.voters) == ("node1", "node2", "node3")


def test_two_changes_at_once_compose_instead_of_undoing_each_other(cluster: Cluster):
    nodes = cluster.start_all()
    _ready(*nodes)
    node4 = cluster.start(4, voter=True)
    wait_until(lambda: all(v in node4.nodes() for v in ("node1", "node2", "node3")), WAIT)
    wait_until(lambda: node4.paxos.voter_config is not None, WAIT)
    adding = gevent.spawn(nodes[0].run, voters_api.add_voter, "node4", timeout=60)
    removing = gevent.spawn(nodes[1].run, voters_api.remove_voter, "node2", timeout=60)
    gevent.joinall([adding, removing], timeout=60, raise_error=True)
    final = nodes[0].run(voters_api.voters)
    assert set(final) == {"node1", "node3", "node4"}
