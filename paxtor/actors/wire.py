"""The wire codec: Python values <-> bytes, msgpack with a few extension types.

Pure (no sockets, no clocks). Everything a node sends to another goes through
`encode` and comes back through `decode`. Nothing received can run code: there
is no pickle, and a registered type name is looked up in a table, never
imported.

What survives a round trip unchanged:
  None, bool, int (any size), float, str, bytes, list, dict (any hashable key,
  e.g. tuples or ints), tuple, set, frozenset, `Pid`, `Ref`, aware
  `datetime` (comes back in UTC), and dataclasses registered with `@wire_type`.
What survives with a loss, on purpose:
  - any exception (`BaseException`) arrives as a `RemoteError` carrying the
    original type path, message and formatted traceback;
  - subclasses of int/float/str/bytes/list/dict (IntEnum, StrEnum,
    OrderedDict, ...) arrive as the base type; tuple subclasses (namedtuples)
    arrive as plain tuples; bytearray and memoryview arrive as bytes.
Anything else raises `TypeError` at `encode`, naming the type and where in the
value it sits. Any malformed input raises `WireError` at `decode`, and only
`WireError`.

Format (stable; bump `handshake.PROTOCOL_VERSION` when it changes):
  - tuple, set, frozenset, registered dataclass, exception, Pid and Ref are
    msgpack arrays whose FIRST element is a zero-length *marker* ext (1-7):
      tuple     [<1>, item, ...]
      set       [<2>, item, ...]          frozenset [<3>, item, ...]
                (items sorted by their own encoding: equal sets encode alike
                in every process, whatever their iteration order)
      dataclass [<4>, name, field1, field2, ...]  (positional, in
                 `dataclasses.fields()` order, `init=False` fields skipped;
                 `name` is the one given to `@wire_type`, never a module path,
                 so moving a class does not change the protocol)
      exception [<5>, "module.QualName", message, traceback-or-None]
      Pid       [<6>, node, incarnation, serial]   Ref [<7>, node, incarnation, serial]
    Markers keep the whole message one flat msgpack document (no nested
    packing), which is what makes tuples cheap; a marker found anywhere but at
    the head of an array is a `WireError`.
  - int outside 64 bits (16): ext payload = two's complement, big-endian.
  - aware datetime: msgpack's own timestamp ext (-1).
A raw `msgpack.ExtType` inside a value is written as-is by msgpack (it cannot
be intercepted) and is refused by the receiver: do not send ExtTypes.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import threading
import traceback as _traceback
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import msgpack
from msgpack import ExtType

from paxtor.actors.errors import PaxtorError
from paxtor.actors.ids import Pid, Ref

__all__ = [
    "encode",
    "decode",
    "decode_renamed",
    "wire_type",
    "registered_name",
    "registered_types",
    "RemoteError",
    "WireError",
    "type_name_of",
]

_T = TypeVar("_T")


class WireError(PaxtorError, ValueError):
    """Bytes received that are not a valid encoding (the connection is unusable)."""


class RemoteError(Exception):
    """An exception that crossed the wire, rebuilt without importing its class.

    `type_name` is the original class path (``"builtins.ValueError"``),
    `message` its ``str()``, `traceback` the formatted traceback it carried
    (or None). Two RemoteErrors are equal when type name and message are.
    Re-encoding a RemoteError keeps the original type name, so forwarding an
    exit reason through several nodes does not wrap it again.
    """

    def __init__(self, type_name: str, message: str = "", traceback: str | None = None) -> None:
        super().__init__(type_name, message, traceback)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not RemoteError:
            return NotImplemented
        return self.type_name == other.type_name and self.message == other.message

    def __hash__(self) -> int:
        return hash((RemoteError, self.type_name, self.message))

    def matches(self, exc_type: type[BaseException] | str) -> bool:
        """True if this error was raised as `exc_type` (a class or a type path)."""
        name = exc_type if isinstance(exc_type, str) else _class_path(exc_type)
        return self.type_name == name

    @classmethod
    def from_exception(cls, exc: BaseException) -> RemoteError:
        """The RemoteError that `exc` becomes on the other side of the wire."""
        if type(exc) is RemoteError:
            return exc
        return cls(*_exception_fields(exc))


def type_name_of(exc: BaseException) -> str:
    """The type path of a local exception or of the original of a RemoteError.

    Lets code compare exit reasons the same way whether they crossed the wire
    or not: ``type_name_of(reason) == "builtins.ValueError"``.
    """
    if isinstance(exc, RemoteError):
        return exc.type_name
    return _class_path(type(exc))


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_MAX_TRACEBACK_CHARS = 32_000


def _exception_fields(exc: BaseException) -> tuple[str, str, str | None]:
    if type(exc) is RemoteError:
        return exc.type_name, exc.message, exc.traceback
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not make the exit reason unsendable
        message = f"<unprintable {type(exc).__name__}>"
    tb: str | None = None
    if exc.__traceback__ is not None:
        try:
            tb = "".join(_traceback.format_exception(exc))
        except Exception:  # noqa: BLE001 - as for the message
            tb = None
        if tb is not None and len(tb) > _MAX_TRACEBACK_CHARS:
            tb = "...\n" + tb[-_MAX_TRACEBACK_CHARS:]
    return _class_path(type(exc)), message, tb


# --------------------------------------------------------------------------
# Registered dataclasses


@dataclasses.dataclass(frozen=True)
class _Record:
    """How one registered dataclass is written and rebuilt."""

    cls: type
    name: str
    fields: tuple[str, ...]
    keyword_only: bool

    def values(self, obj: Any) -> list[Any]:
        return [getattr(obj, f) for f in self.fields]

    def build(self, values: tuple[Any, ...]) -> Any:
        if len(values) != len(self.fields):
            raise WireError(
                f"{self.name}: expected {len(self.fields)} fields, got {len(values)}"
            )
        if self.keyword_only:
            return self.cls(**dict(zip(self.fields, values, strict=True)))
        return self.cls(*values)


_RECORDS_BY_TYPE: dict[type, _Record] = {}
_RECORDS_BY_NAME: dict[str, _Record] = {}
_REGISTRY_LOCK = threading.Lock()


@overload
def wire_type(cls: type[_T], /, *, name: str) -> type[_T]: ...
@overload
def wire_type(*, name: str) -> Callable[[type[_T]], type[_T]]: ...


def wire_type(cls: type | None = None, /, *, name: str | None = None) -> Any:
    """Class decorator: let a dataclass travel over the wire as itself.

    The class is known on the wire by ``name`` (``"paxos.Ballot"``), which
    must be registered on the receiving node too (same code everywhere, as in
    Erlang). The name is part of the protocol, and of every log that holds
    the type, so it is given, never derived from the module path: a class can
    move without breaking peers or data. Fields travel positionally in
    `dataclasses.fields()` order; fields with ``init=False`` are not sent.
    Use ``@wire_type(name=...)`` after ``@dataclass`` (i.e. above it).
    """
    if not isinstance(name, str) or not name:
        raise TypeError("@wire_type needs name=...: the wire name is part of the protocol")

    def register(klass: type) -> type:
        if not dataclasses.is_dataclass(klass) or not isinstance(klass, type):
            raise TypeError(f"@wire_type needs a dataclass, got {klass!r}")
        wire_name = name
        fields = tuple(f for f in dataclasses.fields(klass) if f.init)
        record = _Record(
            cls=klass,
            name=wire_name,
            fields=tuple(f.name for f in fields),
            keyword_only=any(f.kw_only for f in fields),
        )
        with _REGISTRY_LOCK:
            known = _RECORDS_BY_NAME.get(wire_name)
            if known is not None and known.cls is not klass:
                raise ValueError(
                    f"wire type name {wire_name!r} is already used by {known.cls!r}"
                )
            _RECORDS_BY_NAME[wire_name] = record
            _RECORDS_BY_TYPE[klass] = record
        return klass

    if cls is not None:
        return register(cls)
    return register


def registered_name(cls: type) -> str | None:
    """The wire name of a registered dataclass, or None."""
    record = _RECORDS_BY_TYPE.get(cls)
    return record.name if record else None


def registered_fields(cls: type) -> tuple[str, ...] | None:
    """The fields a registered dataclass sends, in wire order, or None if it is not registered."""
    record = _RECORDS_BY_TYPE.get(cls)
    return record.fields if record else None


def registered_types() -> dict[str, tuple[str, ...]]:
    """Every registered wire name and its fields, in wire order (what the protocol pins)."""
    with _REGISTRY_LOCK:
        return {name: record.fields for name, record in sorted(_RECORDS_BY_NAME.items())}


# --------------------------------------------------------------------------
# Encoding

_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_RECORD = 4
_EXT_ERROR = 5
_EXT_PID = 6
_EXT_REF = 7
_EXT_BIGINT = 16

_TUPLE_MARK = ExtType(_EXT_TUPLE, b"")
_SET_MARK = ExtType(_EXT_SET, b"")
_FROZENSET_MARK = ExtType(_EXT_FROZENSET, b"")
_RECORD_MARK = ExtType(_EXT_RECORD, b"")
_ERROR_MARK = ExtType(_EXT_ERROR, b"")
_PID_MARK = ExtType(_EXT_PID, b"")
_REF_MARK = ExtType(_EXT_REF, b"")


def _default(obj: Any) -> Any:
    """msgpack's hook for every value it cannot pack natively (strict types)."""
    cls = type(obj)
    if cls is tuple:
        return [_TUPLE_MARK, *obj]
    if cls is Pid or cls is Ref:
        node, incarnation, serial = obj.node, obj.incarnation, obj.serial
        if type(node) is not str or type(incarnation) is not int or type(serial) is not int:
            raise TypeError(f"cannot encode {cls.__name__} with fields {(node, incarnation, serial)!r}")
        return [_PID_MARK if cls is Pid else _REF_MARK, node, incarnation, serial]
    record = _RECORDS_BY_TYPE.get(cls)
    if record is not None:
        return [_RECORD_MARK, record.name, *record.values(obj)]
    if cls is set:
        return [_SET_MARK, *_canonical(obj)]
    if cls is frozenset:
        return [_FROZENSET_MARK, *_canonical(obj)]
    if cls is int:  # only reached when outside 64 bits
        return ExtType(_EXT_BIGINT, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True))
    if isinstance(obj, BaseException):
        return [_ERROR_MARK, *_exception_fields(obj)]
    return _default_subclass(obj)


