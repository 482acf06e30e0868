"""Paxtor inside gunicorn's gevent workers: every worker is a client node.

The gunicorn config (`gunicorn.conf.py`) calls `start` from
``post_worker_init`` (after the gevent worker has monkey-patched, in the
worker process) and `stop` from ``worker_exit``. Each worker joins as a
client that votes for nothing and hosts no singletons, under a unique name
(``web-<host>-<pid>``), with memory durability (it writes nothing), and
finds the cluster from the voters it is given (``PAXTOR_SEEDS``); the
mesh connects it to every other worker.

Nothing here may take the gunicorn master down: a worker whose node does not
start keeps serving (requests answer 503 and say why) and tries again in
the background; gunicorn halts the whole server only when a worker fails to
boot, so no exception leaves these hooks.

Settings come from the environment: ``PAXTOR_SEEDS`` (host:port of one or
more voters), ``PAXTOR_CLUSTER_SIZE`` (3), ``PAXTOR_BASE_PORT`` (4370),
``PAXTOR_HOST`` (where the worker listens, 127.0.0.1; 0.0.0.0 in a
container), ``PAXTOR_HOSTS`` (the voters' addresses, ``1=voter1,2=...``,
as their ``--hosts``), ``PAXTOR_COOKIE``,
``PAXTOR_LEASE`` and ``PAXTOR_LEASE_MARGIN`` (seconds, optional: every
node of a cluster must use the voters' values).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import gevent
import structlog

log = structlog.get_logger("paxtor_worker")

#: Seconds between attempts to start a node that failed to start.
RETRY_EVERY = 2.0

_state: dict[str, Any] = {"node": None, "error": "starting", "retry": None}


def node_options() -> dict[str, Any]:
    """`paxtor.start_node` arguments for this worker, from the environment."""
    env = os.environ
    options: dict[str, Any] = dict(
        name=f"web-{socket.gethostname()}-{os.getpid()}",
        voter=False,
        singletons=False,
        cluster_size=int(env.get("PAXTOR_CLUSTER_SIZE", "3")),
        base_port=int(env.get("PAXTOR_BASE_PORT", "4370")),
        host=env.get("PAXTOR_HOST", "127.0.0.1"),
        seeds=[s for s in env.get("PAXTOR_SEEDS", "").split(",") if s.strip()],
    )
    if env.get("PAXTOR_HOSTS"):
        pairs = (item.split("=", 1) for item in env["PAXTOR_HOSTS"].split(",") if item.strip())
        options["hosts"] = {int(number.strip().removeprefix("node")): address.strip() for number, address in pairs}
    if env.get("PAXTOR_LEASE"):
        lease = float(env["PAXTOR_LEASE"])
        options["paxos"] = dict(lease=lease, margin=float(env.get("PAXTOR_LEASE_MARGIN", "0.5")))
        # a peer's loss is noticed within the lease, so a dead worker's locks pass on soon after
        options.update(heartbeat_interval=lease / 5, heartbeat_timeout=lease * 1.5, reconnect_max=lease / 2)
    return options


def _start_once() -> bool:
    import paxtor

    try:
        _state["node"] = paxtor.start_node(**node_options())
    except Exception as exc:  # noqa: BLE001 - logged and retried: the worker must stay up
        _state["error"] = f"{type(exc).__name__}: {exc}"
        log.error("paxtor_node_start_failed", pid=os.getpid(), error=_state["error"])
        return False
    _state["error"] = None
    log.info("paxtor_node_started", node=_state["node"].name, pid=os.getpid())
    return True


def _retry_loop() -> None:
    while _state["node"] is None and not _start_once():
        gevent.sleep(RETRY_EVERY)


def start() -> None:
    """Start this worker's node (post_worker_init); on failure, retry in the background."""
    if not _start_once():
        _state["retry"] = gevent.spawn_later(RETRY_EVERY, _retry_loop)


def stop() -> None:
    """Stop this worker's node (worker_exit): its locks pass on within about a second."""
    retry = _state["retry"]
    if retry is not None:
        retry.kill(block=False)
    node, _state["node"] = _state["node"], None
    if node is not None:
        try:
            node.stop()
        except Exception as exc:  # noqa: BLE001 - the worker is exiting anyway
            log.warning("paxtor_node_stop_failed", error=repr(exc))


def unavailable() -> str | None:
    """Why this worker cannot serve Paxtor now (None once its node runs)."""
    return None if _state["node"] is not None else (_state["error"] or "starting")


def node_name() -> str:
    """This worker's node name ("" while it has none)."""
    node = _state["node"]
    return node.name if node is not None else ""
