"""The gunicorn recipe (`examples/gunicorn_app`) as an operator runs it: two
gunicorn masters with two gevent workers each, every worker a Paxtor client
node that is given one voter only, against three voters as OS processes.

Under a bounded load of locked increments (12 clients, one request at a time
each, 4.5 s) one worker, holding a lock, is killed with SIGKILL.
Checked: no increment lost (the counters hold every acknowledged one), fencing
tokens strictly increasing per key with the values, no request past its
timeout, the killed worker's lock free within the lease bound, both masters
still up; and a worker whose node cannot start keeps its master up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

pytest.importorskip("gunicorn")

from paxtor.testing import LocalCluster, NodeProcess, wait_until  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "gunicorn_app"
LEASE, MARGIN = 1.0, 0.25
VOTER_FLAGS = ["--lease", str(LEASE), "--lease-margin", str(MARGIN), "--heartbeat-interval", "0.2",
               "--heartbeat-timeout", "1.5", "--reconnect-max", "0.5"]  # fmt: skip
#: lease * (1 + max_drift)**2 + margin (the voters' silence threshold), plus noticing the loss, plus a round or two
LOCK_FREE_BOUND = LEASE * 1.05**2 + MARGIN + 1.5 + 1.0
LOCK_TIMEOUT = 5.0
#: A request may take its lock timeout plus this much (the increment itself, a slow machine).
SLACK = 3.0
KEYS = ["apples", "pears", "plums", "figs"]
#: The load: this many clients, each sending one request at a time, for this long.
CLIENTS, LOAD_SECONDS = 12, 4.5


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = LOCK_TIMEOUT + 10) -> tuple[int, dict[str, Any], float]:
    """(HTTP status or 0 for a broken connection, JSON body, seconds taken) — in a worker thread."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), time.monotonic() - started
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return 0, {"error": repr(exc)}, time.monotonic() - started


def hammer(url: str, key: str, seconds: float) -> list[tuple[int, dict[str, Any], float]]:
    """Locked increments of `key` through `url`, one at a time, for `seconds` (in a worker thread)."""
    answers = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        answers.append(get(f"{url}/incr?key={key}&timeout={LOCK_TIMEOUT}"))
    return answers


def in_thread(url: str, **kw: Any) -> Any:
    return gevent.get_hub().threadpool.spawn(get, url, **kw)


