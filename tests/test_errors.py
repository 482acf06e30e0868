"""One exception hierarchy: every error Paxtor defines is a `PaxtorError`, every timeout a `TimeoutError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import paxtor
import paxtor.actors
from paxtor import PaxtorError

#: Not errors of Paxtor's own: a process's exit, a server's request to stop, another node's
#: exception as it arrived, the demo's verdict.
OUTSIDE = {"ProcessExit", "Stop", "RemoteError", "DemoFailed"}


def _library_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(paxtor.__path__, "paxtor."):
        if info.name.endswith("__main__") or ".sim" in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name and obj.__name__ not in OUTSIDE:
                found.append(obj)
    return found


def test_every_library_exception_is_a_paxtor_error() -> None:
    found = _library_exceptions()
    assert len(found) > 30
    assert [e.__qualname__ for e in found if not issubclass(e, PaxtorError)] == []


def test_every_timeout_is_a_timeout_error() -> None:
    timeouts = [e for e in _library_exceptions() if "Timeout" in e.__name__]
    assert {"CallTimeout", "ReceiveTimeout", "TaskTimeout", "PaxtorTimeout"} <= {e.__name__ for e in timeouts}
    assert [e.__qualname__ for e in timeouts if not issubclass(e, TimeoutError)] == []


def test_what_call_raises_is_exported_from_both_packages() -> None:
    for package in (paxtor, paxtor.actors):
        assert package.CallError is paxtor.actors.CallError
        assert issubclass(package.CallTimeout, package.CallError)
        assert "CallError" in package.__all__ and "CallTimeout" in package.__all__
    assert issubclass(paxtor.NoQuorum, PaxtorError) and not issubclass(paxtor.NoQuorum, TimeoutError)


def test_a_timeout_keeps_its_arguments_as_given() -> None:
    timeout = paxtor.CallTimeout("server", "request", 1.5)
    assert timeout.args == ("timeout", "server", "request")
    assert timeout.errno is None and timeout.timeout == 1.5
    assert "within 1.5s" in str(timeout)
