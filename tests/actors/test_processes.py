"""Processes: spawning, messages, receive, exit reasons, crash reports,
adopted greenlets, and nodes living side by side in one OS process."""

from __future__ import annotations

import gevent
import gevent.event
import greenlet
import pytest
from structlog.testing import capture_logs

from paxtor.actors import (
    Down,
    Pid,
    ReceiveTimeout,
    exit,
    link,
    monitor,
    receive,
    self_pid,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exits,
)
from paxtor.actors.messages import NotAProcess, NotDistributed, ProcessExit
from paxtor.actors.node import DEFAULT_NODE_NAME, LocalNode, current_node, get_node
from paxtor.actors.primitives import is_alive


def down_of(ref, timeout=5):
    """The Down of monitor `ref` (fails the test if it never comes)."""
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def run(fn, *args, **kwargs):
    """Run fn in a new process; return (exit reason, Down)."""
    _, ref = spawn_monitor(fn, *args, **kwargs)
    down = down_of(ref)
    return down.reason


# -- spawning and identity ----------------------------------------------------------------


def test_spawn_runs_the_function_with_args_and_kwargs_in_its_own_process():
    parent = self_pid()

    def child(a, b, *, c):
        send(parent, ("ran", self_pid(), a + b + c))

    pid = spawn(child, 1, 2, c=3)
    assert receive(timeout=5) == ("ran", pid, 6)
    assert pid != parent


def test_pids_print_node_incarnation_serial_and_belong_to_the_current_node():
    node = LocalNode.start("alpha", incarnation=7)
    pid = spawn(lambda: None)
    assert pid.node == "alpha" and pid.incarnation == 7
    assert repr(pid) == f"<alpha.7.{pid.serial}>"
    assert node.is_local(pid)


def test_spawn_does_not_run_the_child_before_the_caller_blocks():
    events = []
    spawn(events.append, "child")
    events.append("parent")
    gevent.sleep(0)  # let the hub run the child (not a wait for a condition)
    assert events == ["parent", "child"]


def test_spawn_rejects_a_non_callable():
    with pytest.raises(TypeError):
        spawn(42)


# -- messages ----------------------------------------------------------------------------


def test_messages_from_one_sender_arrive_in_send_order():
    me = self_pid()

    def sender():
        for i in range(100):
            send(me, i)

    spawn(sender)
    assert [receive(timeout=5) for _ in range(100)] == list(range(100))


def test_selective_receive_leaves_unmatched_messages_queued_in_order():
    me = self_pid()
    for m in ["a", 1, "b", 2, "c"]:
        send(me, m)
    assert receive(lambda m: isinstance(m, int), timeout=0) == 1
    assert receive(lambda m: isinstance(m, int), timeout=0) == 2
    assert [receive(timeout=0) for _ in range(3)] == ["a", "b", "c"]


def test_receive_timeout_zero_polls_and_positive_timeout_raises():
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0)
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0.01)
    send(self_pid(), "x")
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: m == "y", timeout=0.01)
    assert receive(timeout=0) == "x"  # the unmatched message is still there


def test_receive_waits_for_a_message_sent_later():
    me = self_pid()

    def later():
        receive()  # wait for the go
        send(me, "late")

    pid = spawn(later)
    send(pid, "go")
    assert receive(timeout=5) == "late"


@pytest.mark.parametrize("selective", [False, True], ids=["any", "selective"])
def test_every_timed_receive_gets_its_whole_timeout(selective):
    """Regression: a reused timer resumed from what an earlier receive left of it,
    so once a process had waited `timeout` in total, its receives timed out early."""
    me = self_pid()
    match = (lambda m: m == "tick") if selective else None

    def ticker(n):
        for _ in range(n):
            receive()  # wait for the ask, then answer a little later
            gevent.sleep(0.01)
            send(me, "tick")

    rounds = 12  # 12 waits of ~10 ms each add up to more than one whole timeout
    pid = spawn(ticker, rounds)
    for _ in range(rounds):
        send(pid, "ask")
        assert receive(match, timeout=0.05) == "tick"
    with pytest.raises(ReceiveTimeout):  # a receive that ran out ...
        receive(match, timeout=0.02)
    pid = spawn(ticker, 1)
    send(pid, "ask")
    assert receive(match, timeout=0.05) == "tick"  # ... does not doom the next one


