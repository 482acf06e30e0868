"""The web view and /metrics of a node: over HTTP, and in headless Chromium."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import gevent
import pytest
from prometheus_client.parser import text_string_to_metric_families

import paxtor
from paxtor import paxos
from paxtor.actors import Pid, call, receive, self_pid, send, spawn
from paxtor.observe import web
from paxtor.observe.web import parse_address
from paxtor.paxos.config import PaxosConfig
from paxtor.testing import Cluster, wait_node_down, wait_until

from . import browser


def _get(url: str) -> tuple[int, str, bytes]:
    """GET `url` from a thread: the server runs on this OS process's hub."""
    return gevent.get_hub().threadpool.apply(_blocking_get, (url,))


def _blocking_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _start_with_web(cluster: Cluster) -> paxtor.Node:
    # the deployed lease, not the tests' short one: a held lock must stay held while the
    # page is read (a node starved past a 0.5 s lease kills its owners, by design)
    cluster.configure(distribution={"http": "127.0.0.1:0"}, lease=PaxosConfig.lease)
    node1 = cluster.start(1)
    del cluster.distribution["http"]
    cluster.start(2)
    cluster.start(3)
    cluster.wait_ready()
    return node1


def _hold(key: str) -> None:
    paxtor.lock(key)
    receive()


def _churn(key: str, rounds: int) -> None:
    for _ in range(rounds):
        with paxtor.locked(key):
            pass


