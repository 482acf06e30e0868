"""Functions that travel: ``"module:qualname"`` references for remote spawn.

A function cannot be sent (no pickle: nothing received may run code that
came over the wire); its name can, and the other node imports it, as in
Erlang where the same code is loaded on every node. So only functions a
module defines at its top level (or attributes of top-level classes) can
be spawned on another node. The caller checks that `fn` is such a function
before sending, so a lambda or a nested function is a clear error there.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["FunctionRefError", "function_ref", "resolve_function_ref"]


class FunctionRefError(TypeError):
    """The function cannot be named by ``"module:qualname"`` (or that name
    does not lead to a callable)."""


def function_ref(fn: Callable[..., Any]) -> str:
    """The ``"module:qualname"`` naming `fn`, checked to resolve back to it here."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise FunctionRefError(
            f"cannot spawn {fn!r} on another node: it has no module and qualified name "
            "(use a function defined at the top level of a module)"
        )
    if "<" in qualname:  # <lambda>, <locals>
        raise FunctionRefError(
            f"cannot spawn {module}.{qualname} on another node: only functions defined at "
            "the top level of a module can travel (not lambdas or nested functions)"
        )
    if module == "__main__":
        raise FunctionRefError(
            f"cannot spawn __main__.{qualname} on another node: the other node's __main__ is "
            "another program; move the function into a module both nodes can import"
        )
    ref = f"{module}:{qualname}"
    try:
        found = _lookup(module, qualname, import_missing=False)
    except FunctionRefError as exc:
        raise FunctionRefError(f"cannot spawn {fn!r} on another node: {exc}") from None
    if found is not fn and found != fn:
        raise FunctionRefError(
            f"cannot spawn {fn!r} on another node: {ref} names another object here "
            "(a function defined at the top level of a module is needed)"
        )
    return ref


def resolve_function_ref(ref: str) -> Callable[..., Any]:
    """The callable `ref` names, importing its module if needed."""
    if not isinstance(ref, str):
        raise FunctionRefError(f"a function reference is a 'module:qualname' str, got {ref!r}")
    module, sep, qualname = ref.partition(":")
    if not sep or not module or not qualname:
        raise FunctionRefError(f"malformed function reference {ref!r} (expected 'module:qualname')")
    found = _lookup(module, qualname, import_missing=True)
    if not callable(found):
        raise FunctionRefError(f"{ref} is not callable")
    return found


def _lookup(module: str, qualname: str, *, import_missing: bool) -> Any:
    mod = sys.modules.get(module)
    if mod is None:
        if not import_missing:
            raise FunctionRefError(f"module {module!r} is not imported")
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # ImportError, or the module failed while importing
            raise FunctionRefError(f"cannot import module {module!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = mod
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FunctionRefError(f"module {module!r} has no {qualname!r}") from None
    return obj
