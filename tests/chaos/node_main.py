"""`python -m tests.chaos.node_main N SETTINGS_JSON`: a headless chaos node with a fault injector.

The same node as `python -m paxtor node N --no-shell --hosts ...`, plus
`agent.INJECTOR` wired into its connections (the CLI has no flag for one),
a switchable fsync delay (`slow_disk`, installed before paxtor is imported)
and the chaos timing settings (short lease, fast heartbeats) passed as
`paxos=`. A voter unless the settings say ``"voter": false`` (a client node).
"""

from __future__ import annotations

import json
import signal
import sys

from tests.chaos import slow_disk

slow_disk.install()  # before paxtor binds os.fsync

import gevent
import gevent.event

import paxtor
from paxtor.actors.faults import FaultInjector
from paxtor.cli import configure_logging
from tests.chaos import agent


def main(argv: list[str]) -> int:
    number = int(argv[0])
    settings = json.loads(argv[1])
    configure_logging(json_output=True, level="info")
    agent.INJECTOR = FaultInjector(seed=settings.get("seed", 0) * 100 + number)
    node = paxtor.start_node(
        number,
        cluster_size=settings["cluster_size"],
        base_port=settings["base_port"],
        hosts={int(n): h for n, h in settings.get("hosts", {}).items()},
        data_dir=settings["data_dir"],
        durability="fsync",
        voter=settings.get("voter", True),
        faults=agent.INJECTOR,
        heartbeat_interval=settings["heartbeat_interval"],
        heartbeat_timeout=settings["heartbeat_timeout"],
        reconnect_max=settings["reconnect_max"],
        handshake_timeout=settings["handshake_timeout"],
        paxos=settings["paxos"],
    )
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        stop.wait()
    finally:
        node.stop()
        for handler in handlers:
            handler.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
