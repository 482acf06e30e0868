"""The keeper of one singleton: claim the key, start the child, hand the key to it, parent it.

A keeper runs on the node chosen for the key, as a temporary child of that
node's singleton `DynamicSupervisor`; the singleton is the keeper's only
child. The order is what makes "never two, not even in ``init``" hold:

1. claim the key in PaxosKV, bound to the keeper (`claim_for_start`); if it
   is taken, stop: another keeper owns the start;
2. start the child (its ``start_link`` links it to the keeper: a keeper that
   dies, e.g. killed because this node's lease ran out, which no process
   can trap, takes the child with it);
3. hand the key over to the child (`bind_child`, epoch + 1) and hold it in
   the current lease term; from then on the child's exit releases the key.

If the start fails, the claim is released and the error goes back to whoever
asked. The keeper then stays as the child's parent: it stops the child when
its own supervisor stops it, and exits quietly when the child exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from paxtor import paxos
from paxtor.actors import (
    ChildSpec,
    Exit,
    Pid,
    Ref,
    receive,
    self_pid,
    send,
    spawn_link,
    trap_exits,
)
from paxtor.actors.distribution import distributed_node
from paxtor.actors.function_ref import resolve_function_ref
from paxtor.actors.messages import ProcessExit
from paxtor.actors.node import current_node
from paxtor.actors.primitives import is_alive
from paxtor.actors.supervisor import shutdown_children
from paxtor.actors.wire import wire_type
from paxtor.paxos.register import empty_released, identity, release_if_bound
from paxtor.rounds import Deadline, end_tenure, lease_term, propose
from paxtor.singletons.register import (
    STARTED,
    bind_child,
    claim_for_start,
    ended_binding,
    running_pid,
    starting_keeper,
)

__all__ = [
    "NAMES_BUCKET",
    "AwaitStart",
    "Started",
    "KeeperReport",
    "keeper_child_spec",
    "child_spec_of",
    "allowed_here",
]

log = structlog.get_logger(__name__)

#: The PaxosKV bucket of the singletons.
NAMES_BUCKET = "paxtor.names"
#: How long a keeper tries to claim and hand over the key before it gives up.
KEEPER_ROUNDS_TIMEOUT = 10.0
START_FAILED = "start_failed"


@wire_type(name="paxtor.AwaitStart")
@dataclass(frozen=True, slots=True)
class AwaitStart:
    """To a keeper: answer `Started(tag, child)` to `reply_to` once the child owns the key."""

    reply_to: Pid
    tag: Ref


@wire_type(name="paxtor.Started")
@dataclass(frozen=True, slots=True)
class Started:
    tag: Ref
    child: Pid


@dataclass(frozen=True, slots=True)
class KeeperReport:
    """Keeper -> its node's name server: how the start of `key` ended.

    `outcome` is ``("ok", child)``, ``("error", reason)`` (the start failed;
    the claim is released) or ``("retry", why)`` (the key was taken, or the
    claim was lost: look again).
    """

    key: bytes
    keeper: Pid
    outcome: tuple


def allowed_here() -> tuple[str, ...] | None:
    """The module prefixes singletons started on this node may name (None: any)."""
    dist = distributed_node()
    return dist.allowed_modules if dist is not None else None


def child_spec_of(start: str, args: tuple) -> ChildSpec:
    """The `ChildSpec` a singleton reference names: ``"pkg.mod:Class"`` plus 0 or 1 argument
    (refused with `FunctionRefRefused` outside this node's ``allowed_modules``)."""
    target = resolve_function_ref(start, allowed_here())
    if len(args) > 1:
        raise TypeError(f"a singleton child spec takes at most one argument, got {len(args)}")
    if isinstance(target, type):
        return ChildSpec.of((target, args[0]) if args else target)
    # a module-level start function returning a linked pid
    return ChildSpec(id=start, start=(target, args))


def keeper_child_spec(key: bytes, start: str, args: tuple, user_key: Any, server: Pid) -> ChildSpec:
    """How the singleton supervisor starts the keeper of `key` (temporary: never restarted)."""
    return ChildSpec(
        id=("paxtor.singleton", key),
        start=(start_keeper, (key, start, args, user_key, server)),
        restart="temporary",
        shutdown="infinity",  # the keeper stops its child within the child's own shutdown
        type="supervisor",
    )


def start_keeper(key: bytes, start: str, args: tuple, user_key: Any, server: Pid) -> Pid:
    """Start function (runs in the supervisor): the keeper runs on its own at once."""
    return spawn_link(keeper_main, key, start, args, user_key, server)


def keeper_main(key: bytes, start: str, args: tuple, user_key: Any, server: Pid) -> None:
    trap_exits(True)  # a supervisor of one: its child's exit is a message
    me = self_pid()
    node = current_node().name
    deadline = Deadline(KEEPER_ROUNDS_TIMEOUT)
    try:
        epoch = _claim(key, me, node, deadline)
    except TimeoutError:
        _report(server, key, ("retry", "no quorum"))
        return
    if epoch is None:
        _report(server, key, ("retry", "taken"))
        return
    try:
        spec = child_spec_of(start, args)
        child = spec.start_process()
        if child is None:
            raise RuntimeError(f"{start} asked to be ignored; a singleton must start a process")
    except Exception as exc:  # noqa: BLE001 - any failure of the child's start is the caller's error
        log.warning("singleton_start_failed", key=repr(user_key), start=start, reason=repr(exc))
        _give_back(key, epoch, me)
        _report(server, key, ("error", exc))
        return
    try:
        handed = _hand_over(key, epoch, me, child, node, deadline)
    except TimeoutError:
        handed = _LOST
    if handed == _EXITED:
        # It started and is gone already (a short job): this start is done, like a
        # supervisor's start_child whose child exits at once. The claim is given back if
        # it is still the keeper's (a child binding is released as any other), and the
        # next use starts a new one.
        _give_back(key, epoch, me)
        _report(server, key, ("ok", child))
        return
    if handed == _LOST:
        shutdown_children([(child, spec.shutdown)])
        _give_back(key, epoch, me)
        _report(server, key, ("retry", "claim lost"))
        return
    _report(server, key, ("ok", child))
    log.debug("singleton_started", key=repr(user_key), pid=repr(child), node=node)
    _parent(child, spec)


def _claim(key: bytes, me: Pid, node: str, deadline: Deadline) -> int | None:
    """Claim the key for this keeper and hold it; the claim's epoch, or None if taken."""
    term = lease_term(deadline)
    reg = propose(NAMES_BUCKET, key, claim_for_start(me, node), deadline)
    while starting_keeper(reg) == me:
        if paxos.hold(me, NAMES_BUCKET, key, reg.epoch, term):
            return reg.epoch
        term = lease_term(deadline)  # the term moved on during the round: confirm in this one
        reg = propose(NAMES_BUCKET, key, identity, deadline)
    return None


_BOUND, _EXITED, _LOST = "bound", "exited", "lost"


def _hand_over(key: bytes, epoch: int, me: Pid, child: Pid, node: str, deadline: Deadline) -> str:
    """Re-bind the key from the keeper's claim to the started child, held in this lease term:
    `_BOUND`; `_EXITED` if the child is gone already; `_LOST` if the claim was lost."""
    if not is_alive(child):
        return _EXITED
    term = lease_term(deadline)
    ended = ended_binding(epoch, me, STARTED)
    reg = propose(NAMES_BUCKET, key, bind_child(epoch, me, child, node), deadline, ended=ended)
    while running_pid(reg) == child:
        if paxos.hold(child, NAMES_BUCKET, key, reg.epoch, term):
            return _BOUND
        if not is_alive(child):
            return _EXITED  # its binding is released as any other
        term = lease_term(deadline)
        reg = propose(NAMES_BUCKET, key, identity, deadline)
    return _LOST


def _give_back(key: bytes, epoch: int, me: Pid) -> None:
    """Release the keeper's claim (best effort: the keeper's exit releases it anyway).

    Unheld first, as `unlock` does: the round that ends the claim tells this node's lease
    keeper, which kills a holder it still sees as the owner (here, this keeper itself)."""
    paxos.unhold(me, NAMES_BUCKET, key, epoch)
    ended = ended_binding(epoch, me, START_FAILED)
    try:
        end_tenure(NAMES_BUCKET, key, release_if_bound(ended, empty_released), ended, Deadline(KEEPER_ROUNDS_TIMEOUT))
    except TimeoutError:
        log.warning("singleton_claim_release_deferred", key=key.hex())


def _report(server: Pid, key: bytes, outcome: tuple) -> None:
    send(server, KeeperReport(key, self_pid(), outcome))


def _parent(child: Pid, spec: ChildSpec) -> None:
    """Answer `AwaitStart`s; exit when the child does; stop the child when told to stop."""
    while True:
        msg = receive()
        cls = msg.__class__
        if cls is AwaitStart:
            send(msg.reply_to, Started(msg.tag, child))
        elif cls is Exit:
            if msg.pid == child:
                return  # the child's exit releases the key (it is bound to the child)
            shutdown_children([(child, spec.shutdown)])
            raise ProcessExit(msg.reason)
        else:
            log.warning("singleton_keeper_unexpected_message", message=repr(msg))
