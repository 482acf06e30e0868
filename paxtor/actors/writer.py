"""The write side of a node connection: what a loop turn queued, written with one send.

`push` only queues a frame. At the end of the loop turn a hub callback
(`_flush`) joins what the turn queued and tries one non-blocking send: the
common case, which costs no greenlet switch. What the kernel does not take
at once (and every TLS write) goes to the writer greenlet, which owns the
write side until it has caught up with everything queued meanwhile.
Frames queued before the connection is up are written once it is.

Fault injection (`paxtor.actors.faults`) decides here what happens to a
frame sent on a faulty link: dropped, delayed (in order, by a greenlet of
its own), or queued as usual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from gevent.hub import Waiter

from paxtor.actors.connection_config import ConnectionStats
from paxtor.actors.faults import LinkFaults
from paxtor.actors.sockets import raw_socket

__all__ = ["Writer"]


class Writer:
    """Writes one connection's frames (see the module docstring)."""

    def __init__(self, stats: ConnectionStats, busy_limit: int, fail: Callable[[str], None]) -> None:
        self.stats = stats
        self.busy_limit = busy_limit
        self.queued_bytes = 0
        """Bytes queued and not yet written."""
        self.writes_done = 0
        """Blocking writes finished by the writer greenlet (a stalled write does not count up)."""
        self.writing = False
        """The writer greenlet is inside a blocking write."""
        self._fail = fail
        self._out: list[bytes] = []
        self._ready = False  # up: flushes may run
        self._flush_scheduled = False
        self._delayed: deque[tuple[float, bytes, bytes]] = deque()
        self._waiter: Waiter | None = None
        self._busy = False  # the writer greenlet owns the socket's write side
        self._handoff: bytes | memoryview | None = None
        self._sock: Any = None
        self._nonblocking_send: Callable[[Any], int] | None = None
        self._loop = gevent.get_hub().loop
        self._drained = gevent.event.Event()
        self._drained.set()
        self._greenlet: gevent.Greenlet | None = None
        self._delayer: gevent.Greenlet | None = None

    @property
    def busy(self) -> bool:
        """More than `busy_limit` bytes wait to be written."""
        return self.queued_bytes > self.busy_limit

    def start(self, sock: Any) -> None:
        """The connection is up: write to `sock` from now on."""
        self._sock = sock
        self._ready = True
        raw = raw_socket(sock)
        if raw is not None:
            self._nonblocking_send = raw.send
        self._greenlet = gevent.spawn(self._write_loop)

    def flush_soon(self) -> None:
        """Write what is queued at the end of this loop turn (once up)."""
        if self._out and not self._flush_scheduled and self._ready:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def stop(self) -> None:
        """The connection closes: stop the greenlets (not the calling one) and drop what is queued."""
        self._ready = False
        current = gevent.getcurrent()
        for greenlet in (self._greenlet, self._delayer):
            if greenlet is not None and greenlet is not current and not greenlet.dead:
                greenlet.kill(block=False)
        self._out.clear()
        self.queued_bytes = 0
        self._delayed.clear()
        self._waiter = None
        self._handoff = None
        self._drained.set()

    def wait_drained(self, timeout: float | None, closed: Callable[[], bool]) -> bool:
        """Block until the queue is below `busy_limit` (or `closed()`); False on timeout."""
        while self.busy and not closed():
            self._drained.clear()
            if not self._drained.wait(timeout):
                return False
        return True

    def push(self, header: bytes, payload: bytes) -> None:
        """Queue one frame (its header and payload); written at the end of the loop turn."""
        out = self._out
        out.append(header)
        out.append(payload)
        self.queued_bytes += len(header) + len(payload)
        if not self._flush_scheduled and self._ready:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def push_faulty(self, header: bytes, payload: bytes, faults: LinkFaults, *, heartbeat: bool) -> None:
        """`push` on a link with injected faults: the frame may be dropped or delayed."""
        if faults.block_out or (not heartbeat and faults.drops_outgoing()):
            self.stats.frames_dropped += not heartbeat
            return
        if faults.delay_out > 0.0 or self._delayed:
            self._delayed.append((self._loop.now() + faults.delay_out, header, payload))
            if self._delayer is None or self._delayer.dead:
                self._delayer = gevent.spawn(self._delay_loop)
            return
        self.push(header, payload)

    def _flush(self) -> None:
        """Hub callback at the end of a loop turn: write what the turn queued.

        It runs in the hub, so it only tries a non-blocking send; what the
        kernel does not take at once (and every TLS write) goes to the writer
        greenlet, which owns the write side until it has caught up. The fast
        path saves two greenlet switches per batch.
        """
        self._flush_scheduled = False
        out = self._out
        if not out or self._busy or not self._ready:
            return  # a busy writer takes `out` itself when it is done
        data: bytes | memoryview = b"".join(out)
        out.clear()
        self.stats.writes += 1
        send = self._nonblocking_send
        if send is not None:
            try:
                sent = send(data)
            except OSError:  # EAGAIN, or an error the writer will meet and report
                sent = 0
            if sent == len(data):  # the common case, `_wrote` inlined
                self.stats.bytes_sent += sent
                self.queued_bytes -= sent
                if self.queued_bytes <= self.busy_limit and not self._drained.is_set():
                    self._drained.set()
                return
            self._wrote(sent)
            data = memoryview(data)[sent:]
        self._busy = True
        self._handoff = data
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.switch(None)

    def _wrote(self, size: int) -> None:
        self.stats.bytes_sent += size
        self.queued_bytes -= size
        if self.queued_bytes <= self.busy_limit and not self._drained.is_set():
            self._drained.set()

    def _write_loop(self) -> None:
        """The slow path: blocking writes of what `_flush` could not send at once."""
        out = self._out
        sendall = self._sock.sendall
        try:
            while True:
                data = self._handoff
                if data is None:
                    self._waiter = waiter = Waiter()
                    waiter.get()
                    continue
                self._handoff = None
                while data is not None:
                    self.writing = True
                    sendall(data)
                    self.writing = False
                    self.writes_done += 1
                    self._wrote(len(data))
                    data = None
                    if out:
                        data = b"".join(out)
                        out.clear()
                        self.stats.writes += 1
                self._busy = False
        except OSError as exc:
            self._fail(f"send_failed: {exc}")

    def _delay_loop(self) -> None:
        delayed = self._delayed
        while delayed:
            due, header, payload = delayed[0]
            wait = due - self._loop.now()
            if wait > 0:
                gevent.sleep(wait)
                continue
            delayed.popleft()
            self.push(header, payload)
