"""Changing the voters, and bringing back a voter that lost its state.

Every change moves the cluster to a new voter configuration
(`paxtor.paxos.voter_config`), chosen by consensus in one register (key
``"voters"`` of bucket ``"paxtor.system"``) and then *installed* on the
voters: an acceptor that installed version v refuses every round tagged with
an older version. Installing on enough voters that every quorum of the old
configuration contains one of them ends the old configuration's rounds for
good, whatever messages are still in flight. ``docs/protocol.md`` (Voter
changes) gives the whole argument; in short:

`change_voters` (add, remove, replace, resize) goes through a joint
configuration: (1) choose ``joint = old -> new`` (quorums need a majority of
both) and install it on a quorum of each; (2) copy every key to a quorum of
the new voters with one bulk Paxos round (`migrate`: phase 1 for every key at
once, then phase 2 in pages; a key some voter promised higher gets an
ordinary identity round instead); (3) wait until no lease counted by the old
quorums alone can still hold (the silence threshold after step 1); (4)
choose and install the new stable configuration. A change interrupted by a
crash is finished by `finish_change`, which any voter runs when it finds the
cluster stuck in a joint configuration.

`reseat` brings back a voter whose data directory was wiped: it is a learner
(it votes on nothing). It (1) chooses a new version of the same
configuration, (2) installs it on the other voters, which ends every round
its lost promises could still take part in, (3) copies their state (every
chosen value is there: they meet every quorum without it), and only then
votes again. It needs enough of the other voters for (2) and (3): both of
them in a cluster of three.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import gevent
import gevent.event
import structlog

from paxtor.actors import ReceiveTimeout, call, receive, self_pid, send, spawn
from paxtor.actors import exit as exit_process
from paxtor.actors.ids import Pid
from paxtor.actors.messages import CallError
from paxtor.paxos.acceptor import FLOOR_STRIDE, Collected, KeyRecord, LogRecord, PromiseFloor
from paxtor.paxos.ballot import Ballot
from paxtor.paxos.envelopes import ACCEPTOR_NAME
from paxtor.paxos.errors import NoQuorum
from paxtor.paxos.log_codec import KEY_RECORD, decode_log_fields, record_from_fields
from paxtor.paxos.paxos_node import PaxosNode
from paxtor.paxos.register import ChangeFunction, Register, identity
from paxtor.paxos.voter_config import VoterConfig, check_voter_names

__all__ = [
    "SYSTEM_BUCKET",
    "VOTERS_KEY",
    "catch_up_sources",
    "change_voters",
    "check_new_voters",
    "finish_change",
    "migrate",
    "read_config",
    "read_state",
    "reseat",
    "set_config",
]

log = structlog.get_logger(__name__)

SYSTEM_BUCKET = "paxtor.system"
VOTERS_KEY = "voters"
#: One call to a voter (an install, a page of a snapshot) may take this long.
CALL_TIMEOUT = 30.0
#: A page of the bulk round's phase 2 is sent once its registers encode to this many bytes.
PAGE_BYTES = 1 << 20
_tokens = itertools.count(1)  # tells the answers of one `_gather` from a late one of another


def set_config(expected: VoterConfig, new: VoterConfig) -> ChangeFunction:
    """The change of the configuration register: ``expected`` -> ``new``, else keep.

    An empty register stands for the configuration the cluster was founded
    with (version 1): the first change writes it."""

    def change(register: Register) -> Register:
        current = register.value if register.filled else None
        if current is None and expected.version == 1:
            current = expected
        if current != expected:
            return register
        return register.with_value(new) if register.filled else register.claim(new)

    return change


def current_config(register: Register, fallback: VoterConfig) -> VoterConfig:
    """The configuration a register read says is current (``fallback``: the founding one)."""
    value = register.value if register.filled else None
    return value if isinstance(value, VoterConfig) else fallback


def catch_up_sources(node: PaxosNode, connected: Iterable[str]) -> tuple[str, ...] | None:
    """The voters a learner copies from (`VoterConfig.catch_up_sources`: connected voters
    that said they vote), or None while too few are connected."""
    config = node.voter_config
    if config is None:
        return None
    able = [v for v in connected if v not in node.learners and getattr(node.peers.get(v), "role", None) == "voter"]
    return config.catch_up_sources(node.name, able)


def reseat(node: PaxosNode) -> None:
    """Bring this learner back (see the module docstring); runs in its own process."""
    from paxtor.paxos import api  # the API runs rounds through this node's proposer

    dist_nodes = _connected(node)
    sources = catch_up_sources(node, dist_nodes)
    config = node.voter_config
    local_acceptor = node.local_acceptor
    if sources is None or config is None or local_acceptor is None:
        return
    started = time.monotonic()
    new = VoterConfig(config.version + 1, config.voters)
    log.info("catch_up_started", node=node.name, sources=",".join(sources), config=config.describe())
    try:
        chosen = api.propose(VOTERS_KEY, set_config(config, new), bucket=SYSTEM_BUCKET, timeout=10)
    except NoQuorum as exc:
        log.info("catch_up_deferred", node=node.name, reason=str(exc)[:200])
        return
    now_config = current_config(chosen, config)
    if now_config != new:
        node.install_config(now_config)  # the cluster moved on: start again from there
        log.info("catch_up_deferred", node=node.name, reason=f"the voters are now {now_config.describe()}")
        return
    try:  # every source must have installed it: together they end the old version's rounds
        install_on(node, new, started + CALL_TIMEOUT, enough=lambda acks: set(sources) <= set(acks))
    except NoQuorum as exc:
        log.info("catch_up_deferred", node=node.name, reason=str(exc)[:200])
        return
    node.install_config(new)
    read = read_state(sources)
    done = gevent.event.Event()
    taken = local_acceptor.catch_up(read.records(), read.floor, done.set, encoded=read.key_records())
    done.wait()
    log.info(
        "catch_up_done",
        node=node.name,
        records=taken,
        config=new.describe(),
        seconds=round(time.monotonic() - started, 3),
        message=f"{node.name} caught up from {', '.join(sources)} and votes again",
    )


class StateRead:
    """What `read_state` gathered: per key, the state with the highest accepted ballot.

    Each source sends every key, so most records read are dropped for another source's
    copy: a key's record is kept as its log fields and bytes (`log_codec`), compared by
    ballot, and built only once it is known to be kept (`key_records`)."""

    def __init__(self) -> None:
        #: (bucket, key) -> (accepted ballot as (counter, node, incarnation), log fields, log bytes)
        self.best: dict[tuple[str, Hashable], tuple[tuple[int, str, int], tuple[Any, ...], bytes]] = {}
        self.collected: list[Collected] = []  # the sources' dropped-key floors
        self.floor = 0  # the highest promise floor among the sources
        self.sources: tuple[str, ...] = ()  # the sources read to the end
        #: keys some source had promised above the read's ballot (a round is under way there)
        self.contested: set[tuple[str, Hashable]] = set()
        self._built: dict[tuple[str, Hashable], tuple[KeyRecord, bytes]] | None = None

    def key_records(self) -> dict[tuple[str, Hashable], tuple[KeyRecord, bytes]]:
        """Every key's kept record, with the log bytes it was read as."""
        if self._built is None:
            self._built = {
                slot: (record_from_fields(fields), raw) for slot, (_, fields, raw) in self.best.items()  # type: ignore[misc]
            }
        return self._built

    def records(self) -> list[LogRecord]:
        return [*self.collected, *(record for record, _ in self.key_records().values())]


