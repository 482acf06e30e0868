"""GenServer: start semantics (proc_lib), calls, casts, info, Stop,
terminate, crashes, timeouts and late replies."""

from __future__ import annotations

import gevent.event
import pytest
from structlog.testing import capture_logs

from paxtor.actors import (
    Down,
    Exit,
    GenServer,
    NoReply,
    ReceiveTimeout,
    Stop,
    Via,
    call,
    cast,
    exit,
    monitor,
    receive,
    reply,
    self_pid,
    send,
    spawn,
    spawn_monitor,
    trap_exits,
    whereis,
)
from paxtor.actors.messages import AlreadyStarted, CallError, CallTimeout, StartError
from paxtor.actors.primitives import is_alive


def down_of(ref, timeout=5):
    return receive(lambda m: isinstance(m, Down) and m.ref == ref, timeout=timeout)


def terminations():
    """Reasons of every `terminate` an observed Counter reported so far
    (they are queued before the server's Down or failed call comes back)."""
    reasons = []
    while True:
        try:
            m = receive(lambda m: isinstance(m, tuple) and m[0] == "terminate", timeout=0)
        except ReceiveTimeout:
            return reasons
        reasons.append(m[1])


def crashes(logs):
    return [e for e in logs if e["event"] == "process_crashed"]


class Counter(GenServer):
    """Counts; reports what happened to an observer pid."""

    def init(self, start=0, observer=None):
        self.n = start
        self.observer = observer

    def handle_call(self, request, caller):
        if request == "get":
            return self.n
        if request == "crash":
            raise ValueError("call crash")
        if request == "stop_with_reply":
            raise Stop("done", reply="bye")
        if request == "stop":
            raise Stop("done")
        if request == "exit":
            exit("exited_in_callback")
        if request == "later":
            self.pending = caller
            return NoReply
        if request == "block":
            receive(lambda m: m == "never")
        self.n += request
        return self.n

    def handle_cast(self, msg):
        if msg == "release":
            reply(self.pending, "late answer")
        elif msg == "stop":
            raise Stop("cast_stop")
        else:
            self.n += msg

    def handle_info(self, msg):
        if self.observer is not None:
            send(self.observer, ("info", msg))

    def terminate(self, reason):
        if self.observer is not None:
            send(self.observer, ("terminate", reason))


# -- starting -------------------------------------------------------------------------------


def test_start_link_returns_after_init_and_the_state_lives_on_self():
    pid = Counter.start_link(10)
    assert call(pid, "get") == 10
    assert call(pid, 5) == 15


def test_start_registers_a_name():
    pid = Counter.start(1, name="counter")
    assert whereis("counter") == pid
    assert call("counter", "get") == 1


def test_start_with_a_taken_name_raises_already_started_with_the_holder():
    first = Counter.start(name="counter")
    with pytest.raises(AlreadyStarted) as info:
        Counter.start(name="counter")
    assert info.value.pid == first
    assert isinstance(info.value, StartError)


class Names:
    def __init__(self):
        self.names = {}

    def register_name(self, key, pid):
        return self.names.setdefault(key, pid) == pid

    def unregister_name(self, key):
        self.names.pop(key, None)

    def whereis_name(self, key):
        return self.names.get(key)

    def send(self, key, msg):
        send(self.names[key], msg)


def test_start_with_a_via_name():
    names = Names()
    pid = Counter.start(3, name=Via(names, "c"))
    assert names.names["c"] == pid
    assert call(Via(names, "c"), "get") == 3
    with pytest.raises(AlreadyStarted) as info:
        Counter.start(name=Via(names, "c"))
    assert info.value.pid == pid
    assert names.names["c"] == pid  # the holder keeps its name
    assert call(Via(names, "c"), "get") == 3


class FailingInit(GenServer):
    def init(self, how):
        if how == "raise":
            raise RuntimeError("init failed")
        raise Stop("refused")


