"""Cluster membership as PaxosKV sees it: the cluster, its voters, and who can answer.

Every node runs a membership server (``paxos_membership``). When two nodes
connect, each tells the other a `MemberHello`: its cluster id, the newest
voter configuration it knows (`paxtor.paxos.voter_config`) and its role
(``voter``, ``learner``, ``blank``: an acceptor that has never belonged to a
cluster, or ``client``). Every configuration a node installed was chosen by
consensus, so a node adopts any newer one it hears of; it tells its peers
again whenever its own role or configuration changes.

Founding. A cluster is founded once, by the first of the configured voters
(``node1`` by default), when EVERY configured voter is connected and none
belongs to a cluster: it draws a cluster id and sends `Found` to each. If
all of them are blank they vote at once; a blank one among voters that hold
state (a log from before clusters had ids) is a learner. Founding needs all
of them so that a voter whose disk was wiped can never found a second
cluster with a voter that never started while the others are away.

Learners. A voter that is blank in an existing cluster lost its state (a
wiped or replaced disk); it never votes on its own. Its membership server
starts `paxtor.paxos.reconfig.reseat` once enough of the other voters are
connected: the cluster moves to a new configuration version, which ends
every round the lost state could have taken part in, and the learner copies
the state of the others before it votes again.

Changes left half-way. A change of the voters (`paxtor.paxos.reconfig`)
passes through a joint configuration; if the node running it dies, the first
voting member (in configuration order) that has seen the cluster stuck in
the joint configuration for ``resume_change_after`` seconds (30 by default),
with no call of the change reaching its acceptor meanwhile, finishes it.

Quorum is counted against the configuration, never against whoever is
connected. The server logs transitions of this node's view:

    quorum_reached      message="Quorum reached. [cluster:2/3]"     (a voter)
    quorum_lost         message="Quorum lost. [cluster:1/3]"
    quorum_reachable    message="Quorum reachable. [voters:2/3]"    (a client:
    quorum_unreachable  message="Quorum unreachable. [voters:1/3]"   not one of them)

(``node_up``/``node_down`` are logged by the distribution layer.)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from paxtor.actors import Down, GenServer, monitor
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.distribution import NodeDown, NodeUp, distributed_node, monitor_nodes
from paxtor.actors.ids import Pid
from paxtor.actors.primitives import self_pid, send, spawn
from paxtor.actors.timers import send_after
from paxtor.actors.wire import wire_type
from paxtor.paxos.envelopes import MEMBERSHIP_NAME, PROPOSER_NAME, MembershipChanged, Timer
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.voter_config import VoterConfig

__all__ = [
    "Found",
    "MemberHello",
    "MembershipServer",
    "QuorumChange",
    "QuorumView",
    "quorum_event",
    "quorum_message",
    "watch_membership",
]

log = structlog.get_logger(__name__)

VOTER, LEARNER, BLANK, CLIENT = "voter", "learner", "blank", "client"
#: how often the server looks again at what it waits for (founding, catch-up, a change to finish)
TICK = 1.0


def quorum_message(reached: bool, connected: int, voters: int, client: bool = False) -> str:
    """The human line: ``Quorum reached. [cluster:2/3]`` / ``Quorum lost. [cluster:1/3]``
    on a voter (it counts itself); a client counts the voters it reaches:
    ``Quorum reachable. [voters:2/3]`` / ``Quorum unreachable. [voters:1/3]``."""
    if client:
        return f"Quorum {'reachable' if reached else 'unreachable'}. [voters:{connected}/{voters}]"
    return f"Quorum {'reached' if reached else 'lost'}. [cluster:{connected}/{voters}]"


def quorum_event(reached: bool, client: bool = False) -> str:
    """The log event of a quorum transition (see the module docstring)."""
    if client:
        return "quorum_reachable" if reached else "quorum_unreachable"
    return "quorum_reached" if reached else "quorum_lost"


@wire_type(name="paxos.MemberHello")
@dataclass(frozen=True, slots=True)
class MemberHello:
    """What a node tells its peers of itself; ``answer``: the sender wants theirs back."""

    node: str
    cluster: str
    config: VoterConfig | None
    role: str
    answer: bool = False


@wire_type(name="paxos.Found")
@dataclass(frozen=True, slots=True)
class Found:
    """The founder to every configured voter: the cluster is ``cluster``, its first
    configuration ``config``; ``all_blank``: every voter was blank, so all vote at once."""

    cluster: str
    config: VoterConfig
    all_blank: bool


@dataclass(frozen=True, slots=True)
class QuorumChange:
    """The voters that can answer crossed the quorum line (up if ``reached``)."""

    reached: bool
    connected: int
    voters: int

    @property
    def message(self) -> str:
        return quorum_message(self.reached, self.connected, self.voters)


class QuorumView:
    """Which members of the node's configuration can answer now: the connected ones that
    vote (and this node, if it votes). Kept current by NodeUp/NodeDown messages."""

    def __init__(self, node: PaxosNode, connected: Iterable[str] = ()) -> None:
        self.node = node
        self.connected: set[str] = set(connected)

    def up(self, name: str) -> None:
        self.connected.add(name)

    def down(self, name: str) -> None:
        self.connected.discard(name)

    @property
    def able(self) -> set[str]:
        """The members that can answer now."""
        return self.node.voting_members(self.connected)

    @property
    def has_quorum(self) -> bool:
        config = self.node.voter_config
        return config is not None and config.is_quorum(self.able)

    def down_members(self) -> list[str]:
        """The members that cannot answer now (disconnected, or learners)."""
        config = self.node.voter_config
        if config is None:
            return []
        able = self.able
        return [v for v in config.members if v not in able]

    def change(self, before: bool) -> QuorumChange | None:
        """The transition since ``before`` (a former `has_quorum`), if any."""
        after = self.has_quorum
        if after == before:
            return None
        config = self.node.voter_config
        voters = config.voters if config is not None else self.node.initial_voters
        able = self.able
        return QuorumChange(after, sum(1 for v in voters if v in able), len(voters))


def watch_membership(node: PaxosNode) -> QuorumView:
    """A `QuorumView` of the calling process's node; subscribes the caller to NodeUp/NodeDown,
    which it must feed to the view."""
    monitor_nodes(True)
    dist = distributed_node(node.local)
    return QuorumView(node, dist.nodes() if dist is not None else ())


def role_of(node: PaxosNode) -> str:
    """The role a node tells its peers (see the module docstring)."""
    acceptor = node.acceptor
    if acceptor is None:
        return CLIENT
    if acceptor.blank and not node.cluster:
        return BLANK
    return VOTER if acceptor.voting else LEARNER


class MembershipServer(GenServer):
    """See the module docstring. Registered as ``paxos_membership`` on every node."""

    @classmethod
    def child_spec(cls, node: PaxosNode) -> ChildSpec:  # type: ignore[override]
        return ChildSpec(id=cls, start=(_start, (node,)))

    def init(self, node: PaxosNode) -> None:
        self.node = node
        self.me = self_pid()
        self.view = watch_membership(node)
        self.quorum = self.view.has_quorum
        self.told: MemberHello | None = None
        self.able_told: frozenset[str] = frozenset()  # the voters able to answer, as the proposer last heard
        self.catching_up: Pid | None = None  # a reseat of this learner
        self.finishing: Pid | None = None  # a change of the voters left half-way
        self.joint_since: tuple[int, float] | None = None  # (version, since when) of a joint config
        if self.quorum:
            self._log(self.view.change(False))  # type: ignore[arg-type]
        for peer in self.view.connected:
            self._tell(peer)
        self.told = self._hello()
        self._tick()

    # -- events ---------------------------------------------------------------------------

    def handle_info(self, msg: Any) -> None:
        cls = msg.__class__
        if cls is NodeUp:
            self.view.up(msg.node)
            self._tell(msg.node)
        elif cls is NodeDown:
            self.view.down(msg.node)
            self.node.peers.pop(msg.node, None)
        elif cls is MemberHello:
            self._on_hello(msg)
        elif cls is Found:
            self._on_found(msg)
        elif cls is Timer:
            self._tick()
        elif cls is Down and msg.pid == self.catching_up:
            self.catching_up = None
        elif cls is Down and msg.pid == self.finishing:
            self.finishing = None
        elif cls is tuple and msg[:1] == ("learner",) and len(msg) == 2:
            self.node.learners.add(msg[1])  # a voter refused a round as a learner
        elif cls is tuple and msg[:1] == ("ask",) and len(msg) == 2:
            self._tell(msg[1], answer=True)  # a voter said it knows a newer configuration
        else:
            return
        self._changed()

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "connected_voters":
            return sorted(self.view.able)
        if request == "hello":
            return self._hello()
        if isinstance(request, tuple) and len(request) == 2 and request[0] == "peer":
            return self.node.peers.get(request[1])  # what that peer told this node of itself
        return super().handle_call(request, caller)

    def _tick(self) -> None:
        send_after(self.node.local, self.me, TICK, Timer("tick", None))

    def _on_hello(self, hello: MemberHello) -> None:
        node = self.node
        if node.cluster and hello.cluster and hello.cluster != node.cluster:
            log.error("member_of_another_cluster", node=node.name, peer=hello.node, cluster=hello.cluster)
            return
        node.peers[hello.node] = hello
        if hello.cluster and not node.cluster and node.acceptor is None:
            node.adopt_cluster(hello.cluster)  # a client joins whatever its peers belong to
        elif hello.cluster and not node.cluster and node.acceptor is not None and not self._founder_will_tell():
            self._join(hello.cluster, hello.config)
        if hello.config is not None and hello.cluster and hello.cluster == node.cluster:
            node.install_config(hello.config)
        if hello.role == VOTER:
            node.learners.discard(hello.node)
        elif hello.role in (LEARNER, BLANK):
            node.learners.add(hello.node)
        if hello.answer:
            self._tell(hello.node)

    def _founder_will_tell(self) -> bool:
        """Whether this voter, in no cluster yet, must wait for the founder's word before it
        joins a cluster it heard of from another node.

        While the founder is connected and has named no cluster to it, the founder's next
        message on that connection settles it: `Found` (which it sends before any hello of
        the cluster it founds) if this voter is a founding member, else a hello that names
        the cluster. A client or a voter that got `Found` first may tell it of the cluster
        sooner (two hops can beat one on a busy node); joining then would make a founding
        voter a learner, and with every founding voter but one a learner the new cluster
        has no quorum.
        """
        node = self.node
        founder = node.initial_voters[0]
        if not node.config.found or founder == node.name or founder not in self.view.connected:
            return False
        word = node.peers.get(founder)
        return word is None or not word.cluster

    def _join(self, cluster: str, config: VoterConfig | None) -> None:
        """This voter meets an existing cluster with no cluster of its own: a blank acceptor
        joins, as a learner if the configuration names it (it lost its state), else as an
        acceptor that votes once a change adds it; one with state from before clusters had
        ids waits to be founded."""
        acceptor = self.node.acceptor
        assert acceptor is not None
        if acceptor.blank:
            self.node.adopt_cluster(cluster)
            if config is not None and not config.is_member(self.node.name):
                log.info("acceptor_joined", node=self.node.name, cluster=cluster,
                         detail="not a voter yet: it votes once a change of the voters adds it")
                return
            log.warning(
                "voter_is_learner",
                node=self.node.name,
                cluster=cluster,
                detail="this voter's data directory is empty in an existing cluster: it lost its "
                "state, and votes again only once it has caught up from the other voters",
            )

    # -- founding ---------------------------------------------------------------------------

    def _maybe_found(self) -> None:
        node = self.node
        acceptor = node.acceptor
        initial = node.initial_voters
        if node.cluster or acceptor is None or acceptor.member.config is not None or node.name != initial[0]:
            return
        if not node.config.found:
            return  # started to join a cluster that exists (--join): it never founds one
        roles = [role_of(node)]
        for voter in initial[1:]:
            hello = node.peers.get(voter)
            if voter not in self.view.connected or hello is None:
                return
            if hello.cluster or hello.config is not None or hello.role not in (BLANK, VOTER):
                return
            roles.append(hello.role)
        found = Found(secrets.token_hex(8), VoterConfig.initial(initial), all(r == BLANK for r in roles))
        log.info("cluster_founded", node=node.name, cluster=found.cluster, voters=",".join(initial),
                 all_blank=found.all_blank)
        for voter in initial[1:]:
            node.local.deliver_named(MEMBERSHIP_NAME, voter, found)
        self._on_found(found)

    def _on_found(self, found: Found) -> None:
        node = self.node
        local_acceptor = node.local_acceptor
        if node.cluster or local_acceptor is None or local_acceptor.acceptor.member.cluster:
            return
        voting = found.all_blank or not local_acceptor.acceptor.blank
        local_acceptor.found(found.cluster, found.config, voting, lambda: None)
        node.adopt_cluster(found.cluster)
        node.install_config(found.config)

    # -- after every change ---------------------------------------------------------------------

    def _changed(self) -> None:
        self._warn_voter_without_acceptor()
        self._maybe_found()
        self._maybe_catch_up()
        self._maybe_finish_change()
        change = self.view.change(self.quorum)
        if change is not None:
            self.quorum = change.reached
            self._log(change)
        hello = self._hello()
        able = frozenset(self.view.able)
        if hello == self.told and able == self.able_told:
            return
        if hello != self.told:
            self.told = hello
            for peer in self.view.connected:
                self._tell(peer)
        # A peer's hello (it votes) usually lands after its NodeUp reached the proposer,
        # which picks the voters a phase goes to first from those able to answer.
        self.able_told = able
        self.node.local.deliver_named(PROPOSER_NAME, self.node.name, MembershipChanged())

    def _maybe_catch_up(self) -> None:
        node = self.node
        if self.catching_up is not None or node.role != LEARNER or not node.cluster:
            return
        from paxtor.paxos.reconfig import catch_up_sources, reseat  # the reseat drives rounds

        if catch_up_sources(node, self.view.connected) is None:
            return
        self.catching_up = spawn(reseat, node)
        monitor(self.catching_up)

    def _warn_voter_without_acceptor(self) -> None:
        """A voter of the configuration started as a client never answers: say so, once."""
        node, config = self.node, self.node.voter_config
        if node.acceptor is not None or config is None or not config.is_member(node.name):
            return
        if self.warned_version == config.version:
            return
        self.warned_version = config.version
        log.error(
            "voter_without_acceptor",
            node=node.name,
            config=config.describe(),
            detail=f"{node.name} is a voter of the cluster but runs no acceptor (started as a client): "
            "it counts towards no quorum; restart it with its acceptor (--voter)",
        )

    warned_version = 0

    def _maybe_finish_change(self) -> None:
        node = self.node
        config = node.voter_config
        if config is None or not config.joint:
            self.joint_since = None
            return
        now = time.monotonic()
        if self.joint_since is None or self.joint_since[0] != config.version:
            self.joint_since = (config.version, now)
        able = [v for v in config.members if v in self.view.able]
        # a change whose coordinator still calls this voter is alive: only a silent one is taken over
        waited = now - max(self.joint_since[1], node.change_activity)
        if self.finishing is not None or not able or able[0] != node.name or waited < node.config.resume_change_after:
            return
        from paxtor.paxos.reconfig import finish_left_change

        log.warning("voter_change_resumed", node=node.name, config=config.describe())
        self.finishing = spawn(finish_left_change, node, config)
        monitor(self.finishing)

    def _hello(self, answer: bool = False) -> MemberHello:
        node = self.node
        return MemberHello(node.name, node.cluster, node.voter_config, role_of(node), answer)

    def _tell(self, peer: str, answer: bool = False) -> None:
        self.node.local.deliver_named(MEMBERSHIP_NAME, peer, self._hello(answer))

    def _log(self, change: QuorumChange) -> None:
        """Log a quorum transition and tell the quorum watchers (`PaxosNode.quorum_watchers`)."""
        for watcher in self.node.quorum_watchers:
            send(watcher, change)
        level = log.info if change.reached else log.warning
        client = self.node.role == "client"  # not one of the voters: it counts those it reaches
        level(
            quorum_event(change.reached, client),
            message=quorum_message(change.reached, change.connected, change.voters, client),
            node=self.node.name,
            connected=change.connected,
            voters=change.voters,
        )


def _start(node: PaxosNode) -> Pid | None:
    return MembershipServer.start_link(node, name=MEMBERSHIP_NAME)
