"""The state of one PaxosKV key, and the change functions that rounds apply to it.

A `Register` is what each key of each bucket holds: a value (or nothing), the
`Binding` that says how long the value lives (a pid, a node, a parent key, a
wall-clock deadline), and an ``epoch``: the fencing token.

Epoch rules (checked by `check_transition`, which the proposer applies to
every change function's result before anything is sent):

- empty -> value: the epoch grows by one (a new *tenure*);
- value -> empty: the epoch stays (the empty register is a tombstone, so the
  next tenure's token is still larger than every earlier one);
- value -> value with the same binding: the epoch stays (same tenure; the lock
  layer updates its waiter queue this way);
- value -> value with another binding: the epoch grows by one (a *handoff*:
  the lock layer hands a lock to the next waiter in one round, and the next
  owner's token must be larger);
- the epoch never decreases, and a bound tenure can only end with an
  `EndedBinding` that names exactly that tenure (epoch and binding), so a
  release meant for an earlier owner can never erase a later one.

Change functions are plain callables ``Register -> Register`` applied by the
proposer; they never travel on the wire. Build their results with the helpers
`Register.claim`, `Register.release`, `Register.handoff`,
`Register.with_value` and the epochs come out right by construction.

``lease_fences`` is maintained by the consensus core, never by change
functions (the proposer overwrites it): each entry records a release of a
tenure whose owner's node was only *presumed* dead ("noconnection") and that is
not yet known to be chosen. Every acceptor applies the lease veto to a register
that carries one (see `paxtor.paxos.lease`). The release's justification
travels inside the register rather than beside the accept message because a
later round may *adopt* the value (CASPaxos) and carry it to acceptors that
never saw the release proposal; a justification sent beside the first accept
would be lost on the way.

``op_marks`` is core bookkeeping too: per proposer node, the id of the last
change it applied, ``(node, incarnation, op)``. A round whose accepts went
out but that lost (a conflict, a timeout) may see its value adopted by a
later round, even one of another node that builds on it; the retry of the
same request must then not apply the change a second time (an increment
counted twice). The retry finds its own mark in the register and finishes
instead (see `paxtor.paxos.proposer_server`). A node's requests on one key are
served one at a time, so one mark per node is enough.

Epoch floor: an acceptor that ever garbage-collects tombstones must remember,
per bucket, the highest epoch it dropped and answer for a key it does not know
with ``Register.empty(floor)`` (see `paxtor.paxos.acceptor.Acceptor`).
Collection itself is not implemented; the floor is, so it can be added safely.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from paxtor.actors.errors import PaxtorError
from paxtor.actors.ids import Pid
from paxtor.actors.wire import wire_type

__all__ = [
    "NOCONNECTION",
    "Binding",
    "ChangeFunction",
    "ChangeRejected",
    "EndedBinding",
    "LeaseFence",
    "OpMark",
    "Register",
    "ReleasePolicy",
    "check_transition",
    "empty_released",
    "identity",
    "is_op_mark",
    "marks_with",
    "put_if_empty",
    "release_if_bound",
    "tenure_ended",
]

NOCONNECTION = "noconnection"
"""The one exit reason that does not come from the owner's node itself: only a
lost connection says it, so a release for it is subject to the lease veto."""


class ChangeRejected(PaxtorError, ValueError):
    """A change function broke the register rules (epochs, tenures, justification)."""


@wire_type(name="paxos.Binding")
@dataclass(frozen=True, slots=True)
class Binding:
    """What a value's life is tied to; the value goes when any of these ends.

    ``pid``: the process exits. ``node``: the node goes down. ``parent``: the
    key ``parent`` (same bucket) is released. ``until``: wall-clock ms passes.
    """

    pid: Pid | None = None
    node: str | None = None
    parent: Hashable | None = None
    until: int | None = None

    def __post_init__(self) -> None:
        if self.pid is None and self.node is None and self.parent is None and self.until is None:
            raise ValueError("a Binding needs at least one of pid, node, parent, until")
        if self.pid is not None and not isinstance(self.pid, Pid):
            raise ValueError(f"Binding.pid must be a Pid, got {self.pid!r}")
        if self.node is not None and not isinstance(self.node, str):
            raise ValueError(f"Binding.node must be a node name, got {self.node!r}")
        if self.until is not None and type(self.until) is not int:
            raise ValueError(f"Binding.until must be wall-clock ms (int), got {self.until!r}")

    @property
    def owner_node(self) -> str | None:
        """The node whose lease protects this binding (the pid's node, else ``node``)."""
        if self.pid is not None:
            return self.pid.node
        return self.node

    @property
    def owner_incarnation(self) -> int | None:
        """The owner node's incarnation when known (only a pid carries one)."""
        return self.pid.incarnation if self.pid is not None else None


@wire_type(name="paxos.EndedBinding")
@dataclass(frozen=True, slots=True)
class EndedBinding:
    """The justification of a release: tenure ``epoch`` bound by ``binding`` ended for ``reason``.

    ``reason`` is the exit reason as observed: ``"noconnection"`` when only a
    lost connection says so (vetoed by acceptors until the owner's lease must
    have run out), anything else when the owner's node itself reported the end
    (the pid exited, the node restarted, the parent went, ``until`` passed).
    """

    epoch: int
    binding: Binding
    reason: Any

    @property
    def is_noconnection(self) -> bool:
        return self.reason == NOCONNECTION


@wire_type(name="paxos.LeaseFence")
@dataclass(frozen=True, slots=True)
class LeaseFence:
    """A not-yet-chosen release, for noconnection, of tenure ``epoch`` bound by ``binding``.

    Acceptors veto a register carrying it while the owner's node may still hold
    its lease. The core drops it once the release is known chosen, or when a
    round's `EndedBinding` says the same tenure ended for a real reason (its
    owner's node vouches the owner is dead or was never granted the tenure).
    """

    epoch: int
    binding: Binding

    @property
    def node(self) -> str:
        node = self.binding.owner_node
        assert node is not None
        return node

    @property
    def incarnation(self) -> int | None:
        return self.binding.owner_incarnation

    def matches(self, ended: EndedBinding) -> bool:
        return self.epoch == ended.epoch and self.binding == ended.binding


@wire_type(name="paxos.Register")
@dataclass(frozen=True, slots=True)
class Register:
    """One key's state. Empty registers keep their epoch (tombstones)."""

    epoch: int = 0
    filled: bool = False
    value: Any = None
    binding: Binding | None = None
    lease_fences: tuple[LeaseFence, ...] = ()
    op_marks: tuple[OpMark, ...] = ()

    def __post_init__(self) -> None:
        if type(self.epoch) is not int or self.epoch < 0:
            raise ValueError(f"Register.epoch must be an int >= 0, got {self.epoch!r}")
        if not self.filled and (self.value is not None or self.binding is not None):
            raise ValueError("an empty Register has no value and no binding")

    @classmethod
    def empty(cls, epoch: int = 0) -> Register:
        """An empty register (a tombstone at ``epoch``)."""
        return cls(epoch=epoch)

    @property
    def is_empty(self) -> bool:
        return not self.filled

    def is_bound_to(self, epoch: int, binding: Binding) -> bool:
        """True while tenure ``epoch`` with exactly ``binding`` is still in place."""
        return self.filled and self.epoch == epoch and self.binding == binding

    def visible(self) -> Register:
        """This register without the core's bookkeeping (what clients see and models compare)."""
        if self.lease_fences or self.op_marks:
            return Register(self.epoch, self.filled, self.value, self.binding)
        return self

    def with_bookkeeping(self, lease_fences: tuple[LeaseFence, ...], op_marks: tuple[OpMark, ...]) -> Register:
        """This register with the core's ``lease_fences`` and ``op_marks`` replaced (the
        proposer's step on every round: built directly, as `dataclasses.replace` is slow)."""
        if lease_fences == self.lease_fences and op_marks == self.op_marks:
            return self
        return Register(self.epoch, self.filled, self.value, self.binding, lease_fences, op_marks)

    def same_visible(self, other: Register) -> bool:
        """``self.visible() == other.visible()``, without building either (rounds ask it often)."""
        return (
            self.epoch == other.epoch and self.filled == other.filled
            and self.binding == other.binding and self.value == other.value
        )  # fmt: skip

    def op_mark(self, node: str) -> OpMark | None:
        """The mark of the last change proposer node ``node`` applied here, if any."""
        for mark in self.op_marks:
            if mark[0] == node:
                return mark
        return None

    def with_op_mark(self, mark: OpMark) -> Register:
        """This register with ``mark`` as its node's last applied change."""
        return Register(self.epoch, self.filled, self.value, self.binding, self.lease_fences,
                        marks_with(self.op_marks, mark))

    # -- helpers for change functions: they get the epochs right ----------

    def claim(
        self,
        value: Any,
        *,
        pid: Pid | None = None,
        node: str | None = None,
        parent: Hashable | None = None,
        until: int | None = None,
    ) -> Register:
        """Empty -> value: a new tenure, epoch + 1."""
        if self.filled:
            raise ChangeRejected("claim() on a register that holds a value; release or hand off")
        return Register(
            self.epoch + 1, True, value, _binding(pid, node, parent, until), self.lease_fences
        )

    def release(self) -> Register:
        """Value -> empty: the tombstone keeps the epoch."""
        if not self.filled:
            raise ChangeRejected("release() on an empty register")
        return Register(self.epoch, False, None, None, self.lease_fences)

    def handoff(
        self,
        value: Any,
        *,
        pid: Pid | None = None,
        node: str | None = None,
        parent: Hashable | None = None,
        until: int | None = None,
    ) -> Register:
        """Value -> value of a new tenure (another owner), epoch + 1, in one round."""
        if not self.filled:
            raise ChangeRejected("handoff() on an empty register; use claim()")
        return Register(
            self.epoch + 1, True, value, _binding(pid, node, parent, until), self.lease_fences
        )

    def with_value(self, value: Any) -> Register:
        """Same tenure (same binding and epoch), another value (e.g. a waiter queue)."""
        if not self.filled:
            raise ChangeRejected("with_value() on an empty register; use claim()")
        return Register(self.epoch, True, value, self.binding, self.lease_fences, self.op_marks)


def _binding(
    pid: Pid | None, node: str | None, parent: Hashable | None, until: int | None
) -> Binding | None:
    if pid is None and node is None and parent is None and until is None:
        return None
    return Binding(pid, node, parent, until)


ChangeFunction = Callable[[Register], Register]
OpMark = tuple[str, int, int]
"""(proposer node name, its incarnation, the op number it gave one attempt of a change)."""


def is_op_mark(mark: Any) -> bool:
    """True if ``mark`` has an `OpMark`'s shape (for decoders)."""
    return (
        mark.__class__ is tuple and len(mark) == 3 and mark[0].__class__ is str
        and mark[1].__class__ is int and mark[2].__class__ is int
    )  # fmt: skip


def marks_with(marks: tuple[OpMark, ...], mark: OpMark) -> tuple[OpMark, ...]:
    """``marks`` with ``mark`` as its node's last applied change (sorted, one per node)."""
    if not marks:
        return (mark,)
    return tuple(sorted((*(m for m in marks if m[0] != mark[0]), mark)))


ReleasePolicy = Callable[[Register, EndedBinding], Register]


def tenure_ended(old: Register, new: Register) -> bool:
    """True if ``new`` no longer holds ``old``'s tenure (old held a value)."""
    return old.filled and (new.epoch != old.epoch or not new.filled)


def check_transition(old: Register, new: Any, ended: EndedBinding | None) -> None:
    """Raise `ChangeRejected` unless ``old -> new`` follows the epoch and tenure rules.

    ``ended`` is the round's release justification; a bound tenure may end
    only if it names exactly that tenure.
    """
    if not isinstance(new, Register):
        raise ChangeRejected(f"a change function must return a Register, got {type(new).__name__}")
    if new.epoch < old.epoch:
        raise ChangeRejected(f"epoch went backwards: {old.epoch} -> {new.epoch}")
    if old.is_empty:
        if new.is_empty and new.epoch != old.epoch:
            raise ChangeRejected(f"an empty register changed its epoch: {old.epoch} -> {new.epoch}")
        if new.filled and new.epoch != old.epoch + 1:
            raise ChangeRejected(f"a claim must take epoch {old.epoch + 1}, not {new.epoch}")
        return
    if new.is_empty:
        if new.epoch != old.epoch:
            raise ChangeRejected(f"a release must keep epoch {old.epoch}, not {new.epoch}")
    elif new.epoch == old.epoch:
        if new.binding != old.binding:
            raise ChangeRejected("the binding changed without a new epoch; use handoff()")
        return
    elif new.epoch != old.epoch + 1:
        raise ChangeRejected(f"a handoff must take epoch {old.epoch + 1}, not {new.epoch}")
    if old.binding is not None and (
        ended is None or not old.is_bound_to(ended.epoch, ended.binding)
    ):
        raise ChangeRejected(
            f"tenure {old.epoch} bound to {old.binding!r} ended without a matching EndedBinding"
        )


# -- standard change functions -------------------------------------------


def identity(register: Register) -> Register:
    """The change of a linearizable read: keep everything."""
    return register


def put_if_empty(value: Any, binding: Binding | None = None) -> ChangeFunction:
    """PaxosKV put: if empty, set ``value`` (a new tenure, bound by ``binding``); else keep."""

    def change(register: Register) -> Register:
        if register.filled:
            return register
        if binding is None:
            return register.claim(value)
        return register.claim(
            value,
            pid=binding.pid,
            node=binding.node,
            parent=binding.parent,
            until=binding.until,
        )

    return change


def empty_released(register: Register, ended: EndedBinding) -> Register:
    """The default release policy: the ended tenure leaves an empty register."""
    return register.release()


def release_if_bound(
    ended: EndedBinding, policy: ReleasePolicy = empty_released
) -> ChangeFunction:
    """A release round: if still bound to ``ended``'s tenure, apply ``policy``; else keep.

    ``policy(register, ended)`` decides what follows the tenure: empty it
    (default), or hand the value to the next owner in the same round.
    """

    def change(register: Register) -> Register:
        if not register.is_bound_to(ended.epoch, ended.binding):
            return register
        return policy(register, ended)

    return change
