"""A test node as its own OS process: ``python paxtor_node_main.py N BASE_PORT``.

``node<N>`` by `paxtor.start_node` with the tests' short lease and memory
durability (`paxtor.testing.start_test_node`; ``python -m paxtor node`` has
no lease flags), the cookie from ``$PAXTOR_COOKIE``, JSON logs on stderr
(``node_started`` once its services run); it serves until it is killed."""

from __future__ import annotations

import sys

import gevent

from paxtor.cli import configure_logging
from paxtor.testing import start_test_node


def main() -> None:
    configure_logging(json_output=True)
    start_test_node(int(sys.argv[1]), base_port=int(sys.argv[2]))
    gevent.wait()


if __name__ == "__main__":
    main()