def _samples(text: str) -> dict[str, float]:
    return {
        sample.name + (json.dumps(sample.labels, sort_keys=True) if sample.labels else ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_addresses_default_to_loopback() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("127.0.0.5:81") == ("127.0.0.5", 81)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost")


def test_a_busy_http_port_is_a_clear_error_and_no_node_is_left(cluster: Cluster) -> None:
    node1 = _start_with_web(cluster)
    port = node1.web.address[1]
    with pytest.raises(ValueError, match=f"cannot serve the web view on 127.0.0.1:{port}"):
        paxtor.start_node(
            4, cluster_size=3, base_port=cluster.base, cookie=cluster.cookie, voter=False, durability="memory",
            http=f"127.0.0.1:{port}",
        )  # fmt: skip
    assert paxtor.actors.distribution.distributed_node("node4") is None


def test_metrics_parse_as_prometheus_text_and_count_what_happened(cluster: Cluster) -> None:
    node1 = _start_with_web(cluster)
    base = node1.web.url
    node1.run(_churn, "m", 5)
    spawn(_hold, "held", node="node1")
    wait_until(lambda: node1.run(lambda: paxtor.try_lock("held")) is None)
    status, content_type, body = _get(base + "metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    samples = _samples(body.decode())
    assert samples["paxtor_paxos_rounds_total"] >= 10  # 5 locks and 5 unlocks, each a round
    assert samples["paxtor_paxos_chosen_total"] >= 10
    assert samples["paxtor_locks_acquired_total"] >= 6
    assert samples["paxtor_locks_held"] == 1
    assert samples["paxtor_lease_valid"] == 1 and samples["paxtor_quorum_reachable"] == 1
    assert samples["paxtor_connections"] == 2
    assert samples['paxtor_peer_up{"peer": "node2"}'] == 1
    info = f'paxtor_node_info{{"incarnation": "{node1.dist.incarnation}", "node": "node1", "role": "voter"}}'
    assert samples[info] == 1
    assert "paxtor_acceptor_fsync_seconds_bucket" not in body.decode()  # memory durability: no fsync
    cluster.stop("node3")
    wait_node_down(node1, "node3")
    samples = _samples(_get(base + "metrics")[2].decode())
    assert samples['paxtor_peer_up{"peer": "node3"}'] == 0 and samples["paxtor_connections"] == 1
    assert _get(base + "nope")[0] == 404


def test_fsync_latency_is_a_histogram(tmp_path: Path) -> None:
    with Cluster(3, durability="fsync", data_dir=tmp_path) as cluster:
        node1 = _start_with_web(cluster)
        node1.run(_churn, "d", 5)
        families = {f.name: f for f in text_string_to_metric_families(_get(node1.web.url + "metrics")[2].decode())}
        histogram = families["paxtor_acceptor_fsync_seconds"]
        assert histogram.type == "histogram"
        counts = {s.labels.get("le"): s.value for s in histogram.samples if s.name.endswith("_bucket")}
        count = [s.value for s in histogram.samples if s.name.endswith("_count")][0]
        assert count >= 5 and counts["+Inf"] == count
        assert list(counts.values()) == sorted(counts.values())  # cumulative


def test_the_api_shows_a_down_node_and_a_stuck_lock(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "STUCK_AFTER", 0.3)
    monkeypatch.setattr(web, "REFRESH", 0.2)
    monkeypatch.setattr(web, "SAMPLE_INTERVAL", 0.2)
    node1 = _start_with_web(cluster)
    api = node1.web.url + "api/cluster"
    holder = spawn(_hold, "stuck", node="node2")
    waiter = spawn(_hold, "stuck", node="node1")
    node1.run(_churn, "busy", 20)
    cluster.stop("node3")

    def shows() -> dict | None:
        data = json.loads(_get(api)[2])
        cluster_data = data["cluster"]
        if not cluster_data or not data["rates"]:
            return None
        locks = {lock["key"]: lock for lock in cluster_data["locks"]}
        down = [n["name"] for n in cluster_data["nodes"] if not n["up"]]
        if down == ["node3"] and locks.get("stuck", {}).get("stuck"):
            return data
        return None

    data = wait_until(shows)
    lock = [lock for lock in data["cluster"]["locks"] if lock["key"] == "stuck"][0]
    assert (lock["holder"], lock["waiters"]) == (repr(holder), [repr(waiter)])
    assert data["cluster"]["locks"][0]["key"] == "stuck"  # stuck ones first
    assert max(rate[1] for rate in data["rates"]) > 0  # Paxos rounds per second were plotted


def test_the_page_in_headless_chromium(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    why = browser.missing()
    if why:
        pytest.skip(why)
    monkeypatch.setattr(web, "STUCK_AFTER", 0.5)
    monkeypatch.setattr(web, "REFRESH", 0.5)
    monkeypatch.setattr(web, "SAMPLE_INTERVAL", 0.25)
    node1 = _start_with_web(cluster)
    spawn(_hold, "order:42", node="node2")
    spawn(_hold, "order:42", node="node1")
    node1.run(paxtor.actors.call, paxtor.name("apple", "paxtor.demo:Counter"), "inc")
    for _ in range(4):
        node1.run(_churn, "busy", 15)
    cluster.stop("node3")
    page = browser.Browser()
    try:
        page.get(node1.web.url)
        banner = page.wait_for(
            "const b = document.getElementById('banner').textContent;"
            "return b.includes('DOWN: node3') && b.includes('stuck lock') ? b : null;"
        )
        assert "quorum: 2/3 voters up" in banner
        down_rows = page.script(
            "return [...document.querySelectorAll('#nodes tr.down td:first-child')].map(td => td.textContent);"
        )
        assert down_rows == ["node3"]
        stuck = page.script(
            "return [...document.querySelectorAll('#locks tr.stuck td:first-child')].map(td => td.textContent);"
        )
        assert stuck == ["order:42"]
        singletons = page.script(
            "return [...document.querySelectorAll('#singletons td:first-child')].map(td => td.textContent);"
        )
        assert singletons == ["apple"]
        assert "handoffs/s" in page.wait_for("return document.getElementById('ratenow').textContent;")
        shot = page.screenshot(tmp_path / "web-view.png")
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
    finally:
        page.close()


def _relay(parent: Pid, key: str) -> None:
    """Take `key`'s lock when told ("take"), say so, give it up when told ("give"); again and again."""
    while True:
        receive(lambda m: m == "take")
        send(parent, ("holding", self_pid(), paxtor.lock(key)))
        receive(lambda m: m == "give")
        paxtor.unlock(key)


def _holding(pid: Pid) -> int:
    return receive(lambda m: isinstance(m, tuple) and m[:2] == ("holding", pid), timeout=10)[2]


def _waiters(node: paxtor.Node, key: str) -> tuple[Pid, ...]:
    locks = node.run(lambda: paxtor.cluster_info(singletons=False)).locks
    return next((lock.waiters for lock in locks if lock.key == key), ())


def _scrape(nodes: list[paxtor.Node]) -> dict[str, tuple[dict[str, float], str]]:
    """Each node's /metrics: its samples, and the text itself."""
    scraped = {}
    for node in nodes:
        text = _get(node.web.url + "metrics")[2].decode()
        scraped[node.name] = (_samples(text), text)
    return scraped


def _counter(text: str, name: str) -> int:
    """A counter's value, which must be written as an integer."""
    (value,) = re.findall(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert value.isdigit(), f"{name} {value}"
    return int(value)


def test_metrics_and_the_plot_count_handoffs_singletons_nacks_and_retries(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A known workload: `handoffs` handoffs of one lock between a process on node1 and one on
    node4 (each queued behind the other before it lets go), one singleton, and puts on one
    key from node4 and node1 in turn. Every node serves /metrics; node1's plot shows handoffs."""
    handoffs = 10
    monkeypatch.setattr(web, "SAMPLE_INTERVAL", 0.2)
    cluster.configure(distribution={"http": "127.0.0.1:0"}, lease=PaxosConfig.lease)  # see _start_with_web
    cluster.start_all()
    node4 = cluster.start(4, voter=False)
    cluster.wait_ready()
    nodes = list(cluster.nodes.values())
    node1 = cluster["node1"]
    api = node1.web.url + "api/cluster"
    sampled = len(json.loads(_get(api)[2])["rates"])
    wait_until(lambda: len(json.loads(_get(api)[2])["rates"]) >= sampled + 2)  # node4 in two samples: a base
    before = _scrape(nodes)

    me = self_pid()
    a, b = spawn(_relay, me, "baton", node="node1"), spawn(_relay, me, "baton", node="node4")
    send(a, "take")
    tokens = [_holding(a)]
    holder, other = a, b
    for _ in range(handoffs):
        send(other, "take")
        wait_until(lambda other=other: _waiters(node1, "baton") == (other,))  # queued: a handoff, not a new lock
        send(holder, "give")
        tokens.append(_holding(other))
        holder, other = other, holder
    assert tokens == list(range(tokens[0], tokens[0] + handoffs + 1))  # each handoff: the next fencing token
    node1.run(call, paxtor.name("apple", "paxtor.demo:Counter"), "inc")
    after = _scrape(nodes)
    # contention the lock home does not absorb: puts on one key from node4 and node1 in turn.
    # node4 is a client (no acceptor of its own to tell it better): the one-round-trip ballot
    # it keeps from its last put is below the one node1 won since, so the voters refuse it
    for i in range(5):
        node4.run(paxos.put, "duel", i)
        node1.run(paxos.put, "duel", -i)
    dueled = _scrape(nodes)

    def grew(name: str, counter: str, since: dict = before, until: dict = after) -> int:
        return _counter(until[name][1], counter) - _counter(since[name][1], counter)

    assert grew("node1", "paxtor_lock_handoffs_total") >= handoffs // 2  # b handed to a, node1
    assert grew("node4", "paxtor_lock_handoffs_total") >= handoffs // 2  # a handed to b, node4
    assert sum(grew(n.name, "paxtor_lock_handoffs_total") for n in nodes) >= handoffs
    assert sum(grew(n.name, "paxtor_locks_acquired_total") for n in nodes) >= handoffs + 1
    assert sum(samples["paxtor_singletons"] for samples, _ in after.values()) == 1
    for counter in ("nacks", "retries", "conflicts"):  # 10, 5 and 5 on node1 and on node4 when measured
        assert sum(grew(n.name, f"paxtor_paxos_{counter}_total", after, dueled) for n in nodes) >= 1, counter
    for name, (_, text) in dueled.items():
        for counter in ("rounds", "chosen", "nacks", "retries", "conflicts", "no_quorum", "vetoed"):
            assert _counter(text, f"paxtor_paxos_{counter}_total") >= 0, name

    # the plot's handoff line: (wall time, rounds/s, handoffs/s) per sample, summed over the nodes
    rates = wait_until(lambda: [r for r in json.loads(_get(api)[2])["rates"] if r[2] > 0])
    assert all(r[1] > 0 for r in rates)  # a handoff takes rounds
