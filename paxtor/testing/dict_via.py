"""The smallest module of the Via protocol, for tests of `Via` itself."""

from __future__ import annotations

from typing import Any

from paxtor.actors.ids import Pid
from paxtor.actors.messages import NoProc
from paxtor.actors.primitives import send

__all__ = ["DictVia"]


class DictVia:
    """The smallest module of the Via protocol (a dict of names), for tests of `Via` itself."""

    def __init__(self) -> None:
        self.names: dict[Any, Pid] = {}

    def register_name(self, key: Any, pid: Pid) -> bool:
        if key in self.names:
            return False
        self.names[key] = pid
        return True

    def unregister_name(self, key: Any) -> None:
        self.names.pop(key, None)

    def whereis_name(self, key: Any) -> Pid | None:
        return self.names.get(key)

    def send(self, key: Any, msg: Any) -> None:
        pid = self.names.get(key)
        if pid is None:
            raise NoProc(key)
        send(pid, msg)
