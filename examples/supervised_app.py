"""An application supervision tree with a Paxtor singleton in it.

    .venv/bin/python examples/supervised_app.py

Every node runs the same application tree, under the node's root supervisor::

    app_sup (one_for_one)                      on EVERY node
    ├── stats          Stats: a plain local GenServer (per-node counters)
    └── keep_billing   KeepSingleton: keeps the cluster-wide singleton
                       "billing" running: starts it if no node runs it,
                       watches it, and starts it again when it dies

The singleton is itself a supervision tree, running on ONE node at a time::

    billing_sup (one_for_one)                  on ONE node
    ├── ledger         Ledger: a GenServer holding the charges
    └── auditor        Auditor: a GenServer that checks the ledger

The example charges from every node, crashes the ledger (billing_sup
restarts it in place: same singleton, new ledger), then stops the node that
hosts billing: the KeepSingleton processes on the other nodes start it again
on one of them. Three nodes start in this OS process (TCP over loopback).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import gevent

import paxtor
from paxtor.actors import CallError, ChildSpec, Down, GenServer, Supervisor, call, monitor, receive, self_pid, send
from paxtor.cli import configure_logging
from paxtor.testing import nodes_in_this_process

# -- the singleton's tree -----------------------------------------------------------------------


class Ledger(GenServer):
    def init(self) -> None:
        self.charges: list[int] = []

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("charge", amount):
                self.charges.append(amount)
                return sum(self.charges)
            case "total":
                return sum(self.charges)
            case "crash":
                raise RuntimeError("the ledger hit a bug")
        raise ValueError(f"unknown request {request!r}")


class Auditor(GenServer):
    def handle_call(self, request: Any, caller: Any) -> Any:
        return ("audited", self_pid().node)


def start_billing() -> Any:
    """The singleton's start function: a whole supervision tree."""
    return Supervisor.start_link(
        [ChildSpec.of(Ledger, id="ledger"), ChildSpec.of(Auditor, id="auditor")], strategy="one_for_one"
    )


BILLING = "billing"


def billing() -> Any:
    """The singleton's name (a Via); the same on every node."""
    return paxtor.name(BILLING, start_billing)


def ledger() -> Any:
    """The ledger of the one running billing tree (starting the tree if none runs)."""
    return {child_id: pid for child_id, pid, _ in Supervisor.which_children(paxtor.whereis(billing()))}["ledger"]


# -- the per-node application tree ------------------------------------------------------------


class Stats(GenServer):
    def init(self) -> None:
        self.charges = 0

    def handle_call(self, request: Any, caller: Any) -> int:
        self.charges += 1
        return self.charges


class KeepSingleton(GenServer):
    """Keeps the singleton of a name running: one of these runs on every node.

    Paxtor starts a singleton on first use; this process is that use, again
    every time the singleton dies (`Down`), so it comes back without waiting
    for a caller. Every node's keeper races to do it; Paxtor starts one.
    """

    def init(self, key: str) -> None:
        self.key = key
        self.via = paxtor.name(key, start_billing)
        send(self_pid(), "check")

    def handle_info(self, msg: Any) -> None:
        if msg == "check" or isinstance(msg, Down):
            try:
                monitor(paxtor.whereis(self.via))  # starts it if no node runs it
            except (TimeoutError, paxtor.NoQuorum):  # CP: no quorum, no singleton; try again
                gevent.sleep(0.5)
                send(self_pid(), "check")


def app_spec() -> ChildSpec:
    return Supervisor.child_spec(
        [ChildSpec.of(Stats, id="stats"), ChildSpec(id="keep_billing", start=(KeepSingleton.start_link, (BILLING,)))],
        id="app_sup",
        strategy="one_for_one",
    )


def start_app(root_supervisor: Any) -> Any:
    """Add the application tree under this node's root supervisor."""
    return Supervisor.start_child(root_supervisor, app_spec())


# -- steps, each run in a process of some node ---------------------------------------------------


def describe_billing() -> tuple[Any, dict[str, Any]]:
    sup = paxtor.whereis(billing())
    return sup, {child_id: pid for child_id, pid, _ in Supervisor.which_children(sup)}


def charge(amount: int) -> tuple[str, int]:
    return self_pid().node, call(ledger(), ("charge", amount))


def crash_ledger() -> Any:
    old = ledger()
    ref = monitor(old)
    try:
        call(old, "crash")
    except CallError as exc:  # the crash comes back to the caller as CallError
        print(f"   call(ledger, 'crash') raised {type(exc).__name__}")
    receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=10)  # the old one is gone
    while True:  # billing_sup restarts it: wait for the new one
        pid = ledger()
        if pid != old:
            return old, pid
        gevent.sleep(0.01)


def wait_for_billing_other_than(old: Any, timeout: float = 30.0) -> Any:
    """The singleton's new pid, as started by the keepers (a bare key only looks, never starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = paxtor.whereis(BILLING)
        if pid is not None and pid != old:
            return pid
        gevent.sleep(0.05)
    raise TimeoutError("billing did not come back")


def main() -> int:
    configure_logging(level="error")
    with nodes_in_this_process(3) as nodes:
        by_name = {node.name: node for node in nodes}
        for node in nodes:
            node.run(start_app, node.root_supervisor)
        print("1. app_sup runs on every node:", ", ".join(node.name for node in nodes))
        sup, children = nodes[0].run(describe_billing)
        print(f"   the singleton billing_sup is {sup!r} on {sup.node}; its children: {children}")
        views = {node.run(paxtor.whereis, BILLING) for node in nodes}
        print(f"   paxtor.whereis('billing') on every node -> {views}")
        ok = views == {sup}

        print("2. charge 10 from every node:")
        for node in nodes:
            where, total = node.run(charge, 10)
            print(f"   from {where}: total {total}")
        ok = ok and total == 30

        print("3. crash the ledger: billing_sup restarts it, the singleton stays")
        old_ledger, new_ledger = nodes[1].run(crash_ledger)
        sup_after, _ = nodes[0].run(describe_billing)
        print(f"   ledger {old_ledger!r} -> {new_ledger!r}; billing_sup still {sup_after!r}")
        ok = ok and sup_after == sup and new_ledger != old_ledger

        host = sup.node
        survivor = next(node for node in nodes if node.name != host)
        print(f"4. stop {host}, which hosts billing")
        stopped = time.monotonic()
        by_name[host].stop()
        new_sup = survivor.run(wait_for_billing_other_than, sup)
        took = time.monotonic() - stopped
        _, children = survivor.run(describe_billing)
        print(
            f"   the keepers started billing again on {new_sup.node} in {took:.1f} s: {new_sup!r}, children {children}"
        )
        where, total = survivor.run(charge, 5)
        print(f"   charge 5 from {where}: total {total} (a new ledger: state is not replicated)")
        ok = ok and new_sup.node != host and total == 5
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    import supervised_app  # the nodes find this file's code as "supervised_app:...", not "__main__:..."

    sys.exit(supervised_app.main())
