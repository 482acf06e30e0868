"""Six client nodes as separate OS processes, each given one voter only.

The voters listen on addresses of their own (127.0.0.11..13: a client's
guess by number, 127.0.0.1 + base_port + N, finds nothing), and each client
(`python -m paxtor node web-i --client --seeds <one voter>`) learns every
other node from the mesh. Checked: every pair of clients connects; a lock
passes between any two of them; a singleton hosted on each client is reached
from every client, one process per key."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from paxtor_helpers import call_singleton, lock_and_park

from paxtor.actors import receive, self_pid, spawn
from paxtor.actors import send as send_to
from paxtor.placement import rendezvous_order
from paxtor.rounds import paxos_key
from paxtor.testing import LocalCluster, wait_for_nodes, wait_for_quorum, wait_until

pytestmark = pytest.mark.subprocess

HERE = Path(__file__).resolve().parent
VOTER_HOSTS = {1: "127.0.0.11", 2: "127.0.0.12", 3: "127.0.0.13"}
CLIENTS = [f"web-{i}" for i in range(6)]
FLAGS = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "2", "--reconnect-max", "0.5", "--lease", "1",
         "--lease-margin", "0.25"]  # fmt: skip
WAIT = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    hosts = ",".join(f"{n}={a}" for n, a in VOTER_HOSTS.items())
    with LocalCluster(3, workdir=tmp_path, pythonpath=[HERE], flags=FLAGS) as c:
        for number in (1, 2, 3):
            c.start(number, extra=["--hosts", hosts])
        for i, name in enumerate(CLIENTS):
            voter = i % 3 + 1
            c.start_client(name, "--seeds", f"{VOTER_HOSTS[voter]}:{c.base_port + voter}")
        yield c


def test_six_client_processes_given_one_voter_each_form_a_mesh_and_share_locks_and_singletons(cluster) -> None:
    for name in CLIENTS:
        others = set(CLIENTS) - {name}
        def meshed(others: set[str] = others, name: str = name) -> bool:
            cluster.check_running()
            return others <= cluster.processes[name].peers_up()

        wait_until(meshed, WAIT)
    tester = cluster.join("tester", singletons=False, seeds=[f"{VOTER_HOSTS[1]}:{cluster.base_port + 1}"],
                          hosts=VOTER_HOSTS, paxos=dict(lease=1.0, margin=0.25))  # fmt: skip
    wait_for_nodes(tester, [*cluster.voters, *CLIENTS], WAIT)
    wait_for_quorum([tester], WAIT)

    tokens = tester.run(_handoffs_between_every_pair)
    assert len(tokens) == len(list(itertools.combinations(CLIENTS, 2)))
    assert all(second == first + 1 for first, second in tokens.values())

    calls = tester.run(_every_client_calls_every_singleton)
    for key, answers in calls.items():
        assert sorted(answer for _, answer, _ in answers) == list(range(1, len(CLIENTS) + 1)), (key, answers)
        assert len({pid for _, _, pid in answers}) == 1, (key, answers)  # one process per key
    assert {next(iter(answers))[2].node for answers in calls.values()} == set(CLIENTS)  # hosted by the clients


def _handoffs_between_every_pair() -> dict[tuple[str, str], tuple[int, int]]:
    """For every pair of clients: a process on the first holds a lock, one on the second
    waits for it, the first unlocks; (first token, second token) per pair."""
    me = self_pid()
    tokens = {}
    for a, b in itertools.combinations(CLIENTS, 2):
        key = ("pair", a, b)
        spawn(lock_and_park, key, me, node=a)
        _, holder, first, where = receive(lambda m: isinstance(m, tuple) and m[0] == "locked", timeout=WAIT)
        assert where == a
        spawn(lock_and_park, key, me, node=b)
        send_to(holder, ("unlock",))
        _, second_holder, second, where = receive(
            lambda m, holder=holder: isinstance(m, tuple) and m[0] == "locked" and m[1] != holder, timeout=WAIT
        )
        assert where == b
        send_to(holder, ("exit", "normal"))
        send_to(second_holder, ("exit", "normal"))
        tokens[(a, b)] = (first, second)
    return tokens


def _every_client_calls_every_singleton() -> dict[str, list[tuple[str, int, object]]]:
    """One Counter homed on each client; every client calls each once."""
    hosts = [*("node1", "node2", "node3"), *CLIENTS]
    keys = {}
    for i in itertools.count():
        home = rendezvous_order(paxos_key(f"counter-{i}"), hosts)[0]
        if home in CLIENTS and home not in keys:
            keys[home] = f"counter-{i}"
        if len(keys) == len(CLIENTS):
            break
    me = self_pid()
    answers: dict[str, list[tuple[str, int, object]]] = {key: [] for key in keys.values()}
    for key in keys.values():
        for client in CLIENTS:
            spawn(call_singleton, key, "paxtor.demo:Counter", "inc", me, node=client)
            _, got_key, where, answer, pid = receive(lambda m: isinstance(m, tuple) and m[0] == "called", timeout=WAIT)
            answers[got_key].append((where, answer, pid))
    return answers
