"""A process mailbox: a FIFO with Erlang's selective receive.

The hot path of the runtime: `put` appends to a deque and, only if the owner
is blocked, schedules one wake-up on the hub; `receive` pops or parks the
owner greenlet with a bare hub switch (no gevent Queue, no Waiter objects).

Selective receive (`match=`) scans from the head; a message that does not
match is moved aside (in order) and put back in front when the receive ends,
so unmatched messages keep their place. While one receive waits, a wake-up
scans only the messages that arrived since its last scan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from paxtor.actors.messages import Down, ReceiveTimeout, Reply

__all__ = ["Mailbox", "check_timeout"]


def check_timeout(timeout: Any) -> None:
    """A receive or call timeout is None (forever) or seconds >= 0; else ValueError, before
    anything is sent (as gen:call guards its Timeout, and `queue.get` does)."""
    if timeout is not None and (
        timeout.__class__ is bool or not isinstance(timeout, (int, float)) or not timeout >= 0
    ):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")


class Mailbox:
    """The message queue of one process; only its owner greenlet receives.

    `interrupt`: an exception to raise in the owner at its current or next
    receive (used to end adopted greenlets that cannot be killed by a throw).
    `hub`: the gevent hub the owner parks on.
    """

    __slots__ = (
        "_queue",
        "_saved",
        "_greenlet",
        "hub",
        "_run_callback",
        "_waiting",
        "_wake_pending",
        "_timed_out",
        "_timer",
        "_timer_after",
        "interrupt",
    )

    def __init__(self, owner: Any, hub: Any) -> None:
        self._queue: deque[Any] = deque()
        self._saved: list[Any] = []
        self._greenlet = owner
        self.hub = hub
        self._run_callback = hub.loop.run_callback
        self._waiting = False
        self._wake_pending = False
        self._timed_out = False
        self._timer: Any = None  # the receive timer, kept between timed receives
        self._timer_after = 0.0  # its timeout
        self.interrupt: BaseException | None = None

    # -- senders' side ---------------------------------------------------

    def put(self, msg: Any) -> None:
        """Enqueue `msg`; never blocks, never switches."""
        self._queue.append(msg)
        if self._waiting and not self._wake_pending:
            self._wake_pending = True
            self._run_callback(self._wake)

    def wake(self) -> None:
        """Wake the owner if it is parked in `receive` (it re-checks its state)."""
        if self._waiting and not self._wake_pending:
            self._wake_pending = True
            self.hub.loop.run_callback(self._wake)

    def _wake(self) -> None:
        # Runs in the hub. `_waiting` is true only while the owner is parked
        # in `_park`, so switching into it is safe; otherwise this is stale.
        self._wake_pending = False
        if self._waiting:
            self._greenlet.switch()

    def _on_timeout(self) -> None:
        self._timed_out = True
        if self._waiting:
            self._greenlet.switch()

    # -- owner's side ----------------------------------------------------

    def _park(self) -> None:
        self._waiting = True
        try:
            self.hub.switch()
        finally:
            self._waiting = False

    def _raise_interrupt(self) -> None:
        exc = self.interrupt
        self.interrupt = None
        assert exc is not None
        raise exc

    def receive(self, match: Callable[[Any], bool] | None = None, timeout: float | None = None) -> Any:
        """Take the oldest message (matching `match`, if given).

        `timeout=None` waits forever, `0` only looks, else seconds; then
        `ReceiveTimeout`. Must run in the owner greenlet.
        """
        if self.interrupt is not None:
            self._raise_interrupt()
        if match is not None:
            return self._receive_matching(match, timeout)
        queue = self._queue
        if queue:
            return queue.popleft()
        if timeout is not None:
            return self._receive_any_timed(timeout)
        while not queue:
            self._waiting = True  # `_park`, inlined: a server waits here for every message
            try:
                self.hub.switch()
            finally:
                self._waiting = False
            if self.interrupt is not None:
                self._raise_interrupt()
        return queue.popleft()

    def _start_timer(self, timeout: float) -> Any:
        """Start the receive timer for `timeout` seconds from now.

        One timer serves every timed receive of the mailbox (a gen_server call
        is one): made with ``repeat=timeout`` and started with ``again``, which
        counts the whole `timeout` afresh (a plain restart of a libev timer
        resumes from what was left of its last run). A receive that starts
        while the timer runs (from a match predicate) gets a timer of its own.
        """
        self._timed_out = False
        timer = self._timer
        if timer is None or timer.active or self._timer_after != timeout:
            if timer is not None and timer.active:
                timer = self.hub.loop.timer(timeout)
                timer.start(self._on_timeout)
                return timer  # closed by `_stop_timer`
            if timer is not None:
                timer.close()
            timer = self._timer = self.hub.loop.timer(timeout, timeout)
            self._timer_after = timeout
        timer.again(self._on_timeout)
        return timer

    def _stop_timer(self, timer: Any) -> None:
        if timer is self._timer:
            timer.stop()  # kept for the next timed receive
        else:
            timer.close()

    def _receive_any_timed(self, timeout: float) -> Any:
        queue = self._queue
        if timeout <= 0:
            raise ReceiveTimeout(timeout)
        timer = self._start_timer(timeout)
        try:
            while not queue:
                if self._timed_out:
                    raise ReceiveTimeout(timeout)
                self._park()
                if self.interrupt is not None:
                    self._raise_interrupt()
            return queue.popleft()
        finally:
            self._stop_timer(timer)

    def _receive_matching(self, match: Callable[[Any], bool], timeout: float | None) -> Any:
        queue = self._queue
        saved = self._saved
        if saved:
            raise RuntimeError("receive() called from inside a receive match predicate")
        timer = None
        try:
            while True:
                while queue:
                    msg = queue.popleft()
                    try:
                        hit = match(msg)
                    except BaseException:
                        saved.append(msg)
                        raise
                    if hit:
                        return msg
                    saved.append(msg)
                if timeout is not None:  # wait for more (inlined: a call waits here once or twice)
                    if timer is None:
                        if timeout <= 0:
                            raise ReceiveTimeout(timeout)
                        timer = self._start_timer(timeout)
                    elif self._timed_out:
                        raise ReceiveTimeout(timeout)
                self._waiting = True  # `_park`, inlined
                try:
                    self.hub.switch()
                finally:
                    self._waiting = False
                if self.interrupt is not None:
                    self._raise_interrupt()
        finally:
            if saved:  # put back what was passed over, in order
                queue.extendleft(reversed(saved))
                saved.clear()
            if timer is not None:
                if timer is self._timer:
                    timer.stop()  # kept for the next timed receive
                else:
                    timer.close()

    def mark(self) -> int:
        """A position for `receive_answer`: what is queued now comes before it."""
        return len(self._queue)

    def receive_answer(self, ref: Any, timeout: float | None, after: int = 0) -> Any:
        """Take the `Reply` or `Down` tagged `ref`: the answer to a call.

        The first `after` queued messages (a `mark()` taken before the
        request went out) cannot be it and are passed over unread, as
        Erlang's receive does for a fresh ref. Else as `receive(match, timeout)`.
        """
        if self.interrupt is not None:
            self._raise_interrupt()
        queue = self._queue
        saved = self._saved
        if saved:
            raise RuntimeError("receive() called from inside a receive match predicate")
        timer = None
        try:
            if after:
                for _ in range(min(after, len(queue))):
                    saved.append(queue.popleft())
            while True:
                while queue:
                    msg = queue.popleft()
                    cls = msg.__class__
                    if (cls is Reply or cls is Down) and (msg.ref is ref or msg.ref == ref):
                        return msg
                    saved.append(msg)
                if timeout is not None:  # wait for more (inlined: a call waits here once or twice)
                    if timer is None:
                        if timeout <= 0:
                            raise ReceiveTimeout(timeout)
                        timer = self._start_timer(timeout)
                    elif self._timed_out:
                        raise ReceiveTimeout(timeout)
                self._waiting = True  # `_park`, inlined
                try:
                    self.hub.switch()
                finally:
                    self._waiting = False
                if self.interrupt is not None:
                    self._raise_interrupt()
        finally:
            if saved:  # put back what was passed over, in order
                queue.extendleft(reversed(saved))
                saved.clear()
            if timer is not None:
                if timer is self._timer:
                    timer.stop()  # kept for the next timed receive
                else:
                    timer.close()

    def remove_if(self, pred: Callable[[Any], bool]) -> int:
        """Drop every queued message for which `pred` is true; return how many."""
        queue = self._queue
        kept = [m for m in queue if not pred(m)]
        removed = len(queue) - len(kept)
        if removed:
            queue.clear()
            queue.extend(kept)
        return removed

    def __len__(self) -> int:
        return len(self._queue) + len(self._saved)

    def __iter__(self) -> Iterator[Any]:
        """Queued messages, oldest first (a snapshot, for inspection)."""
        return iter(list(self._saved) + list(self._queue))
