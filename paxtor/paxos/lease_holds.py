"""The lease keeper's policy as a pure engine: which local pids hold which tenures, and who dies.

A local pid holds a tenure (a key at an epoch) only if it was granted within
the lease term its round started in; when the lease is lost every holder is
killed; when a round shows a key this node holds now belongs to another
tenure, its holder here is killed too (it lost the tenure without giving it
up, e.g. released while this node was cut off, and still believes it owns
the key). `LeaseHolds` decides; the events come with the lease term read
from the `LeaseClock` and whether the pid is alive, and the decisions go out
as effects (`KillHolder`, `Watch`, `Unwatch`). Two adapters drive it: the
gevent `paxtor.paxos.lease_keeper.LeaseKeeper` and the simulator's node.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from paxtor.actors.ids import Pid

__all__ = ["KillHolder", "LeaseHolds", "Unwatch", "Watch"]

Slot = tuple[str, Hashable]


@dataclass(frozen=True, slots=True)
class KillHolder:
    """Kill local ``pid`` (``lease_expired``): it must not outlive its tenure. ``why``:
    ``lease_lost``, ``outside_lease`` (granted without a valid term) or ``tenure_ended``."""

    pid: Pid
    why: str
    slot: Slot | None = None
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """Tell the engine (`forget`) when local ``pid`` exits."""

    pid: Pid


@dataclass(frozen=True, slots=True)
class Unwatch:
    """``pid`` holds nothing any more: stop watching it."""

    pid: Pid


class LeaseHolds:
    """See the module docstring. ``holds``/``held_by`` may be shared with readers (the node's
    `PaxosNode.holds` and `PaxosNode.held_by`); only this engine writes them."""

    def __init__(self, holds: dict[Pid, dict[Slot, int]] | None = None,
                 held_by: dict[Slot, Pid] | None = None) -> None:
        self.holds: dict[Pid, dict[Slot, int]] = {} if holds is None else holds
        self.held_by: dict[Slot, Pid] = {} if held_by is None else held_by
        self._watched: set[Pid] = set()

    def rewatch(self, pid: Pid) -> list[Any]:
        """A restarted adapter carries on with ``pid``'s holds: watch it again."""
        self._watched.add(pid)
        return [Watch(pid)]

    def holds_tenure(self, pid: Pid, slot: Slot, epoch: int) -> bool:
        held = self.holds.get(pid)
        return held is not None and held.get(slot) == epoch

    # -- events -----------------------------------------------------------------------

    def hold(self, pid: Pid, slot: Slot, epoch: int, term: Any, term_now: Any, alive: bool) -> tuple[bool, list[Any]]:
        """Record that local, live ``pid`` owns tenure ``epoch`` of ``slot``, if ``term`` (the
        round's) is still the current one (``term_now``); whether it does, and the effects."""
        if term is None or term_now != term or not alive:
            return False, []
        out: list[Any] = []
        previous = self.held_by.get(slot)
        if previous is not None and previous != pid:
            self._drop(previous, slot, out)
        self.holds.setdefault(pid, {})[slot] = epoch
        self.held_by[slot] = pid
        if pid not in self._watched:
            self._watched.add(pid)
            out.append(Watch(pid))
        return True, out

    def hold_or_kill(self, pid: Pid, slot: Slot, epoch: int, term: Any, term_now: Any, alive: bool) -> list[Any]:
        """A round gave ``pid`` the key: hold it, or kill it (granted outside the lease)."""
        held, out = self.hold(pid, slot, epoch, term, term_now, alive)
        if not held and alive:
            out.append(KillHolder(pid, "outside_lease", slot, epoch))
        return out

    def tenure_now(self, slot: Slot, epoch: int, owner: Pid | None) -> list[Any]:
        """A round chose tenure ``epoch`` owned by ``owner``: a holder here that is not it lost
        its tenure without giving it up (an owner that gives it up unholds first). It still
        believes it owns the key, so it is killed, as a lease loss would have: dropping it
        silently would spare it from the lease loss that may come next."""
        pid = self.held_by.get(slot)
        if pid is None:
            return []
        held_epoch = self.holds.get(pid, {}).get(slot)
        if pid == owner and held_epoch == epoch:
            return []
        out: list[Any] = []
        self._drop(pid, slot, out)
        out.append(KillHolder(pid, "tenure_ended", slot, held_epoch if held_epoch is not None else epoch))
        return out

    def unhold(self, pid: Pid, slot: Slot, epoch: int) -> list[Any]:
        """``pid`` gives up tenure ``epoch`` of ``slot`` (it released the key)."""
        out: list[Any] = []
        if self.holds.get(pid, {}).get(slot) == epoch:
            self._drop(pid, slot, out)
        return out

    def lost(self) -> list[Any]:
        """The lease was lost: every holder dies, and holds nothing any more."""
        out: list[Any] = []
        for pid in list(self.holds):
            out.append(KillHolder(pid, "lease_lost"))
            self._forget(pid, out)
        return out

    def forget(self, pid: Pid) -> list[Any]:
        """``pid`` exited: it holds nothing."""
        out: list[Any] = []
        self._forget(pid, out)
        return out

    # -- bookkeeping ---------------------------------------------------------------------

    def _drop(self, pid: Pid, slot: Slot, out: list[Any]) -> None:
        held = self.holds.get(pid)
        if held is not None:
            held.pop(slot, None)
            if not held:
                self._forget(pid, out)
        if self.held_by.get(slot) == pid:
            del self.held_by[slot]

    def _forget(self, pid: Pid, out: list[Any]) -> None:
        held = self.holds.pop(pid, None)
        if held:
            for slot in held:
                if self.held_by.get(slot) == pid:
                    del self.held_by[slot]
        if pid in self._watched:
            self._watched.discard(pid)
            out.append(Unwatch(pid))