def test_an_init_crash_raises_in_the_starter_which_survives_and_gets_no_exit_message():
    trap_exits(True)
    with capture_logs() as logs:
        with pytest.raises(StartError) as info:
            FailingInit.start_link("raise")
    assert isinstance(info.value.reason, RuntimeError)
    assert info.value.__cause__ is info.value.reason
    assert len(crashes(logs)) == 1
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0)  # neither Exit nor Down left behind
    assert is_alive(self_pid())


def test_an_init_crash_does_not_kill_a_non_trapping_start_link_caller():
    def starter():
        try:
            FailingInit.start_link("raise")
        except StartError as e:
            send(parent, ("failed", type(e.reason).__name__))
        send(parent, ("alive", self_pid()))

    parent = self_pid()
    _, ref = spawn_monitor(starter)
    assert receive(timeout=5) == ("failed", "RuntimeError")
    assert receive(timeout=5)[0] == "alive"
    assert down_of(ref).reason == "normal"


def test_init_stop_is_a_start_error_without_a_crash_report():
    with capture_logs() as logs:
        with pytest.raises(StartError) as info:
            FailingInit.start("stop")
    assert info.value.reason == "refused"
    assert crashes(logs) == []


def test_a_failed_init_frees_its_name():
    with pytest.raises(StartError):
        FailingInit.start_link("raise", name="failing")
    assert whereis("failing") is None
    names = Names()
    with pytest.raises(StartError):
        FailingInit.start("stop", name=Via(names, "k"))
    assert names.names == {}


def test_start_rejects_bad_names():
    with pytest.raises(TypeError):
        Counter.start(name=42)


# -- calls ----------------------------------------------------------------------------------------


def test_noreply_then_reply_later():
    pid = Counter.start()
    result = gevent.event.AsyncResult()
    spawn(lambda: result.set(call(pid, "later")))
    assert call(pid, "get") == 0  # the server is free while the first caller waits
    cast(pid, "release")
    assert result.get(timeout=5) == "late answer"


def test_a_call_to_a_dead_or_unknown_server_raises_noproc():
    pid = Counter.start()
    ref = monitor(pid)
    exit(pid, "kill")
    down_of(ref)
    with pytest.raises(CallError) as info:
        call(pid, "get")
    assert info.value.reason == "noproc"
    with pytest.raises(CallError) as info:
        call("no_such_name", "get")
    assert info.value.reason == "noproc"


def test_a_server_crashing_in_a_call_raises_in_the_caller_with_the_exception_as_reason():
    pid = Counter.start(0, self_pid())
    with capture_logs() as logs:
        with pytest.raises(CallError) as info:
            call(pid, "crash")
    assert isinstance(info.value.reason, ValueError)
    assert info.value.__cause__ is info.value.reason
    assert receive(timeout=5) == ("terminate", info.value.reason)
    assert len(crashes(logs)) == 1  # logged once, by the process layer
    assert not is_alive(pid)


def test_calling_oneself_is_an_error_not_a_deadlock():
    class SelfCaller(GenServer):
        def handle_call(self, request, caller):
            return call(self_pid(), "again")

    pid = SelfCaller.start()
    with pytest.raises(CallError) as info:
        call(pid, "go")
    assert isinstance(info.value.reason, CallError)
    assert info.value.reason.reason == "calling_self"


def test_a_call_timeout_raises_and_the_late_reply_never_lands():
    pid = Counter.start()
    with pytest.raises(CallTimeout) as info:
        call(pid, "later", timeout=0.01)
    assert info.value.reason == "timeout"
    cast(pid, "release")  # the server answers the timed-out call now
    assert call(pid, "get") == 0  # ...and has done so before this reply
    with pytest.raises(ReceiveTimeout):
        receive(timeout=0)  # no stray reply, no Down