Edit = Callable[[tuple[str, ...]], Sequence[str]]


def change_voters(
    node: PaxosNode, voters: Sequence[str] | Edit, *, timeout: float = 120.0
) -> VoterConfig:
    """Make the cluster's voters ``voters`` (see the module docstring); the new configuration.

    ``voters`` is the new voter set, or a function from the current voters to
    it, applied to the configuration read at each attempt: two operators
    changing the voters at once then compose (one adds, the other removes),
    instead of the later one undoing the earlier. Runs in a process of
    ``node`` (any node that knows the configuration, a client too). Finishes
    a change it finds under way first. Refuses (ValueError) a change that the
    voters able to answer now could not carry through; raises `NoQuorum` if a
    step cannot reach the voters it needs before ``timeout``."""
    from paxtor.paxos import api

    fixed = tuple(voters) if not callable(voters) else ()
    edit: Edit = voters if callable(voters) else (lambda _current: fixed)
    deadline = time.monotonic() + timeout
    while True:
        current = read_config(node, deadline)
        if current.joint:
            finish_change(node, current, deadline)
            continue
        target = check_voter_names(edit(current.voters))
        if set(current.voters) == set(target):
            return current
        joint = current.change_to(target)
        check_able(node, joint)
        check_new_voters(node, [v for v in target if not current.is_member(v)], deadline)
        log.info("voter_change_started", node=node.name, change=joint.describe())
        chosen = api.propose(VOTERS_KEY, set_config(current, joint), bucket=SYSTEM_BUCKET, timeout=_left(deadline))
        if current_config(chosen, current) == joint:
            return finish_change(node, joint, deadline)


