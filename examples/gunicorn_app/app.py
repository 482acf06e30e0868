"""A plain WSGI app for the gunicorn recipe: counters incremented under a Paxtor lock.

    GET /incr?key=K[&timeout=S]   lock K (waiting at most S seconds, default 5),
                                  read its counter, write it back plus one, fenced
    GET /hold?key=K&seconds=S     a process of this worker takes lock K and keeps
                                  it S seconds (answers once it holds it)
    GET /health                   200 once this worker's node runs, else 503

Every answer is JSON with this worker's ``pid`` and node. The counters live
in ``$PAXTOR_APP_STORE`` (one file per key, shared by every worker: the
resource the lock protects), written with the fencing token, and a write
with an older token is refused (the store of ``examples/wsgi_increment.py``).
A lock that is not granted in time answers 503; nothing waits forever.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import paxtor_worker
from wsgi_increment import StaleWrite, read_counter, write_counter

import paxtor
from paxtor.actors import spawn

STORE = Path(os.environ.get("PAXTOR_APP_STORE", "counters"))
STORE.mkdir(parents=True, exist_ok=True)
MAX_TIMEOUT = 30.0


def increment(key: str, timeout: float) -> tuple[str, dict[str, Any]]:
    try:
        with paxtor.locked(("counter", key), timeout=timeout) as token:
            old, _ = read_counter(STORE, key)
            write_counter(STORE, key, old + 1, token)
    except TimeoutError:
        return "503 Service Unavailable", {"key": key, "error": f"lock not granted in {timeout} s"}
    except StaleWrite as exc:
        return "409 Conflict", {"key": key, "error": f"stale fencing token: {exc}"}
    return "200 OK", {"key": key, "value": old + 1, "token": token}


def _hold(key: str, seconds: float, reply: gevent.event.AsyncResult) -> None:
    reply.set(paxtor.lock(("counter", key)))
    gevent.sleep(seconds)


def hold(key: str, seconds: float) -> tuple[str, dict[str, Any]]:
    reply = gevent.event.AsyncResult()
    spawn(_hold, key, seconds, reply)
    return "200 OK", {"key": key, "token": reply.get(timeout=MAX_TIMEOUT)}


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO", "")
    key = (query.get("key") or [""])[0]
    why = paxtor_worker.unavailable()
    if why is not None:
        status, body = "503 Service Unavailable", {"error": f"paxtor node not running: {why}"}
    elif path == "/health":
        status, body = "200 OK", {}
    elif path in ("/incr", "/hold") and key.isidentifier():
        try:
            wait = min(MAX_TIMEOUT, float((query.get("timeout") or query.get("seconds") or ["5"])[0]))
        except ValueError:
            wait = -1.0
        if not wait >= 0:
            status, body = "400 Bad Request", {"error": "timeout/seconds must be a number >= 0"}
        else:
            status, body = increment(key, wait) if path == "/incr" else hold(key, wait)
    else:
        status, body = "404 Not Found", {"error": "GET /incr?key=NAME, /hold?key=NAME&seconds=S or /health"}
    body.update(pid=os.getpid(), node=paxtor_worker.node_name())
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
