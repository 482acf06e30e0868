"""A small supervised tree on one node: crash a server, watch it come back.

    .venv/bin/python examples/supervised_tree.py

The tree::

    root (one_for_one)
    ├── counter          a GenServer that keeps a count
    └── shop (rest_for_one)
        ├── inventory    a GenServer holding stock
        └── cashier      a GenServer that sells from the inventory

The cashier is made to crash: its supervisor restarts it with a new pid,
while the inventory and the counter keep running with their state intact.
Then the inventory crashes: rest_for_one restarts it and, after it, the
cashier (which depends on it), but not the counter.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from paxtor.actors import CallError, ChildSpec, Down, GenServer, Supervisor, call, monitor, receive, whereis


class Counter(GenServer):
    def init(self) -> None:
        self.count = 0

    def handle_call(self, request: Any, caller: Any) -> int:
        self.count += 1
        return self.count

    @classmethod
    def start_link(cls) -> Any:  # type: ignore[override]
        return super().start_link(name="counter")


class Inventory(GenServer):
    def init(self, stock: int) -> None:
        self.stock = stock

    def handle_call(self, request: Any, caller: Any) -> int:
        if request == "crash":
            raise RuntimeError("inventory corrupted")
        if request == "take" and self.stock > 0:
            self.stock -= 1
        return self.stock

    @classmethod
    def start_link(cls, stock: int) -> Any:  # type: ignore[override]
        return super().start_link(stock, name="inventory")


class Cashier(GenServer):
    def init(self) -> None:
        self.sold = 0

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "crash":
            raise RuntimeError("cashier dropped the till")
        left = call("inventory", "take")
        self.sold += 1
        return {"sold": self.sold, "left": left}

    @classmethod
    def start_link(cls) -> Any:  # type: ignore[override]
        return super().start_link(name="cashier")


def crash(name: str) -> None:
    """Crash a registered server and wait until it is down."""
    ref = monitor(name)
    try:
        call(name, "crash")
    except CallError as err:  # the crash comes back to the caller
        print(f"   call({name!r}, 'crash') raised {type(err).__name__}")
    receive(match=lambda m: isinstance(m, Down) and m.ref == ref, timeout=5)


def show(root: Any) -> dict[str, Any]:
    shop = {c[0]: c[1] for c in Supervisor.which_children(root)}["shop"]
    pids = {"counter": whereis("counter"), "shop": shop}
    pids.update((c[0], c[1]) for c in Supervisor.which_children(shop))
    for name, pid in pids.items():
        print(f"   {name:<10} {pid}")
    return pids


def compare(before: dict[str, Any], after: dict[str, Any]) -> None:
    for name in before:
        verdict = "restarted" if before[name] != after[name] else "kept running"
        print(f"   {name:<10} {verdict}")


def without_traceback(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Keep the demo's log short: the crash reason is enough here."""
    event.pop("exc_info", None)
    return event


def main() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            without_traceback,
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )
    shop = Supervisor.child_spec(
        [ChildSpec.of((Inventory, 100), id="inventory"), ChildSpec.of(Cashier, id="cashier")],
        id="shop",
        strategy="rest_for_one",
    )
    root = Supervisor.start_link([ChildSpec.of(Counter, id="counter"), shop])
    print("1. the tree is up:")
    before = show(root)
    call("counter", "tick")
    call("counter", "tick")
    print("   cashier:", call("cashier", "sell"), " counter:", call("counter", "tick"))

    print("2. crash the cashier:")
    crash("cashier")
    after = show(root)
    compare(before, after)
    assert after["cashier"] != before["cashier"] and after["inventory"] == before["inventory"]
    print("   cashier:", call("cashier", "sell"), " counter:", call("counter", "tick"))

    print("3. crash the inventory (rest_for_one restarts it and the cashier):")
    crash("inventory")
    final = show(root)
    compare(after, final)
    assert final["counter"] == before["counter"] and final["cashier"] != after["cashier"]
    print("   cashier:", call("cashier", "sell"), " counter:", call("counter", "tick"))

    Supervisor.stop(root)
    print("4. stopped the tree: children stopped in reverse order.")


if __name__ == "__main__":
    main()