def test_a_timed_receive_inside_a_match_predicate_leaves_the_outer_receive_its_timeout():
    """The receive timer is kept between receives; one started while it runs (here from a
    match predicate) must get a timer of its own, or the outer receive never times out."""
    me = self_pid()
    inner = []

    def helper():
        send(me, "wake")
        receive()  # the predicate is waiting in a timed receive of its own by now
        send(me, "second")

    pid = spawn(helper)

    def match(m):
        if m == "wake" and not inner:
            send(pid, "go")
            inner.append(receive(timeout=5))  # parks: its message comes later
        return False

    with gevent.Timeout(5, AssertionError("the outer receive never timed out")):
        with pytest.raises(ReceiveTimeout):
            receive(match, timeout=0.2)
    assert inner == ["second"]
    assert receive(timeout=0) == "wake"  # passed over, kept


def test_a_match_predicate_that_raises_loses_no_message():
    me = self_pid()
    send(me, "a")
    send(me, "b")

    def bad(m):
        if m == "b":
            raise ValueError("bad predicate")
        return False

    with pytest.raises(ValueError):
        receive(bad, timeout=0)
    assert [receive(timeout=0), receive(timeout=0)] == ["a", "b"]


def test_selective_receive_does_not_rescan_old_messages_on_each_arrival():
    me = self_pid()
    calls = []

    def waiter():
        for i in range(50):
            send(self_pid(), ("old", i))
        send(me, "blocked")

        def match(m):
            calls.append(m)
            return m == "wanted"

        receive(match)
        send(me, ("calls", len(calls)))

    pid = spawn(waiter)
    assert receive(timeout=5) == "blocked"
    for i in range(20):
        send(pid, ("new", i))
        gevent.sleep(0)  # let it wake and scan each new message on its own
    send(pid, "wanted")
    # 50 old + 20 new + "wanted", each looked at once
    assert receive(lambda m: m[0] == "calls", timeout=5) == ("calls", 71)


def test_send_to_a_dead_pid_is_dropped_silently():
    pid = spawn(lambda: None)
    ref = monitor(pid)
    down_of(ref)
    send(pid, "into the void")  # no error
    assert not is_alive(pid)


# -- exit reasons and crash reports ---------------------------------------------------------------


def test_normal_return_exits_with_normal():
    assert run(lambda: None) == "normal"


def test_exit_with_a_reason_ends_the_process_without_a_crash_report():
    with capture_logs() as logs:
        assert run(exit, "my_reason") == "my_reason"
    assert [e for e in logs if e["event"] == "process_crashed"] == []


def test_an_uncaught_exception_is_the_exit_reason_and_is_logged_once():
    error = ValueError("boom")

    def crash():
        raise error

    with capture_logs() as logs:
        reason = run(crash)
    assert reason is error
    crashes = [e for e in logs if e["event"] == "process_crashed"]
    assert len(crashes) == 1
    assert crashes[0]["log_level"] == "error"
    assert crashes[0]["exc_info"][1] is error


def test_a_crash_does_not_take_the_node_down():
    def crash():
        raise RuntimeError("one bad process")

    for _ in range(3):
        assert isinstance(run(crash), RuntimeError)
    assert run(lambda: None) == "normal"
    assert current_node().running


def test_being_killed_by_a_link_is_not_crash_reported():
    def victim():
        receive()

    def killer(pid):
        link(pid)
        exit("bad")

    pid, ref = spawn_monitor(victim)
    with capture_logs() as logs:
        spawn(killer, pid)
        assert down_of(ref).reason == "bad"
    assert [e for e in logs if e["event"] == "process_crashed"] == []


# -- killing is cooperative ----------------------------------------------------------------------


def test_a_process_blocked_outside_receive_is_killed_at_that_point():
    never = gevent.event.Event()
    cleanup = []

    def blocked():
        try:
            never.wait()
        finally:
            cleanup.append("finally ran")

    pid, ref = spawn_monitor(blocked)
    gevent.sleep(0)  # let it block on the event
    exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    assert cleanup == ["finally ran"]


def test_a_process_killed_before_it_ever_ran_never_runs():
    ran = []
    pid, ref = spawn_monitor(ran.append, "ran")
    exit(pid, "shutdown")
    assert down_of(ref).reason == "shutdown"
    assert ran == []


def test_exit_from_a_process_to_itself_raises_at_once():
    def suicide():
        try:
            exit(self_pid(), "bye")
        except ProcessExit as e:
            send(parent, ("raised", e.reason))
            raise

    parent = self_pid()
    assert run(suicide) == "bye"
    assert receive(timeout=0) == ("raised", "bye")


# -- adopted greenlets -----------------------------------------------------------------------------


def test_self_pid_adopts_the_main_greenlet_once():
    assert greenlet.getcurrent().parent is None
    a = self_pid()
    assert self_pid() == a
    assert a.node == current_node().name


