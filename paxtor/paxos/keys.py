"""When two keys are the same key: when Python says they are equal (pure).

One rule for PaxosKV and for the lock and singleton layers above it (README,
"Keys"): ``1``, ``True`` and ``1.0`` are one key, as they are one dict key;
so are ``0.0`` and ``-0.0``, a set and a frozenset of equal items, and two
dicts with equal items in any order. A NaN, anywhere inside a key, is
refused: it is equal to nothing, itself included, so no node could ever find
the register it names again.

`canonical_key` rewrites a key into the one form shared by every key equal
to it: integral floats and bools become ints, sets frozensets, dicts are
ordered by their encoded keys, and so on inside tuples, lists and registered
dataclasses. Equal keys thus also ENCODE alike, on every node, which is what
the lock layer needs (it names a PaxosKV key by the encoding of the user's
key) and what PaxosKV's rendezvous choices (by encoded key) need.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from paxtor.actors.wire import encode, registered_name

__all__ = ["canonical_key"]

_AS_IS = frozenset((str, bytes, int, type(None)))


def canonical_key(key: Any) -> Any:
    """The canonical form of ``key`` (see the module docstring).

    Raises ValueError for a NaN anywhere inside it. Values of other types
    are returned as they are (the wire codec says whether it can carry them).
    """
    if key.__class__ in _AS_IS:
        return key
    try:
        return _canonical(key)
    except RecursionError:
        raise ValueError("a key is nested too deeply") from None


def _canonical(key: Any) -> Any:
    cls = key.__class__
    if cls in _AS_IS:
        return key
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, float):
        if math.isnan(key):
            raise ValueError("a key cannot contain NaN: it is equal to nothing, not even itself")
        return int(key) if key.is_integer() else float(key)
    if isinstance(key, int):
        return int(key)  # IntEnum and other int subclasses equal their value
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, tuple):
        return tuple(_canonical(item) for item in key)
    if isinstance(key, list):
        return [_canonical(item) for item in key]
    if isinstance(key, (set, frozenset)):
        return frozenset(_canonical(item) for item in key)
    if isinstance(key, dict):
        items = [(_canonical(k), _canonical(v)) for k, v in key.items()]
        items.sort(key=lambda item: encode(item[0]))
        return dict(items)
    if dataclasses.is_dataclass(key) and not isinstance(key, type) and registered_name(cls) is not None:
        fields = {f.name: _canonical(getattr(key, f.name)) for f in dataclasses.fields(key) if f.init}
        return dataclasses.replace(key, **fields)
    return key