def _canonical(items: Any) -> list[Any]:
    """A set's items in one order for every process: iteration order follows insertion
    history and, for strings, the per-process hash seed, and an encoding is a lock's key."""
    return sorted(items, key=encode)


def _default_subclass(obj: Any) -> Any:
    """Subclasses of builtin types travel as their base type (documented loss)."""
    if isinstance(obj, tuple):
        return [_TUPLE_MARK, *obj]
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, bytes):
        return bytes(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list):
        return list(obj)
    if isinstance(obj, set):
        return [_SET_MARK, *_canonical(obj)]
    if isinstance(obj, frozenset):
        return [_FROZENSET_MARK, *_canonical(obj)]
    if isinstance(obj, _dt.datetime):
        raise TypeError("cannot encode a naive datetime; give it a tzinfo")
    raise TypeError(f"cannot encode object of type {_class_path(type(obj))}")


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(
        default=_default,
        use_bin_type=True,
        strict_types=True,
        datetime=True,
        autoreset=True,
    )


class _Encoder:
    """A reusable Packer; `busy` guards against re-entrant use (e.g. from a __str__)."""

    __slots__ = ("packer", "busy")

    def __init__(self) -> None:
        self.packer = _new_packer()
        self.busy = False


class _PerThread(threading.local):
    """One encoder and one decoder per OS thread (greenlets never switch inside)."""

    def __init__(self) -> None:
        self.encoder = _Encoder()
        self.decoder = _Decoder()


