"""The request-handler example of the Paxtor README, as a gevent WSGI app on two nodes.

    .venv/bin/python examples/wsgi_increment.py

``GET /increment?key=K`` locks K in the request's own greenlet (the runtime
adopts it as a process: no server process serialises the requests), reads
the counter file of K, writes it back plus one, and answers JSON
``{"key", "old_value", "new_value", "token", "node"}``.

The command above starts three voters on this host: node1 and node2 are app
nodes (this file, ``serve`` mode: a Paxtor node plus a WSGI server), node3 is
a plain ``python -m paxtor node 3 --no-shell``. Then it sends concurrent
increments to both app nodes and checks that none was lost: N increments of
a key leave its counter at exactly N, and every value 1..N was handed out
once. The same traffic on ``/increment_unlocked`` (no lock) loses updates.

The counter files live in one directory both app nodes share: the
"resource" the lock protects. Each file also keeps the fencing token of its
last write, and a write with an older token is refused (409): a holder that
was paused past its lease cannot overwrite a newer holder's work.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# -- the app (runs on node1 and node2) ------------------------------------------------------------


class StaleWrite(Exception):
    """The counter file was written with a newer fencing token than ours."""


def read_counter(directory: Path, key: str) -> tuple[int, int]:
    """(value, token of the last write); (0, 0) for a new key."""
    try:
        data = json.loads((directory / f"{key}.json").read_text())
    except FileNotFoundError:
        return 0, 0
    return data["value"], data["token"]


def write_counter(directory: Path, key: str, value: int, token: int) -> None:
    """Write (temp file + rename), refusing a token older than the last write's.

    The check and the write happen under a host-local file lock, so they are
    one step for the store, as a conditional write would be in a database.
    """
    with open(directory / f".{key}.guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        _, last_token = read_counter(directory, key)
        if token < last_token:
            raise StaleWrite(f"token {token} < {last_token}")
        tmp = directory / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"value": value, "token": token}))
        os.replace(tmp, directory / f"{key}.json")


def make_app(directory: Path, node_name: str):
    import gevent

    import paxtor

    def increment(key: str, use_lock: bool) -> dict[str, Any]:
        if use_lock:
            with paxtor.locked(("counter", key)) as token:  # released when the block ends
                old, _ = read_counter(directory, key)
                gevent.sleep(0.002)  # a slow store: makes the race without the lock visible
                write_counter(directory, key, old + 1, token)
        else:
            token = 0
            old, _ = read_counter(directory, key)
            gevent.sleep(0.002)
            write_counter(directory, key, old + 1, 0)
        return {"key": key, "old_value": old, "new_value": old + 1, "token": token, "node": node_name}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/health":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        key = (query.get("key") or [""])[0]
        if path not in ("/increment", "/increment_unlocked") or not key.isidentifier():
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"GET /increment?key=NAME (NAME: letters, digits, _)\n"]
        try:
            body, status = increment(key, use_lock=path == "/increment"), "200 OK"
        except StaleWrite as exc:
            body, status = {"key": key, "error": f"stale fencing token: {exc}"}, "409 Conflict"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app


def serve(args: argparse.Namespace) -> int:
    """One app node: a Paxtor voter plus a WSGI server, until SIGTERM/SIGINT."""
    import gevent
    from gevent.pywsgi import WSGIServer

    import paxtor
    from paxtor.cli import configure_logging

    configure_logging(level="error")
    node = paxtor.start_node(args.node, base_port=args.base_port, data_dir=args.data_dir)
    try:
        paxtor.wait_for_quorum(timeout=30)
        server = WSGIServer(("127.0.0.1", args.http_port), make_app(Path(args.counters), node.name), log=None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, server.stop)
        server.serve_forever()
    finally:
        node.stop()
    return 0


# -- the driver: start the cluster, hammer both app nodes, check -----------------------------------


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def wait_healthy(urls: list[str], cluster: Any, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            cluster.check_running()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not come up in {timeout:.0f} s")
            time.sleep(0.1)


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hammer(urls: list[str], path: str, keys: list[str], per_key: int, concurrency: int) -> list[dict[str, Any]]:
    """`per_key` GETs of `path` per key, alternating between the app nodes, `concurrency` at a time."""
    requests = [f"{urls[i % len(urls)]}{path}?key={key}" for i in range(per_key) for key in keys]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(get, requests))


def drive(requests_per_key: int = 60, concurrency: int = 16) -> int:
    from paxtor.cli import configure_logging
    from paxtor.local_cluster import LocalCluster

    configure_logging(level="error")
    with LocalCluster(3, pythonpath=[HERE], prefix="paxtor-wsgi-") as cluster:
        counters = cluster.workdir / "counters"
        counters.mkdir()
        http = {n: free_tcp_port() for n in (1, 2)}
        for n in (1, 2):
            cluster.start(n, [sys.executable, str(HERE / "wsgi_increment.py"), "serve", str(n),
                              "--base-port", str(cluster.base_port), "--http-port", str(http[n]),
                              "--data-dir", str(cluster.workdir / "data"), "--counters", str(counters)])  # fmt: skip
        cluster.start(3)
        urls = [f"http://127.0.0.1:{http[n]}" for n in (1, 2)]
        wait_healthy(urls, cluster)
        print(f"app nodes up: node1 at {urls[0]}, node2 at {urls[1]}; node3 votes")

        keys = ["apples", "pears"]
        started = time.monotonic()
        answers = hammer(urls, "/increment", keys, requests_per_key, concurrency)
        took = time.monotonic() - started
        ok = True
        for key in keys:
            value, token = read_counter(counters, key)
            mine = [a for a in answers if a["key"] == key]
            handed_out = sorted(a["new_value"] for a in mine)
            by_node = {n: sum(1 for a in mine if a["node"] == n) for n in ("node1", "node2")}
            exact = value == requests_per_key and handed_out == list(range(1, requests_per_key + 1))
            ok = ok and exact
            print(f"with the lock:    {requests_per_key} increments of {key!r} "
                  f"({by_node['node1']} via node1, {by_node['node2']} via node2) -> counter {value}, "
                  f"last token {token}: {'no lost increments' if exact else 'LOST INCREMENTS'}")  # fmt: skip
        print(f"                  {len(answers)} requests in {took:.1f} s, {concurrency} at a time")

        answers = hammer(urls, "/increment_unlocked", ["plums"], requests_per_key, concurrency)
        value, _ = read_counter(counters, "plums")
        print(f"without the lock: {requests_per_key} increments of 'plums' -> counter {value} "
              f"({requests_per_key - value} lost)")  # fmt: skip
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    app = sub.add_parser("serve", help="run one app node (the driver starts two)")
    app.add_argument("node", type=int)
    app.add_argument("--base-port", type=int, required=True)
    app.add_argument("--http-port", type=int, required=True)
    app.add_argument("--data-dir", required=True)
    app.add_argument("--counters", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return drive()


if __name__ == "__main__":
    sys.exit(main())