def test_an_exit_signal_kills_a_server_blocked_inside_a_callback():
    pid = Counter.start()
    result = gevent.event.AsyncResult()

    def caller():
        try:
            call(pid, "block")
        except CallError as e:
            result.set(e.reason)

    spawn(caller)
    gevent.sleep(0)  # the caller's request is in; the server blocks in handle_call
    ref = monitor(pid)
    exit(pid, "interrupted")
    assert down_of(ref).reason == "interrupted"
    assert result.get(timeout=5) == "interrupted"


# -- casts, info, stop, terminate ------------------------------------------------------------------------


def test_cast_and_handle_info():
    pid = Counter.start(0, self_pid())
    cast(pid, 4)
    send(pid, "plain message")
    assert receive(timeout=5) == ("info", "plain message")
    assert call(pid, "get") == 4


def test_cast_never_fails():
    cast("nobody", "msg")
    cast(Via(Names(), "missing"), "msg")


def test_stop_with_reply_replies_then_terminates():
    pid = Counter.start(0, self_pid())
    ref = monitor(pid)
    assert call(pid, "stop_with_reply") == "bye"
    assert down_of(ref).reason == "done"
    assert terminations() == ["done"]


def test_stop_without_reply_fails_the_call_with_the_reason():
    pid = Counter.start(0, self_pid())
    with pytest.raises(CallError) as info:
        call(pid, "stop")
    assert info.value.reason == "done"
    assert receive(timeout=5) == ("terminate", "done")


def test_stop_from_a_cast_and_exit_in_a_callback_run_terminate():
    pid = Counter.start(0, self_pid())
    ref = monitor(pid)
    cast(pid, "stop")
    assert down_of(ref).reason == "cast_stop"
    assert terminations() == ["cast_stop"]
    pid = Counter.start(0, self_pid())
    with pytest.raises(CallError):
        call(pid, "exit")
    assert terminations() == ["exited_in_callback"]


class Trapper(Counter):
    def init(self, observer):
        super().init(0, observer)
        trap_exits(True)


def test_terminate_runs_when_the_parent_exits_and_the_server_traps_exits():
    parent_done = gevent.event.AsyncResult()
    me = self_pid()

    def parent():
        parent_done.set(Trapper.start_link(me))
        receive()  # until told to die

    ppid = spawn(parent)
    server = parent_done.get(timeout=5)
    ref = monitor(server)
    exit(ppid, "parent_gone")
    assert down_of(ref).reason == "parent_gone"
    assert terminations() == ["parent_gone"]


def test_a_trapping_server_sees_other_exits_as_info():
    server = Trapper.start(self_pid())
    other = spawn(lambda: None)
    exit(server, "just_a_signal")  # from us, not a parent: a message
    assert receive(timeout=5) == ("info", Exit(self_pid(), "just_a_signal"))
    del other


def test_a_killed_server_does_not_run_terminate():
    pid = Counter.start(0, self_pid())
    ref = monitor(pid)
    exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    with pytest.raises(ReceiveTimeout):
        receive(lambda m: isinstance(m, tuple), timeout=0)


def test_default_callbacks():
    class Bare(GenServer):
        pass

    pid = Bare.start()
    with capture_logs() as logs:
        send(pid, "unexpected")
        with pytest.raises(CallError) as info:
            call(pid, "anything")
    assert isinstance(info.value.reason, NotImplementedError)
    assert [e["event"] for e in logs if e["event"].startswith("gen_server")] == ["gen_server_unexpected_message"]


def test_child_spec_starts_with_start_link():
    spec = Counter.child_spec(7)
    assert spec.id is Counter
    fn, args = spec.start
    assert args == (7,)
    pid = fn(*args)
    assert call(pid, "get") == 7
    assert Counter.child_spec().start[1] == ()


@pytest.mark.parametrize("bad", [-1, "soon", True])
def test_a_bad_call_timeout_raises_before_the_request_is_sent(bad):
    pid = Counter.start()
    with pytest.raises(ValueError, match="timeout"):
        call(pid, 1, timeout=bad)
    assert call(pid, "get") == 0  # the server never saw the first request
