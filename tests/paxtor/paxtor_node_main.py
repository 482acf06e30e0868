"""A test node as its own OS process: ``python paxtor_node_main.py N BASE_PORT``.

Starts ``node<N>`` as `paxtor_cluster.start_test_node` does, prints "ready"
once its services run, and serves until it is killed (the subprocess tests
kill it with SIGKILL)."""

from __future__ import annotations

import logging
import sys

import gevent
import structlog


def main() -> None:
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    from paxtor_cluster import start_test_node

    start_test_node(int(sys.argv[1]), int(sys.argv[2]))
    print("ready", flush=True)
    gevent.wait()


if __name__ == "__main__":
    main()
