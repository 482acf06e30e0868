"""Smoke tests for the etcd/ZooKeeper baselines of the benchmark suite.

The cluster tests are slow (they start 3 external servers each) and skip with
the reason when a server or its Python client cannot be installed here. The
harness tests are pure and fast.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.baselines import BASELINE_NAMES, run_baselines_in_subprocess
from benchmarks.baselines.cluster import ProcessSet, free_ports
from benchmarks.baselines.harness import BenchSettings, HolderCheck, jain_fairness, latency_stats


class Boom(Exception):
    """Raised inside a cluster block to check cleanup on exceptions."""


def _require(module: Any) -> None:
    ok, reason = module.available()
    if not ok:
        pytest.skip(f"{module.NAME} baseline unavailable: {reason}")


def _assert_cleaned_up(processes: ProcessSet) -> None:
    assert processes.processes, "the cluster started no process"
    assert all(p.popen.poll() is not None for p in processes.processes), "a server outlived its cluster"
    assert not processes.root.exists(), f"{processes.root} was not removed"


@pytest.mark.slow
def test_etcd_cluster_put_and_lock_then_cleanup_on_exception() -> None:
    from benchmarks.baselines import etcd

    _require(etcd)
    with pytest.raises(Boom):
        with etcd.etcd_cluster() as cluster:
            seen = cluster.processes
            assert len(cluster.members) == 3
            writer = etcd.EtcdSession(*cluster.endpoint(0), timeout=5.0)
            reader = etcd.EtcdSession(*cluster.endpoint(1), timeout=1.0)
            try:
                writer.put(b"/smoke/k", b"v1")
                assert reader.client.get("/smoke/k")[0] == b"v1"  # linearizable read, other member
                holder = etcd.EtcdMutex(writer, "/smoke/lock")
                waiter = etcd.EtcdMutex(reader, "/smoke/lock")
                holder.lock()
                with pytest.raises(TimeoutError):
                    waiter.lock()  # held elsewhere: the waiter must not get it
                holder.unlock()
                waiter.lock()
                waiter.unlock()
            finally:
                writer.close()
                reader.close()
            raise Boom
    _assert_cleaned_up(seen)


@pytest.mark.slow
def test_zookeeper_cluster_create_and_lock_then_cleanup_on_exception() -> None:
    from benchmarks.baselines import zookeeper

    _require(zookeeper)
    from kazoo.client import KazooClient
    from kazoo.exceptions import LockTimeout

    with pytest.raises(Boom):
        with zookeeper.zookeeper_cluster() as cluster:
            seen = cluster.processes
            assert len(cluster.members) == 3
            clients = [KazooClient(hosts="{}:{}".format(*cluster.endpoint(i)), timeout=10.0) for i in (0, 1)]
            try:
                for client in clients:
                    client.start(timeout=10.0)
                clients[0].create("/smoke", b"v1")
                clients[1].sync("/smoke")
                assert clients[1].get("/smoke")[0] == b"v1"
                holder = clients[0].Lock("/smoke-lock", "a")
                waiter = clients[1].Lock("/smoke-lock", "b")
                assert holder.acquire(timeout=5.0)
                with pytest.raises(LockTimeout):
                    waiter.acquire(timeout=1.0)  # held elsewhere: the waiter must not get it
                holder.release()
                assert waiter.acquire(timeout=5.0)
                waiter.release()
            finally:
                for client in clients:
                    client.stop()
                    client.close()
            raise Boom
    _assert_cleaned_up(seen)


@pytest.mark.slow
def test_subprocess_runner_returns_headline_numbers() -> None:
    from benchmarks.baselines import etcd

    _require(etcd)
    tiny = BenchSettings(
        clients=2, seconds=0.3, latency_ops=5, latency_seconds=1.0, warmup_ops=1, warmup_seconds=0.1
    )
    results = run_baselines_in_subprocess(("etcd",), tiny)
    result = results["etcd"]
    assert "error" not in result, result.get("error")
    assert result["problems"] == []
    assert result["headline"]["put_median_ms"] > 0
    assert result["headline"]["puts_per_s"] > 0
    assert result["contended"]["mutual_exclusion_violations"] == 0
    assert sum(result["contended"]["per_client_acquisitions"]) == result["contended"]["acquisitions"]


def test_baseline_names_are_the_two_systems() -> None:
    assert BASELINE_NAMES == ("etcd", "zookeeper")


def test_latency_stats_median_and_p99() -> None:
    stats = latency_stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert stats["n"] == 100
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(99.0)
    assert latency_stats([])["median_ms"] is None


def test_jain_fairness_bounds() -> None:
    assert jain_fairness([5, 5, 5, 5]) == pytest.approx(1.0)
    assert jain_fairness([8, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_fairness([0, 0]) is None


def test_holder_check_counts_handoffs_and_violations() -> None:
    check = HolderCheck()
    for client in (0, 0, 1, 2, 2):
        check.acquired(client)
        check.releasing(client)
    assert check.violations == 0
    assert check.handoffs(0.0, float("inf")) == 2
    check.acquired(0)
    check.acquired(1)  # second holder while the first still holds
    assert check.violations == 1


def test_free_ports_are_distinct() -> None:
    ports = free_ports(9)
    assert len(set(ports)) == 9
