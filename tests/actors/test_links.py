"""Links and exit signals, against the rules of the Erlang reference manual
("Processes"): tables of (how the signal is sent, reason, trap_exits) ->
what happens to the receiver."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from paxtor.actors import (
    Down,
    Exit,
    ReceiveTimeout,
    exit,
    link,
    receive,
    self_pid,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exits,
    unlink,
)
from paxtor.actors.messages import ProcessExit
from paxtor.actors.primitives import is_alive

CRASH = ValueError("crash")


def down_of(ref, timeout=5):
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def recorder(parent, trap):
    """A process that keeps every message and reports them when asked."""
    trap_exits(trap)
    send(parent, ("ready", self_pid()))
    seen = []
    while True:
        m = receive()
        if isinstance(m, tuple) and m[0] == "report":
            send(m[1], ("seen", seen[:]))
        else:
            seen.append(m)


def start_recorder(trap):
    pid, ref = spawn_monitor(recorder, self_pid(), trap)
    assert receive(lambda m: m == ("ready", pid), timeout=5)
    return pid, ref


def outcome(pid, ref):
    """("alive", messages it got) or ("dead", reason), once signals settled.

    A kill is applied before a message sent after it is handled, so asking
    for a report right after the signal gives a deterministic answer.
    """
    send(pid, ("report", self_pid()))
    msg = receive(
        lambda m: (isinstance(m, Down) and m.ref == ref) or (isinstance(m, tuple) and m[0] == "seen"), timeout=5
    )
    if isinstance(msg, Down):
        return ("dead", msg.reason)
    return ("alive", msg[1])


def exit_by(how):
    """The body of a process that links to `target` and then ends as told."""

    def body(target):
        link(target)
        if how == "return":
            return
        if how == "crash":
            raise CRASH
        exit(how)

    return body


# -- link exit signals ------------------------------------------------------------------------

# (how the linked process ends, trap_exits) -> outcome for the other side
LINK_TABLE = [
    ("return", False, "alive", None),
    ("return", True, "alive", "normal"),
    ("normal", False, "alive", None),
    ("normal", True, "alive", "normal"),
    ("boom", False, "dead", "boom"),
    ("boom", True, "alive", "boom"),
    ("kill", False, "dead", "kill"),  # a link signal "kill" is an ordinary reason
    ("kill", True, "alive", "kill"),
    ("crash", False, "dead", CRASH),
    ("crash", True, "alive", CRASH),
]


@pytest.mark.parametrize(("how", "trap", "state", "reason"), LINK_TABLE)
def test_exit_signal_through_a_link(how, trap, state, reason):
    pid, ref = start_recorder(trap)
    linked, linked_ref = spawn_monitor(exit_by(how), pid)
    down_of(linked_ref)
    got = outcome(pid, ref)
    if state == "dead":
        assert got == ("dead", reason)
        assert got[1] is reason or isinstance(reason, str)  # an exception stays the same object
    elif trap:
        assert got == ("alive", [Exit(linked, reason)])
    else:
        assert got == ("alive", [])


# -- exit/2 --------------------------------------------------------------------------------------------

# (reason, trap_exits) -> outcome for the target of exit(pid, reason) from another process
EXIT2_TABLE = [
    ("normal", False, "alive", None),
    ("normal", True, "alive", "normal"),
    ("kill", False, "dead", "killed"),
    ("kill", True, "dead", "killed"),  # untrappable
    ("boom", False, "dead", "boom"),
    ("boom", True, "alive", "boom"),
    (CRASH, False, "dead", CRASH),
    (CRASH, True, "alive", CRASH),
    ("killed", False, "dead", "killed"),  # only "kill" itself is special
    ("killed", True, "alive", "killed"),
]


@pytest.mark.parametrize(("reason", "trap", "state", "expected"), EXIT2_TABLE)
def test_exit_signal_sent_with_exit(reason, trap, state, expected):
    pid, ref = start_recorder(trap)
    exit(pid, reason)
    got = outcome(pid, ref)
    if state == "dead":
        assert got == ("dead", expected)
    elif trap:
        assert got == ("alive", [Exit(self_pid(), expected)])
    else:
        assert got == ("alive", [])


# exit(self(), reason): "normal" does end a non-trapping sender (Erlang's documented rule)
EXIT_SELF_TABLE = [
    ("normal", False, "dead", "normal"),
    ("normal", True, "alive", "normal"),
    ("kill", True, "dead", "killed"),
    ("boom", False, "dead", "boom"),
    ("boom", True, "alive", "boom"),
]


@pytest.mark.parametrize(("reason", "trap", "state", "expected"), EXIT_SELF_TABLE)
def test_exit_signal_to_oneself(reason, trap, state, expected):
    parent = self_pid()

    def body():
        trap_exits(trap)
        exit(self_pid(), reason)
        send(parent, ("survived", receive(timeout=0)))

    _, ref = spawn_monitor(body)
    msg = receive(
        lambda m: (isinstance(m, Down) and m.ref == ref) or (isinstance(m, tuple) and m[0] == "survived"), timeout=5
    )
    if state == "dead":
        assert isinstance(msg, Down) and msg.reason == expected
    else:
        assert msg[1].reason == expected


# -- killed propagates as "killed" ---------------------------------------------------------------------


def test_a_killed_process_signals_its_links_with_killed():
    trapper, trapper_ref = start_recorder(True)
    plain, plain_ref = start_recorder(False)

    def victim():
        link(trapper)
        link(plain)
        send(parent, "linked")
        receive()

    parent = self_pid()
    pid, ref = spawn_monitor(victim)
    assert receive(timeout=5) == "linked"
    exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    assert outcome(plain, plain_ref) == ("dead", "killed")
    assert outcome(trapper, trapper_ref) == ("alive", [Exit(pid, "killed")])


# -- shape of links -------------------------------------------------------------------------------------


def test_links_are_bidirectional():
    a, a_ref = start_recorder(False)

    def b_body():
        link(a)
        send(parent, "linked")
        receive()

    parent = self_pid()
    b, b_ref = spawn_monitor(b_body)
    assert receive(timeout=5) == "linked"
    exit(a, "boom")  # a dies: b, linked from its side only, dies too
    assert down_of(a_ref).reason == "boom"
    assert down_of(b_ref).reason == "boom"


def test_a_chain_of_links_dies_together_with_the_same_reason():
    parent = self_pid()

    def middle(depth):
        if depth:
            spawn_link(middle, depth - 1)
            receive()
        else:
            send(parent, ("leaf", self_pid()))
            receive()
            raise CRASH

    top, ref = spawn_monitor(middle, 3)
    _, leaf = receive(timeout=5)
    send(leaf, "die")
    assert down_of(ref).reason is CRASH


def test_unlink_stops_propagation():
    a, a_ref = start_recorder(False)
    b, b_ref = start_recorder(False)

    def linker():
        link(a)
        link(b)
        unlink(a)
        unlink(a)  # unlinking twice is harmless
        exit("boom")

    _, ref = spawn_monitor(linker)
    down_of(ref)
    assert outcome(a, a_ref) == ("alive", [])
    assert outcome(b, b_ref) == ("dead", "boom")


def test_linking_twice_makes_one_link():
    trap_exits(True)
    pid = spawn(lambda: receive())
    link(pid)
    link(pid)
    exit(pid, "bye")
    assert receive(timeout=5) == Exit(pid, "bye")
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, Exit), timeout=0)


def test_linking_to_oneself_does_nothing():
    link(self_pid())
    trap_exits(True)
    # no link to oneself was recorded: nothing to signal
    from paxtor.actors.primitives import current_process

    assert self_pid() not in current_process().links


def test_spawn_link_is_atomic_even_if_the_child_dies_at_once():
    trap_exits(True)
    pid = spawn_link(exit, "instant")
    assert receive(timeout=5) == Exit(pid, "instant")


# -- linking to a dead process ------------------------------------------------------------------------


def test_linking_to_a_dead_pid_while_trapping_gives_an_exit_noproc_message():
    dead, ref = spawn_monitor(lambda: None)
    down_of(ref)
    trap_exits(True)
    link(dead)
    assert receive(timeout=0) == Exit(dead, "noproc")


def test_linking_to_a_dead_pid_without_trapping_ends_the_caller_with_noproc():
    dead, ref = spawn_monitor(lambda: None)
    down_of(ref)

    def body():
        link(dead)
        send(parent, "still alive")  # never reached

    parent = self_pid()
    _, body_ref = spawn_monitor(body)
    assert down_of(body_ref).reason == "noproc"
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: m == "still alive", timeout=0)


def test_the_main_greenlet_linking_to_a_dead_pid_raises_noproc_there():
    dead, ref = spawn_monitor(lambda: None)
    down_of(ref)
    with pytest.raises(ProcessExit) as info:
        link(dead)
    assert info.value.reason == "noproc"


# -- killing in the middle of work ----------------------------------------------------------------------


def test_an_exit_signal_kills_a_process_at_its_next_blocking_point():
    progress = []
    gate = gevent.event.Event()

    def worker():
        progress.append("started")
        gate.wait()
        progress.append("never")

    pid, ref = spawn_monitor(worker)
    gevent.sleep(0)
    assert progress == ["started"]
    exit(pid, "stop")
    assert down_of(ref).reason == "stop"
    gate.set()
    gevent.sleep(0)
    assert progress == ["started"]
    assert not is_alive(pid)


def test_the_first_exit_signal_wins():
    pid, ref = spawn_monitor(lambda: receive())
    exit(pid, "first")
    exit(pid, "second")
    exit(pid, "kill")
    assert down_of(ref).reason == "first"