def test_an_adopted_gevent_greenlet_ends_its_process_when_it_finishes():
    me = self_pid()

    def body():
        send(me, ("pid", self_pid()))
        receive()  # wait for the go

    g = gevent.spawn(body)
    _, pid = receive(timeout=5)
    ref = monitor(pid)
    send(pid, "go")
    g.join()
    assert down_of(ref).reason == "normal"
    assert not is_alive(pid)


def test_an_adopted_gevent_greenlet_crash_is_its_exit_reason():
    me = self_pid()
    error = KeyError("k")

    def body():
        send(me, self_pid())
        receive()
        raise error

    g = gevent.spawn(body)
    pid = receive(timeout=5)
    ref = monitor(pid)
    with capture_logs() as logs:
        send(pid, "go")
        g.join()
        assert down_of(ref).reason is error
    assert len([e for e in logs if e["event"] == "process_crashed"]) == 1


def test_an_adopted_gevent_greenlet_is_killed_by_an_exit_signal_at_its_next_switch():
    me = self_pid()

    def body():
        send(me, self_pid())
        gevent.event.Event().wait()  # blocks outside receive

    g = gevent.spawn(body)
    pid = receive(timeout=5)
    ref = monitor(pid)
    exit(pid, "stop_now")
    g.join()
    assert down_of(ref).reason == "stop_now"
    assert g.successful()  # ProcessExit is a GreenletExit: gevent reports no error


def test_an_exit_signal_to_the_main_greenlet_ends_its_process_and_raises_at_its_next_receive():
    me = self_pid()
    seen = gevent.event.AsyncResult()

    def watcher(parent):
        ref = monitor(parent)
        send(parent, "watching")
        down = receive()
        seen.set((down.ref == ref, down.pid, down.reason))

    spawn(watcher, me)
    assert receive(timeout=5) == "watching"
    spawn(exit, me, "go_away")
    gevent.sleep(0)  # let the killer run: the main greenlet itself is not thrown into
    assert not is_alive(me)
    assert seen.get(timeout=5) == (True, me, "go_away")  # links and monitors fired at once
    with pytest.raises(ProcessExit) as info:
        receive(timeout=5)
    assert info.value.reason == "go_away"
    fresh = self_pid()  # the next call adopts the greenlet afresh
    assert fresh != me and is_alive(fresh)


def test_the_main_greenlet_blocked_in_receive_is_woken_by_a_link_exit():
    def crasher():
        receive()
        raise RuntimeError("linked crash")

    pid = spawn_link(crasher)
    send(pid, "go")
    with pytest.raises(ProcessExit) as info:
        receive(timeout=5)
    assert isinstance(info.value.reason, RuntimeError)
    assert self_pid() != pid


def test_the_main_greenlet_trapping_exits_gets_exit_messages():
    trap_exits(True)
    pid = spawn_link(exit, "bye")
    msg = receive(timeout=5)
    assert (msg.pid, msg.reason) == (pid, "bye")


def test_the_gevent_hub_cannot_be_adopted():
    result = gevent.event.AsyncResult()

    def in_hub():
        try:
            self_pid()
        except NotAProcess as e:
            result.set(e)
        else:
            result.set(None)

    gevent.get_hub().loop.run_callback(in_hub)
    assert isinstance(result.get(timeout=5), NotAProcess)


def test_send_from_the_hub_needs_no_process():
    me = self_pid()
    gevent.get_hub().loop.run_callback(send, me, "from the hub")
    assert receive(timeout=5) == "from the hub"


# -- nodes ----------------------------------------------------------------------------------------------


def test_without_a_started_node_the_plain_local_node_stands_in():
    assert current_node().name == DEFAULT_NODE_NAME
    assert self_pid().node == DEFAULT_NODE_NAME


def test_current_node_outside_processes_is_the_first_started_node_still_up():
    n1 = LocalNode.start("n1")
    n2 = LocalNode.start("n2")
    assert current_node() is n1
    n1.stop()
    assert current_node() is n2
    n2.stop()
    assert current_node().name == DEFAULT_NODE_NAME


def test_a_node_name_runs_once_and_a_restart_gets_a_new_incarnation():
    n1 = LocalNode.start("n1")
    with pytest.raises(ValueError):
        LocalNode.start("n1")
    first = n1.incarnation
    n1.stop()
    again = LocalNode.start("n1")
    assert again.incarnation > first


def test_spawn_on_another_local_node_runs_there_and_its_current_node_is_that_node():
    LocalNode.start("n1")
    n2 = LocalNode.start("n2")
    done = gevent.event.AsyncResult()

    def where():
        done.set((self_pid().node, current_node().name))

    pid = spawn(where, node="n2")
    assert pid.node == "n2"
    assert done.get(timeout=5) == ("n2", "n2")
    pid2 = spawn(where, node=n2)
    assert pid2.node == "n2"


