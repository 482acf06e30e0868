"""An OTP-like runtime on gevent: processes, links, monitors, gen_server, supervisors.

The public names are those the README lists; see each module for details:
`primitives` (spawn, send, receive, link, monitor, exit...), `gen_server`,
`registry` (names, Via), `node` (local nodes and the distribution seam).
"""

from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.dynamic_supervisor import DynamicSupervisor, start_child
from paxtor.actors.errors import PaxtorError, PaxtorTimeout
from paxtor.actors.gen_server import GenServer, Ignore, NoReply, Stop, call, cast, reply
from paxtor.actors.ids import Pid, Ref
from paxtor.actors.messages import CallError, CallTimeout, Down, Exit, NoProc, ReceiveTimeout
from paxtor.actors.outcome import Err, Ok, Outcome
from paxtor.actors.primitives import (
    demonitor,
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
    unlink,
)
from paxtor.actors.registry import Via, register, unregister, whereis
from paxtor.actors.supervisor import Supervisor
from paxtor.actors.task import Task

__all__ = [
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self_pid",
    "send",
    "receive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exits",
    "Pid",
    "Ref",
    "Exit",
    "Down",
    "ReceiveTimeout",
    "CallError",
    "CallTimeout",
    "NoProc",
    "PaxtorError",
    "PaxtorTimeout",
    "Ok",
    "Err",
    "Outcome",
    "GenServer",
    "NoReply",
    "Ignore",
    "Stop",
    "call",
    "cast",
    "reply",
    "Supervisor",
    "DynamicSupervisor",
    "ChildSpec",
    "start_child",
    "register",
    "unregister",
    "whereis",
    "Via",
    "Task",
]
