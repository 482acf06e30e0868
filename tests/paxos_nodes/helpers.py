"""Module-level functions the PaxosKV node tests hand to nodes (release policies
must be module-level: every node applies them; subprocess nodes import this)."""

from __future__ import annotations

import time
from typing import Any

import gevent.queue

from paxtor.actors import exit as exit_
from paxtor.actors import receive, send
from paxtor.paxos.register import EndedBinding, Register


def record_reason(register: Register, ended: EndedBinding) -> Register:
    """A release policy: the value becomes ("ended", reason), bound to nothing."""
    reason = ended.reason
    if isinstance(reason, BaseException):
        reason = f"{type(reason).__name__}: {reason}"
    return register.handoff(("ended", reason))


def empty_policy(register: Register, ended: EndedBinding) -> Register:
    """Another module-level release policy (the default's behaviour)."""
    return register.release()


def park() -> None:
    """A process that waits until told to exit: ("exit", reason)."""
    while True:
        msg = receive()
        if isinstance(msg, tuple) and msg[0] == "exit":
            exit_(msg[1])


def notify(queue: Any) -> Any:
    """An on_release hook putting ("released", node, bucket, key, chosen) in a gevent queue
    of this OS process (no network between the hook and the test)."""
    from paxtor.actors.distribution import node

    def on_release(bucket: str, key: Any, chosen: Register) -> None:
        queue.put(("released", node(), bucket, key, chosen))

    return on_release


def claim_and_park(key: Any, value: Any, bucket: str, reply_to: Any) -> None:
    """Bind `key` to this process (put with pid=self), report, then park."""
    from paxtor import paxos
    from paxtor.actors import self_pid

    chosen = paxos.put(key, value, pid=self_pid(), bucket=bucket)
    send(reply_to, ("claimed", key, chosen, self_pid()))
    park()


def put_and_report(reply_to: Any, key: Any, value: Any) -> None:
    """On some node: put, then report ("put", node, chosen, get back)."""
    from paxtor import paxos
    from paxtor.actors.distribution import node

    paxos.wait_for_quorum(10)
    chosen = paxos.put(key, value)
    send(reply_to, ("put", node(), chosen, paxos.get(key)))


class Releases:
    """on_release reports from every node, by key."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.seen: list[tuple[str, Any, Any]] = []
        self.hook = notify(self.queue)  # the bucket's on_release: reports here

    def start_bucket(self, nodes: list[Any]) -> None:
        """Start the bucket (policy `record_reason`, reporting here) on `nodes`."""
        from paxtor import paxos

        for node in nodes:
            node.run(paxos.start_bucket, self.bucket, record_reason, self.hook)

    def wait(self, key: Any, timeout: float = 10.0) -> tuple[str, Any]:
        """(node that drove the release of `key`, chosen register)."""
        deadline = time.monotonic() + timeout
        while True:
            for driver, seen_key, chosen in self.seen:
                if seen_key == key:
                    return driver, chosen
            _, driver, _, seen_key, chosen = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            self.seen.append((driver, seen_key, chosen))


def claim_unhold_and_park(key: Any, value: Any, bucket: str, reply_to: Any) -> None:
    """Bind `key` to this process, then tell the lease keeper the tenure ended
    (as `unlock` does when another node proposed the release), report, park."""
    from paxtor import paxos
    from paxtor.actors import self_pid

    paxos.put(key, value, pid=self_pid(), bucket=bucket)
    paxos.unhold(self_pid(), bucket, key, paxos.epoch_of(key, bucket=bucket))
    paxos.unhold(self_pid(), bucket, key, 10**9)  # a stale tenure is ignored, not an error
    send(reply_to, ("unheld", key, self_pid()))
    park()