def check_able(node: PaxosNode, joint: VoterConfig) -> None:
    """Refuse a change that could not finish with the voters able to answer now (and the
    new ones connected): a change never rolls back, so one chosen without them would leave
    the cluster without a quorum until they return (etcd's strict reconfiguration check)."""
    able = node.voting_members(_connected(node))
    newcomers = {
        v for v in joint.voters
        if not joint.previous or v not in joint.previous
    }  # fmt: skip
    reachable = able | {v for v in newcomers if v in node.peers or v == node.name}
    final = joint.finished()
    if joint.is_quorum(reachable) and final.is_quorum(reachable):
        return
    missing = [v for v in joint.members if v not in reachable]
    raise ValueError(
        f"the change to {', '.join(joint.voters)} needs a majority of the old voters and of the new "
        f"that can answer, and {', '.join(missing)} cannot now: bring them back first"
    )


def check_new_voters(node: PaxosNode, names: Sequence[str], deadline: float) -> None:
    """Refuse to add a voter whose acceptor holds keys: one removed earlier kept the values
    it held then, and the voters may have collected since the tombstones that ended them;
    added back, it would bring those values back (``docs/protocol.md``, Voter changes).
    Asked after the configuration was read and before the change is chosen: no
    configuration names the node in between, so nothing can give it a key meanwhile."""

    for name in names:
        try:
            count = call((ACCEPTOR_NAME, name), ("key_count",), timeout=min(CALL_TIMEOUT, _left(deadline)))
        except CallError as exc:
            raise NoQuorum(f"could not ask {name} what it holds before adding it: {exc}") from None
        if count:
            raise ValueError(
                f"{name} holds {count} keys from when it was a voter: stop it, delete its data "
                "directory, start it again, then add it"
            )


def finish_left_change(node: PaxosNode, joint: VoterConfig) -> None:
    """Finish a change whose coordinator went away (run by a voter, in its own process)."""

    try:
        finish_change(node, joint, time.monotonic() + 120.0)
    except (NoQuorum, CallError) as exc:
        log.warning("voter_change_not_finished", node=node.name, config=joint.describe(), reason=str(exc)[:300])


def read_config(node: PaxosNode, deadline: float) -> VoterConfig:
    """The cluster's configuration as its register says now (a linearizable read)."""
    from paxtor.paxos import api

    config = node.voter_config
    if config is None:
        raise NoQuorum("this node does not know the cluster's voters yet")
    register = api.propose(VOTERS_KEY, identity, bucket=SYSTEM_BUCKET, timeout=_left(deadline))
    current = current_config(register, config)
    node.install_config(current)
    return current


def finish_change(node: PaxosNode, joint: VoterConfig, deadline: float) -> VoterConfig:
    """Carry the joint configuration ``joint`` through to its stable end (idempotent: a
    crashed change is finished by running this again)."""
    from paxtor.paxos import api

    assert joint.previous is not None
    old = VoterConfig(joint.version - 1, joint.previous)
    started = time.monotonic()
    install_on(node, joint, deadline, enough=lambda acks: joint.is_quorum(acks) and not old.is_quorum(
        [v for v in old.members if v not in acks]
    ))
    installed = time.monotonic()
    node.install_config(joint)
    migrated, rounds = migrate(node, joint, deadline)
    # a lease counted by the old quorums alone rests on acks sent before the install ended: it
    # must have run out before the new voters decide alone (docs/protocol.md, Voter changes)
    wait = node.config.silence - (time.monotonic() - installed)
    if wait > 0:
        gevent.sleep(wait)
    final = joint.finished()
    chosen = api.propose(VOTERS_KEY, set_config(joint, final), bucket=SYSTEM_BUCKET, timeout=_left(deadline))
    now = current_config(chosen, joint)
    if now != final:
        node.install_config(now)
        return now  # another node finished it (or moved on) meanwhile
    install_on(node, final, deadline, enough=final.is_quorum)
    node.install_config(final)
    log.info(
        "voter_change_done",
        node=node.name,
        voters=",".join(final.voters),
        config=final.describe(),
        keys_moved=migrated,
        keys_by_round=rounds,
        seconds=round(time.monotonic() - started, 3),
    )
    return final


