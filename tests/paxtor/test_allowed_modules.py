"""`allowed_modules`: what peers may name on a node: singleton starts here (remote
spawns between node processes: tests/dist/test_allowed_modules.py).

node2 allows only this test's helpers module; node1 and node3 allow anything. A
refusal is an error at the caller, logged on node2, and starts nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paxtor_cluster import WAIT
from structlog.testing import capture_logs

import paxtor
from paxtor.actors import call
from paxtor.actors.distribution import stop_all_distributed
from paxtor.actors.function_ref import (
    FunctionRefRefused,
    allowed_modules,
    resolve_function_ref,
)
from paxtor.placement import rendezvous_order
from paxtor.rounds import paxos_key
from paxtor.singletons.api import SingletonStartError
from paxtor.testing import Cluster

ALLOWED = ["paxtor_helpers"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(3, data_dir=tmp_path / "data")
    try:
        c.start(1)
        c.start(3)
        c.configure(distribution={"allowed_modules": ALLOWED})
        c.start(2)
        c.wait_ready(WAIT)
        yield c
    finally:
        c.stop_all()
        stop_all_distributed()


def key_at_home(node: str, names: list[str]) -> str:
    """A singleton key whose home (rendezvous hashing) is `node`."""
    for i in range(1000):
        key = f"key-{i}"
        if rendezvous_order(paxos_key(key), names)[0] == node:
            return key
    raise AssertionError(f"no key homed on {node}")


def test_a_singleton_start_outside_the_allow_list_is_refused_before_any_claim(cluster: Cluster) -> None:
    names = ["node1", "node2", "node3"]
    key = key_at_home("node2", names)

    def use(spec: Any) -> Any:
        return call(paxtor.name(key, spec), "where")

    with capture_logs() as logs:
        with pytest.raises(SingletonStartError, match="allowed_modules"):
            cluster["node1"].run(use, "paxtor.demo:Counter")
    refused = [e for e in logs if e["event"] == "singleton_start_refused"]
    assert [(e["node"], e["start"]) for e in refused] == [("node2", "paxtor.demo:Counter")]
    assert cluster["node3"].run(paxtor.whereis, key) is None  # nothing claimed, nothing runs
    assert cluster["node1"].run(use, "paxtor_helpers:Counter") == "node2"  # allowed: it starts there


def test_references_cannot_leave_the_allowed_modules_through_attributes() -> None:
    allowed = allowed_modules(["paxtor.demo", "myapp.*"])
    assert allowed == ("paxtor.demo", "myapp")
    assert resolve_function_ref("paxtor.demo:Counter", allowed) is not None
    for ref in (
        "os:system",
        "paxtor.demorogue:x",  # a prefix of a name is not its package
        "paxtor.demo:gevent.sleep",  # a module the allowed one imported
        "paxtor.demo:Counter.__init__",  # dunders lead anywhere
        "paxtor.demo:Counter.__class__",
    ):
        with pytest.raises(FunctionRefRefused):
            resolve_function_ref(ref, allowed)
    for bad in ("", "my app", "1x", ".x"):
        with pytest.raises(ValueError, match="allowed_modules"):
            allowed_modules([bad])
