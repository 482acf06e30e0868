"""Functions that travel: ``"module:qualname"`` references for remote spawn.

A function cannot be sent (no pickle: nothing received may run code that
came over the wire); its name can, and the other node imports it, as in
Erlang where the same code is loaded on every node. So only functions a
module defines at its top level (or attributes of top-level classes) can
be spawned on another node. The caller checks that `fn` is such a function
before sending, so a lambda or a nested function is a clear error there.

Any node that knows the cookie may name any importable function, as with
Erlang's ``rpc:call``. A node started with ``allowed_modules`` (module
prefixes) resolves only references into those modules: the module is
checked before it is imported, and the object found must be defined there
(not a module, nor a function another module defined and this one imported,
such as ``os.system`` reached as ``"mypkg.mod:os.system"``).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from paxtor.actors.errors import PaxtorError

__all__ = [
    "FunctionRefError",
    "FunctionRefRefused",
    "function_ref",
    "resolve_function_ref",
    "check_allowed",
    "allowed_modules",
]


class FunctionRefError(PaxtorError, TypeError):
    """The function cannot be named by ``"module:qualname"`` (or that name
    does not lead to a callable)."""


class FunctionRefRefused(FunctionRefError):
    """The reference names a module outside the node's ``allowed_modules``."""


def allowed_modules(prefixes: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Normalise an allow-list: module prefixes (``"myapp"`` or ``"myapp.*"`` both allow
    ``myapp`` and every module under it); None allows everything."""
    if prefixes is None:
        return None
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    normal = []
    for prefix in prefixes:
        name = prefix.strip().removesuffix(".*") if isinstance(prefix, str) else None
        if not name or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"allowed_modules takes module prefixes such as 'myapp' or 'myapp.*', got {prefix!r}")
        normal.append(name)
    return tuple(dict.fromkeys(normal))


def _module_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def check_allowed(ref: str, allowed: tuple[str, ...] | None) -> None:
    """Raise `FunctionRefRefused` if `ref`'s module is outside `allowed` (None: all allowed).

    Needs no import: a refused module is never imported.
    """
    if allowed is None:
        return
    module = ref.partition(":")[0] if isinstance(ref, str) else ""
    if not _module_allowed(module, allowed):
        raise FunctionRefRefused(
            f"{ref!r} is not in this node's allowed_modules ({', '.join(allowed) or 'none'})"
        )


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


def resolve_function_ref(ref: str, allowed: tuple[str, ...] | None = None) -> Callable[..., Any]:
    """The callable `ref` names, importing its module if needed.

    With `allowed` (module prefixes), a reference outside them raises
    `FunctionRefRefused` before anything is imported, and so does one that
    leads, through an attribute, to something defined elsewhere.
    """
    if not isinstance(ref, str):
        raise FunctionRefError(f"a function reference is a 'module:qualname' str, got {ref!r}")
    module, sep, qualname = ref.partition(":")
    if not sep or not module or not qualname:
        raise FunctionRefError(f"malformed function reference {ref!r} (expected 'module:qualname')")
    check_allowed(ref, allowed)
    found = _lookup(module, qualname, import_missing=True, allowed=allowed)
    if not callable(found):
        raise FunctionRefError(f"{ref} is not callable")
    return found


def _lookup(module: str, qualname: str, *, import_missing: bool, allowed: tuple[str, ...] | None = None) -> Any:
    mod = sys.modules.get(module)
    if mod is None:
        if not import_missing:
            raise FunctionRefError(f"module {module!r} is not imported")
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - ImportError, or the module failed while importing
            raise FunctionRefError(f"cannot import module {module!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = mod
    for depth, part in enumerate(qualname.split(".")):
        if allowed is not None and part.startswith("__"):
            raise FunctionRefRefused(f"{module}:{qualname}: a dunder attribute is never allowed ({part!r})")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FunctionRefError(f"module {module!r} has no {qualname!r}") from None
        if allowed is not None and not _allowed_step(obj, allowed, first=depth == 0):
            raise FunctionRefRefused(
                f"{module}:{qualname} leads to {part!r}, which is not defined in this node's "
                f"allowed_modules ({', '.join(allowed)})"
            )
    return obj


def _allowed_step(obj: Any, allowed: tuple[str, ...], *, first: bool) -> bool:
    """Whether an attribute step may go on: never into a module; and what the module
    itself holds must be defined in an allowed module (members of such a class may
    come from its base classes: ``Worker.start_link``)."""
    if isinstance(obj, types.ModuleType):
        return False
    if not first:
        return True
    owner = getattr(obj, "__module__", None)
    return isinstance(owner, str) and _module_allowed(owner, allowed)