def test_linking_or_monitoring_on_another_local_node_needs_distribution_and_starts_nothing():
    # Without distribution nothing could carry the exit signal back: a clear error, not a lost Down.
    LocalNode.start("n1")
    n2 = LocalNode.start("n2")
    started = []
    with pytest.raises(NotDistributed, match="n2"):
        spawn_link(started.append, 1, node="n2")
    with pytest.raises(NotDistributed, match="n2"):
        spawn_monitor(started.append, 2, node="n2")
    assert not n2.processes  # nothing was started there


def test_spawn_on_an_unknown_node_without_distribution_is_a_clear_error():
    with pytest.raises(NotDistributed, match="nowhere"):
        spawn(lambda: None, node="nowhere")


def test_stopping_a_node_kills_its_processes_with_shutdown_and_frees_names():
    node = LocalNode.start("n1")
    from paxtor.actors import register, whereis

    cleanup = []

    def worker():
        try:
            receive()
        finally:
            cleanup.append(self_pid())

    pids = [spawn(worker) for _ in range(3)]
    register("w0", pids[0])
    gevent.sleep(0)  # let them block in receive
    me = self_pid()
    assert me.node == "n1"
    node.stop()
    assert not any(is_alive(p) for p in pids)
    assert get_node("n1") is None
    assert self_pid() != me  # the main greenlet was detached, and re-adopted elsewhere
    assert whereis("w0") is None
    gevent.sleep(0)  # their greenlets unwind at their next switch
    assert sorted(cleanup) == sorted(pids)


def test_a_pid_of_an_earlier_incarnation_is_dead():
    node = LocalNode.start("n1")
    pid = spawn(receive)
    node.stop()
    LocalNode.start("n1")
    stale = Pid("n1", pid.incarnation, pid.serial)
    assert not is_alive(stale)
    ref = monitor(stale)
    assert down_of(ref, timeout=0).reason == "noproc"


def test_node_run_returns_the_result_of_a_process_on_that_node():
    LocalNode.start("n1")
    n2 = LocalNode.start("n2")
    assert n2.run(lambda a, b: (self_pid().node, a + b), 1, b=2) == ("n2", 3)
    with pytest.raises(ZeroDivisionError):
        n2.run(lambda: 1 / 0)
    from paxtor.actors.messages import CallError, CallTimeout

    with pytest.raises(CallError) as info:
        n2.run(exit, "gone")
    assert info.value.reason == "gone"
    with pytest.raises(CallTimeout):
        n2.run(receive, timeout=0.01)


def test_receive_works_under_a_gevent_timeout():
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.01):
            receive()
    send(self_pid(), "still works")
    assert receive(timeout=0) == "still works"


def test_node_run_does_not_hang_if_the_node_stops_before_the_process_ran():
    node = LocalNode.start("n1")
    result = gevent.event.AsyncResult()

    def runner():
        try:
            node.run(lambda: "never")
        except Exception as e:  # noqa: BLE001
            result.set(e)

    gevent.spawn(runner)
    gevent.sleep(0)  # the runner has spawned its process and waits; it has not run yet
    node.stop()
    from paxtor.actors.messages import CallError

    err = result.get(timeout=5)
    assert isinstance(err, CallError) and err.reason == "shutdown"


def _echo_worker(parent):
    send(parent, ("ready", self_pid()))
    while True:
        send(parent, ("handled", receive()))


def test_a_killed_process_handles_no_message_sent_after_the_kill():
    # Signals from one sender keep their order (Erlang): the worker never switches while
    # its mailbox is full, so the kill must stop it at its next receive.
    me = self_pid()
    pid = spawn(_echo_worker, me)
    receive(lambda m: m == ("ready", pid), timeout=5)
    ref = monitor(pid)
    send(pid, "before")
    exit(pid, "kill")
    assert not is_alive(pid)  # as erlang:is_process_alive after exit(P, kill)
    for i in range(100):
        send(pid, ("after", i))
    assert down_of(ref).reason == "killed"
    handled = []
    while True:
        try:
            handled.append(receive(lambda m: isinstance(m, tuple) and m[0] == "handled", timeout=0.1)[1])
        except ReceiveTimeout:
            break
    assert handled in ([], ["before"])


def test_receive_refuses_a_bad_timeout():
    for bad in (-1, "soon", True, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            receive(timeout=bad)


def test_send_after_refuses_a_non_pid_in_the_caller():
    from paxtor.actors.timers import send_after

    with pytest.raises(TypeError, match="Pid"):
        send_after(current_node(), "nobody_here", 0.01, "x")
