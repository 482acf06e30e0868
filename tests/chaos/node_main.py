"""`python -m tests.chaos.node_main N SETTINGS_JSON`: a headless chaos node with a fault injector.

The same node as `python -m paxtor node N --no-shell --hosts ...`, plus
`agent.INJECTOR` wired into its connections (the CLI has no flag for one),
a switchable fsync delay (`slow_disk`, installed before paxtor is imported)
and the chaos timing settings (short lease, fast heartbeats) passed as
`paxos=`. A voter unless the settings say ``"voter": false`` (a client node).

``"amnesia": true`` is a negative control, for the chaos suite only: this
node's acceptor, if its data directory was wiped, votes as soon as it learns
the cluster's configuration instead of catching up first
(`let_wiped_voters_vote`). The checkers must then find lost writes or two
holders (`tests.chaos.runner`, ``--amnesia``).
"""

from __future__ import annotations

import json
import signal
import sys

from tests.chaos import slow_disk

slow_disk.install()  # before paxtor binds os.fsync

import gevent
import gevent.event
import structlog

import paxtor
from paxtor.actors.faults import FaultInjector
from paxtor.cli import configure_logging
from paxtor.paxos.acceptor import Acceptor, MemberState
from paxtor.paxos.voter_config import VoterConfig
from tests.chaos import agent


def let_wiped_voters_vote() -> None:
    """The negative control: a blank acceptor named by the configuration it installs votes
    at once, as an acceptor that lost nothing would (the library makes it a learner)."""
    install = Acceptor.install

    def install_and_vote(self: Acceptor, cluster: str, config: VoterConfig) -> MemberState | None:
        blank = self.blank
        record = install(self, cluster, config)
        if blank and record is not None and not record.voting and config.is_member(self.identity[0]):
            record = self._set_member(MemberState(record.cluster, record.config, True))
            structlog.get_logger(__name__).warning("negative_control_wiped_voter_votes", node=self.identity[0])
        return record

    Acceptor.install = install_and_vote  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    number = int(argv[0])
    settings = json.loads(argv[1])
    configure_logging(json_output=True, level="info")
    if settings.get("amnesia"):
        let_wiped_voters_vote()
    agent.INJECTOR = FaultInjector(seed=settings.get("seed", 0) * 100 + number)
    node = paxtor.start_node(
        number,
        cluster_size=settings["cluster_size"],
        base_port=settings["base_port"],
        hosts={int(n): h for n, h in settings.get("hosts", {}).items()},
        seeds=settings.get("seeds", ()),
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