def install_on(node: PaxosNode, config: VoterConfig, deadline: float, enough: Callable[[list[str]], bool]) -> list[str]:
    """Install ``config`` on its members until those that did satisfy ``enough``; who did."""

    answers = _gather(
        list(config.members), ("install", node.cluster, config), deadline, enough=lambda a: enough(list(a))
    )
    acks = list(answers)
    if not enough(acks):
        raise NoQuorum(
            f"could not install {config.describe()} on enough voters (done: {', '.join(acks) or 'none'})"
        )
    return acks


def migrate(node: PaxosNode, joint: VoterConfig, deadline: float) -> tuple[int, int]:
    """Copy every key to a quorum of ``joint`` in one bulk round; (keys copied in bulk, keys
    that needed a round of their own)."""
    from paxtor.paxos import api

    members = list(joint.members)
    floors = _gather(members, ("floor",), deadline)
    if not joint.is_quorum(list(floors)):
        raise NoQuorum(f"too few voters of {joint.describe()} answer to move the keys")
    ballot = Ballot(max(floors.values()) + FLOOR_STRIDE, node.identity)
    sources = [m for m in members if m in floors]
    read = read_state(sources, ballot, enough=joint.is_quorum)
    _gather(members, ("adopt_floors", tuple(read.collected)), deadline)
    moved = 0
    leftover: list[tuple[str, Hashable]] = sorted(read.contested, key=repr)
    page: list[tuple[str, Hashable, Register]] = []
    size = 0
    for slot, (record, raw) in read.key_records().items():
        if slot in read.contested or record.accepted_ballot == Ballot.ZERO:
            continue
        page.append((slot[0], slot[1], record.accepted))
        size += len(raw)  # the key and its register, about as the page encodes them
        if size >= PAGE_BYTES:
            moved += _bulk_accept(joint, ballot, page, leftover, deadline)
            page, size = [], 0
    if page:
        moved += _bulk_accept(joint, ballot, page, leftover, deadline)
    for bucket, key in leftover:  # a round under way, or a page some voters refused: one round each
        api.propose(key, identity, bucket=bucket, timeout=_left(deadline))
    return moved, len(leftover)


def _bulk_accept(
    joint: VoterConfig, ballot: Ballot, page: list[tuple[str, Hashable, Register]],
    leftover: list[tuple[str, Hashable]], deadline: float,
) -> int:
    """Phase 2 of the bulk round for one page; the keys a quorum did not take go to ``leftover``."""
    answers = _gather(list(joint.members), ("bulk_accept", ballot, joint.version, tuple(page)), deadline)
    moved = 0
    for bucket, key, _register in page:
        took = [m for m, refused in answers.items() if (bucket, key) not in refused]
        if joint.is_quorum(took):
            moved += 1
        else:
            leftover.append((bucket, key))
    return moved