def encode(obj: Any) -> bytes:
    """Encode a value; raises TypeError naming what cannot be encoded."""
    encoder = _per_thread.encoder
    if encoder.busy:
        return _pack_or_explain(_new_packer(), obj)
    encoder.busy = True
    try:
        if obj.__class__ is tuple:  # what `_default` would return: saves a callback (every frame is one)
            return encoder.packer.pack([_TUPLE_MARK, *obj])
        return encoder.packer.pack(obj)
    except (TypeError, ValueError, OverflowError):
        return _pack_or_explain(_new_packer(), obj)  # raises, with a precise message
    finally:
        encoder.busy = False


def _pack_or_explain(packer: msgpack.Packer, obj: Any) -> bytes:
    try:
        return packer.pack(obj)
    except TypeError as exc:
        where = _locate_unencodable(obj)
        raise TypeError(f"{exc}{f' at {where}' if where else ''}") from None
    except (ValueError, OverflowError) as exc:  # nesting limit, cycles, odd ints
        raise TypeError(f"cannot encode value: {exc}") from None


def _locate_unencodable(obj: Any, path: str = "value", depth: int = 0) -> str | None:
    """Where inside `obj` the first unencodable value sits (error path only)."""
    if depth > 100:
        return None
    try:
        _new_packer().pack(obj)
        return None
    except Exception:  # noqa: BLE001 - the search below says what failed
        pass
    if isinstance(obj, dict):
        for key, val in obj.items():
            found = _locate_unencodable(key, f"{path} key {key!r}", depth + 1)
            found = found or _locate_unencodable(val, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, val in enumerate(obj):
            found = _locate_unencodable(val, f"{path}[{i}]", depth + 1)
            if found:
                return found
    elif isinstance(obj, (set, frozenset)):
        for val in obj:
            found = _locate_unencodable(val, f"{path} item {val!r}", depth + 1)
            if found:
                return found
    elif type(obj) in _RECORDS_BY_TYPE:
        for field in _RECORDS_BY_TYPE[type(obj)].fields:
            found = _locate_unencodable(getattr(obj, field), f"{path}.{field}", depth + 1)
            if found:
                return found
    return path


# --------------------------------------------------------------------------
# Decoding


class _Marker:
    """What a marker ext decodes to; must end up at the head of an array."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code

    def __repr__(self) -> str:
        return f"<wire marker {self.code}>"


_MARKERS = {code: _Marker(code) for code in range(_EXT_TUPLE, _EXT_REF + 1)}


def _build_record(items: tuple[Any, ...], renamed: Mapping[str, str] | None) -> Any:
    if len(items) < 1 or type(items[0]) is not str:
        raise WireError("dataclass without a type name")
    name = items[0] if renamed is None else renamed.get(items[0], items[0])
    record = _RECORDS_BY_NAME.get(name)
    if record is None:
        raise WireError(f"unknown wire type {items[0]!r}")
    try:
        return record.build(items[1:])
    except WireError:
        raise
    except Exception as exc:  # its __init__/__post_init__ rejected the fields
        raise WireError(f"{record.name}: cannot rebuild: {exc!r}") from exc


def _build_error(items: tuple[Any, ...]) -> RemoteError:
    if len(items) != 3:
        raise WireError("exception must have 3 fields")
    type_name, message, tb = items
    if type(type_name) is not str or type(message) is not str:
        raise WireError("exception type name and message must be str")
    if tb is not None and type(tb) is not str:
        raise WireError("exception traceback must be str or None")
    return RemoteError(type_name, message, tb)


class _Decoder:
    """Hooks for one thread's decodes, counting markers seen vs. consumed."""

    __slots__ = ("seen", "used", "ext_hook", "list_hook", "renamed")

    def __init__(self, renamed: Mapping[str, str] | None = None) -> None:
        self.seen = 0
        self.used = 0
        self.renamed = renamed
        self.ext_hook = self._ext_hook  # bound once, not per decode
        self.list_hook = self._list_hook

    def _ext_hook(self, code: int, data: bytes) -> Any:
        marker = _MARKERS.get(code)
        if marker is not None:
            if data:
                raise WireError(f"marker ext {code} with a payload")
            self.seen += 1
            return marker
        if code == _EXT_BIGINT:
            if not data:
                raise WireError("empty bigint ext")
            return int.from_bytes(data, "big", signed=True)
        raise WireError(f"unknown ext type code {code}")

    def _list_hook(self, items: tuple[Any, ...]) -> Any:
        # Arrays arrive as tuples (use_list=False: the common case, a tuple,
        # costs one slice); unmarked arrays were lists and are copied back.
        if not items or type(items[0]) is not _Marker:
            return list(items)
        self.used += 1
        code = items[0].code
        if code == _EXT_TUPLE:
            return items[1:]
        if code == _EXT_PID or code == _EXT_REF:
            if (
                len(items) != 4
                or type(items[1]) is not str
                or type(items[2]) is not int
                or type(items[3]) is not int
            ):
                raise WireError(f"malformed {'Pid' if code == _EXT_PID else 'Ref'}: {items[1:]!r}")
            return (Pid if code == _EXT_PID else Ref)(items[1], items[2], items[3])
        if code == _EXT_SET:
            return set(items[1:])
        if code == _EXT_FROZENSET:
            return frozenset(items[1:])
        if code == _EXT_RECORD:
            return _build_record(items[1:], self.renamed)
        return _build_error(items[1:])


_per_thread = _PerThread()
_unpackb = msgpack.unpackb


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one value; raises WireError (and only WireError) on bad input."""
    return _decode(data, _per_thread.decoder)


def decode_renamed(data: bytes | bytearray | memoryview, renamed: Mapping[str, str]) -> Any:
    """`decode`, reading the registered type names in ``renamed`` as their new names.

    For data written under older names (a log from before the names were pinned):
    ``{"old name": "current name"}``. Never used for what peers send.
    """
    return _decode(data, _Decoder(renamed))


def _decode(data: bytes | bytearray | memoryview, decoder: _Decoder) -> Any:
    outer = decoder.seen, decoder.used  # restored below: a re-entrant decode is harmless
    decoder.seen = decoder.used = 0
    try:
        obj = _unpackb(
            data,
            ext_hook=decoder.ext_hook,
            list_hook=decoder.list_hook,
            use_list=False,
            raw=False,
            strict_map_key=False,
            timestamp=3,
        )
        if decoder.seen != decoder.used:
            raise WireError("type marker outside the head of an array")
        return obj
    except WireError:
        raise
    except RecursionError:
        raise WireError("value nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - msgpack's ValueError/TypeError/ExtraData/..., unhashable keys
        raise WireError(f"malformed data: {type(exc).__name__}: {exc}") from None
    finally:
        decoder.seen, decoder.used = outer