@pytest.fixture
def voters(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(3, workdir=tmp_path, flags=VOTER_FLAGS) as cluster:
        cluster.start_all()
        for proc in cluster.processes.values():
            proc.wait_started(30)
        yield cluster


class Master:
    """One `gunicorn -c examples/gunicorn_app/gunicorn.conf.py app:app` with its own port."""

    def __init__(self, cluster: LocalCluster, name: str, store: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = dict(
            cluster.env, WEB_BIND=f"127.0.0.1:{self.port}", WEB_WORKERS="2", PAXTOR_APP_STORE=str(store),
            PAXTOR_SEEDS=f"127.0.0.1:{cluster.base_port + 1}", PAXTOR_BASE_PORT=str(cluster.base_port),
            PAXTOR_CLUSTER_SIZE="3", PAXTOR_LEASE=str(LEASE), PAXTOR_LEASE_MARGIN=str(MARGIN),
        )  # fmt: skip
        environment.update(env)
        argv = [sys.executable, "-m", "gunicorn", "-c", str(APP / "gunicorn.conf.py"), "app:app"]
        self.proc = NodeProcess(name, argv, environment, cluster.workdir / f"{name}.log")

    def healthy_workers(self, wanted: int = 2, timeout: float = 40) -> set[int]:
        """Ask /health until `wanted` distinct workers answered 200."""
        seen: set[int] = set()

        def enough() -> bool:
            assert self.proc.alive(), self.proc.tail(20)
            status, body, _ = in_thread(f"{self.url}/health", timeout=2).get()
            if status == 200:
                seen.add(body["pid"])
            return len(seen) >= wanted

        wait_until(enough, timeout, step=0.05)
        return seen


def test_two_gunicorn_masters_survive_a_killed_worker_without_losing_increments(voters, tmp_path: Path) -> None:
    hub = gevent.get_hub()
    hub.threadpool.maxsize = 24
    store = tmp_path / "counters"
    store.mkdir()
    masters = [Master(voters, f"gunicorn{i}", store) for i in (1, 2)]
    try:
        for master in masters:
            master.healthy_workers()

        # one worker of the first master holds a lock, then dies with it
        status, held, _ = in_thread(f"{masters[0].url}/hold?key=victim&seconds=60").get()
        assert status == 200, held
        clients = [gevent.get_hub().threadpool.spawn(hammer, masters[i % 2].url, KEYS[i % len(KEYS)], LOAD_SECONDS)
                   for i in range(CLIENTS)]  # fmt: skip
        gevent.sleep(LOAD_SECONDS / 3)
        os.kill(held["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        status, freed, _ = in_thread(f"{masters[1].url}/incr?key=victim&timeout=20").get()
        freed_after = time.monotonic() - killed_at
        assert status == 200 and freed["token"] > held["token"], freed
        assert freed_after < LOCK_FREE_BOUND, f"the killed worker's lock was free after {freed_after:.1f} s"
        answers = [answer for client in clients for answer in client.get()]

        late = [(s, b, t) for s, b, t in answers if t > LOCK_TIMEOUT + SLACK]
        assert not late, f"requests past their timeout: {late[:3]}"
        ok = [b for s, b, _ in answers if s == 200]
        broken = [b for s, b, _ in answers if s == 0]  # in flight on the killed worker
        assert len(ok) >= len(answers) * 0.8, (
            f"{len(ok)} ok of {len(answers)}: {[b for s, b, _ in answers if s != 200][:5]}"
        )
        assert len(broken) <= 2 * CLIENTS  # at most the requests in flight on the killed worker (and retried connects)
        assert all(s in (200, 503, 0) for s, _, _ in answers), {s for s, _, _ in answers}
        for key in KEYS:
            mine = sorted((b["token"], b["value"]) for b in ok if b["key"] == key)
            tokens = [t for t, _ in mine]
            values = [v for _, v in mine]
            assert tokens == sorted(set(tokens)), f"{key}: a token handed out twice"
            assert values == sorted(set(values)), f"{key}: values not increasing with the tokens: {mine}"
            final = json.loads((store / f"{key}.json").read_text())["value"]
            assert len(mine) <= final <= len(mine) + len(broken), f"{key}: counter {final}, acknowledged {len(mine)}"
            assert final == values[-1] or len(broken) > 0
        assert len({b["pid"] for b in ok}) >= 3  # the load reached the workers of both masters
        for master in masters:
            assert master.proc.alive(), master.proc.tail(20)
            master.healthy_workers()  # gunicorn replaced the killed worker; its node joined
    finally:
        for master in masters:
            master.proc.stop(grace=15)
    for master in masters:
        assert master.proc.proc.returncode == 0, master.proc.tail(20)


def test_a_worker_whose_node_cannot_start_keeps_its_master_up(voters, tmp_path: Path) -> None:
    master = Master(voters, "broken", tmp_path, PAXTOR_CLUSTER_SIZE="0")  # start_node refuses it
    try:
        def refused() -> Any:
            assert master.proc.alive(), master.proc.tail(20)
            status, body, _ = in_thread(f"{master.url}/health", timeout=2).get()
            return body if status == 503 else None

        body = wait_until(refused, 30, step=0.1)
        assert "cluster_size" in body["error"]
        failures = lambda: master.proc.log_path.read_text().count("paxtor_node_start_failed")  # noqa: E731
        wait_until(lambda: failures() >= 4, 30, step=0.1)  # both workers retried, and failed again
        assert master.proc.alive()
        status, body, _ = in_thread(f"{master.url}/incr?key=x", timeout=2).get()
        assert status == 503 and "paxtor node not running" in body["error"]
    finally:
        master.proc.stop(grace=15)