def _gather(
    members: list[str],
    request: tuple[Any, ...],
    deadline: float,
    enough: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Ask every member's acceptor at once (one process per call); the answers of those
    that answered in time (an answer of None is none), or as soon as they are ``enough``."""
    me, token = self_pid(), next(_tokens)
    for member in members:
        spawn(_ask, me, token, member, request, min(CALL_TIMEOUT, _left(deadline)))
    answers: dict[str, Any] = {}
    for _ in members:
        try:
            _, member, answer = receive(
                lambda m: m.__class__ is tuple and len(m) == 3 and m[0] == token, timeout=_left(deadline)
            )
        except ReceiveTimeout:
            break
        if answer is not None:
            answers[member] = answer
            if enough is not None and enough(answers):
                break
    return answers


def _ask(reply_to: Pid, token: int, member: str, request: tuple[Any, ...], timeout: float) -> None:
    try:
        answer = call((ACCEPTOR_NAME, member), request, timeout=timeout)
    except CallError:
        answer = None
    send(reply_to, (token, member, answer))


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def read_state(
    sources: Iterable[str], ballot: Ballot | None = None, enough: Callable[[list[str]], bool] | None = None
) -> StateRead:
    """Every key's state with the highest accepted ballot among ``sources``, after each
    promised ``ballot`` for every key (if given); see `StateRead`. The sources are read
    at once, each by a process of this node that decodes its pages while the other
    sources encode theirs. If one fails, the read goes on without it as long as those
    read to the end may still satisfy ``enough`` (else the error is raised; without
    ``enough``, every source is needed). Pages a failed source sent are kept: each is a
    genuine report of that acceptor, and more reports never mislead a bulk round."""
    read = StateRead()
    sources = list(sources)
    me, token = self_pid(), next(_tokens)
    readers = {spawn(_read_source, me, token, source, ballot): source for source in sources}
    done: list[str] = []
    failed: list[str] = []
    try:
        while len(done) + len(failed) < len(sources):
            _, source, pages = receive(
                lambda m: m.__class__ is tuple and len(m) == 3 and m[0] == token, timeout=2 * CALL_TIMEOUT
            )
            if pages is None:
                done.append(source)
            elif isinstance(pages, Exception):
                failed.append(source)
                rest = [s for s in sources if s not in failed]
                if enough is None or not enough(rest):
                    raise pages
                log.info("state_read_source_lost", source=source, error=str(pages)[:200])
            else:
                for fields, raw in pages:
                    _take(read, fields, raw, ballot)
    except ReceiveTimeout:
        raise CallError("timeout", f"no snapshot page from {', '.join(sources)} in {2 * CALL_TIMEOUT:g} s") from None
    finally:
        for reader in readers:
            exit_process(reader, "kill")
    read.sources = tuple(done)
    return read


def _read_source(reply_to: Pid, token: int, source: str, ballot: Ballot | None) -> None:
    """Read ``source``'s snapshot page by page; each page's records go to ``reply_to`` as
    (log fields, log bytes) pairs (then None), or the error that stopped the read."""
    try:
        answer = call((ACCEPTOR_NAME, source), ("snapshot", ballot), timeout=CALL_TIMEOUT)
        if answer is None:
            raise CallError("learner", (ACCEPTOR_NAME, source), ("snapshot", ballot))  # it does not vote
        snapshot, _count = answer
        index: int | None = 0
        while index is not None:
            page, index = call((ACCEPTOR_NAME, source), ("page", snapshot, index), timeout=CALL_TIMEOUT)
            send(reply_to, (token, source, [(decode_log_fields(raw), raw) for raw in page]))
    except Exception as exc:  # noqa: BLE001 - the reader raises it
        send(reply_to, (token, source, exc))
        return
    send(reply_to, (token, source, None))


def _take(read: StateRead, fields: tuple[Any, ...], raw: bytes, ballot: Ballot | None) -> None:
    if fields[0] == KEY_RECORD and len(fields) == 15:  # a key: compared by ballot, built if kept
        slot = (fields[1], fields[2])
        if ballot is not None and (fields[3], fields[4], fields[5]) > (ballot.counter, *ballot.node):
            read.contested.add(slot)
        accepted = (fields[6], fields[7], fields[8])
        mine = read.best.get(slot)
        if mine is None or accepted > mine[0]:
            read.best[slot] = (accepted, fields, raw)
        return
    record = record_from_fields(fields)
    cls = record.__class__
    if cls is PromiseFloor:
        read.floor = max(read.floor, record.counter)  # type: ignore[union-attr]
    elif cls is Collected:
        read.collected.append(record)  # type: ignore[arg-type]


def _connected(node: PaxosNode) -> list[str]:
    from paxtor.actors.distribution import distributed_node

    dist = distributed_node(node.local)
    return dist.nodes() if dist is not None else []
