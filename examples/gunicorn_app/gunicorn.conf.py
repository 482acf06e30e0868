"""gunicorn settings for the Paxtor recipe: gevent workers, each a Paxtor client node.

    PAXTOR_SEEDS=127.0.0.1:4371 PAXTOR_COOKIE=... \\
        .venv/bin/gunicorn -c examples/gunicorn_app/gunicorn.conf.py app:app

The order matters: gunicorn's gevent worker monkey-patches first, in the
worker process; ``post_worker_init`` runs after that, and only then is the
node started (never in the master, never before the fork: a node's
sockets and greenlets must belong to the process that runs them).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # app.py, paxtor_worker.py, and the counter store

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gevent"
worker_connections = 1000
graceful_timeout = 10
timeout = 30


def post_worker_init(worker):
    import paxtor_worker

    paxtor_worker.start()


def worker_exit(server, worker):
    import paxtor_worker

    paxtor_worker.stop()
