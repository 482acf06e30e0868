"""The PaxosKV API (the README lists it): called from any process of a node.

Every function acts on the CURRENT node (the node of the calling process):
it asks that node's PaxosKV processes (by their registered names; the lease
term is read from the node's lease clock), so it works from any process or
adopted greenlet, and raises `NotRunning` on a node where PaxosKV is not
started. Keys are any hashable value the wire can carry (str, int, bytes,
tuples of them, pids...); values are any value the wire can carry. Both are
checked before anything is sent. Two keys are the same key when they are
equal in Python (``1``, ``True`` and ``1.0`` are one key; `paxos.keys`); a
NaN inside a key is a ValueError.

Linearizable by default: `get`, `pid_of`, `node_of`, `epoch_of` run an
identity round; ``stale=True`` reads the local acceptor instead (a voter's
latest accepted value, possibly not yet chosen; on a client node, a round).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from paxtor.actors import call, cast, whereis
from paxtor.actors.ids import Pid
from paxtor.actors.mailbox import check_timeout
from paxtor.actors.messages import CallError, CallTimeout
from paxtor.actors.node import current_node
from paxtor.actors.outcome import Outcome
from paxtor.actors.wire import decode, encode
from paxtor.paxos.acceptor import KeyRecord
from paxtor.paxos.bucket import DEFAULT_BUCKET, check_bucket_name
from paxtor.paxos.envelopes import ACCEPTOR_NAME, LEASE_KEEPER_NAME, PROPOSER_NAME
from paxtor.paxos.errors import NoQuorum, NotRunning
from paxtor.paxos.keys import canonical_key
from paxtor.paxos.paxos_node import open_paxos_node
from paxtor.paxos.proposer_engine import ProposeRequest
from paxtor.paxos.register import Binding, ChangeFunction, EndedBinding, Register, identity, put_if_empty
from paxtor.paxos.request_size import check_length, encode_within, node_request_limit

__all__ = [
    "put",
    "get",
    "pid_of",
    "node_of",
    "epoch_of",
    "propose",
    "lease_term",
    "hold",
    "wait_for_quorum",
]

_MISSING: Any = object()
#: Added to a request's own timeout for the call that carries it (the proposer always answers by then).
_CALL_SLACK = 5.0
_DEFAULT_CALL_TIMEOUT = 60.0


def _call(name: str, request: Any, timeout: float | None) -> Any:
    try:
        return call(name, request, timeout=timeout)
    except CallTimeout:
        raise
    except CallError as exc:
        if exc.reason == "noproc":
            raise NotRunning(f"PaxosKV is not running on node {current_node().name!r}") from None
        raise


def _check_key(key: Any, limit: int) -> tuple[Any, int]:
    """The key as PaxosKV keeps it (`canonical_key`) and its encoded size; TypeError for a key
    that is not hashable or not encodable, ValueError for a NaN in it or one over ``limit``.
    The lengths come first: hashing a key, as encoding it, costs as much as the key is long."""
    check_length(key, limit, "the key")
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"a PaxosKV key must be hashable (use a tuple, not a list), got {key!r}") from None
    key = canonical_key(key)
    try:
        data = encode_within(key, limit, "the key")
    except TypeError as exc:
        raise TypeError(f"a PaxosKV key must be a value the wire can carry: {exc}") from None
    return key, len(data)


#: Value types `put` and `get` need not copy: nothing can change them in place.
_IMMUTABLE = frozenset((type(None), bool, int, float, str, bytes))


def _detached(register: Register) -> Register:
    """`register` with a value of the caller's own, for `put` and `get`: a caller that mutates
    what it got changes nothing in PaxosKV."""
    value = register.value
    if value.__class__ in _IMMUTABLE:
        return register
    return Register(register.epoch, register.filled, decode(encode(value)), register.binding)



def _run(request: ProposeRequest) -> Register:
    call_timeout = (_DEFAULT_CALL_TIMEOUT if request.timeout is None else request.timeout) + _CALL_SLACK
    outcome: Outcome[Register, BaseException] = _call(PROPOSER_NAME, request, call_timeout)
    visible: Register = outcome.unwrap().visible()
    return visible


def propose(
    key: Hashable,
    change: ChangeFunction,
    *,
    bucket: str = DEFAULT_BUCKET,
    timeout: float | None = None,
    ended: EndedBinding | None = None,
) -> Register:
    """One linearizable round applying ``change: Register -> Register``; the chosen `Register`.

    Retries conflicts and lease vetoes until ``timeout`` (default 5 s), then
    raises `NoQuorum`. A change that raises, or breaks the register rules,
    raises its error (`ChangeRejected` for the rules) and nothing is sent.
    A release round passes ``ended`` (the `EndedBinding` it ends). The
    change function may be called more than once (every attempt re-reads the
    register), so make it a pure function of the register; its effect lands
    exactly once: an attempt that lost after its accepts went out may still
    have its value adopted by a later round, and the retry then finds its
    op mark in the register and returns that attempt's result instead of
    applying the change again. A `NoQuorum` with ``maybe_applied`` is the
    one case where the caller cannot know. Registers are not copied here
    (the lock and singleton layers run every round through this): the
    register the change returns, and the chosen one returned, belong to
    PaxosKV; build new values and treat results as read-only. (`put` and
    `get` copy values in and out.)
    """
    check_bucket_name(bucket)
    key, _ = _check_key(key, node_request_limit())
    check_timeout(timeout)
    if not callable(change):
        raise TypeError(f"change must be a function Register -> Register, got {change!r}")
    if ended is not None and not isinstance(ended, EndedBinding):
        raise TypeError(f"ended must be an EndedBinding, got {ended!r}")
    return _run(ProposeRequest(bucket, key, change, timeout, ended=ended))


def put(
    key: Hashable,
    value: Any,
    *,
    pid: Pid | None = None,
    node: str | None = None,
    parent: Hashable | None = None,
    until: int | None = None,
    bucket: str = DEFAULT_BUCKET,
    timeout: float | None = None,
) -> Any:
    """If ``key`` is empty, set it to ``value`` (bound as given); else keep it. The chosen value.

    The value lives until its binding ends: ``pid`` exits, ``node`` goes
    down, the ``parent`` key (same bucket) is released, or wall-clock
    ``until`` (ms) passes. Bound to a pid of this node, it is also held
    under this node's lease: a lease loss kills the pid ("lease_expired"),
    and so does the value's release for any other reason than the pid's own
    exit (``until`` passed, the parent was erased): the pid may still act as
    the key's owner, as a lock holder would. The key and value together are at
    most the node's ``max_request_bytes`` encoded (1.5 MiB by default; ValueError,
    before anything is sent); the value is copied, so the caller may go on
    changing its object.
    """
    check_bucket_name(bucket)
    limit = node_request_limit()
    key, spent = _check_key(key, limit)
    check_timeout(timeout)
    if parent is not None:
        parent, parent_size = _check_key(parent, limit)
        spent += parent_size
    binding = None
    if pid is not None or node is not None or parent is not None or until is not None:
        binding = Binding(pid, node, parent, until)
    try:
        data = encode_within(value, limit, "the key and value", already=spent)
    except TypeError as exc:
        raise TypeError(f"a PaxosKV value must be a value the wire can carry: {exc}") from None
    if value.__class__ not in _IMMUTABLE:
        value = decode(data)  # PaxosKV's own copy: the caller may go on mutating its object
    here = current_node()
    claims_local = pid is not None and pid.node == here.name and pid.incarnation == here.incarnation
    request = ProposeRequest(
        bucket, key, put_if_empty(value, binding), timeout, claims_local=claims_local, checked=True
    )
    return _detached(_run(request)).value


def _read(key: Hashable, bucket: str, stale: bool, timeout: float | None) -> Register:
    check_bucket_name(bucket)
    key, _ = _check_key(key, node_request_limit())
    check_timeout(timeout)
    if stale and whereis(ACCEPTOR_NAME) is not None:
        record: KeyRecord = _call(ACCEPTOR_NAME, ("read", bucket, key), _DEFAULT_CALL_TIMEOUT)
        return record.accepted.visible()
    return _run(ProposeRequest(bucket, key, identity, timeout, checked=True))


def get(
    key: Hashable,
    *,
    bucket: str = DEFAULT_BUCKET,
    default: Any = _MISSING,
    stale: bool = False,
    timeout: float | None = None,
) -> Any:
    """The key's value (the caller's own copy); ``default`` (else KeyError) if it is empty."""
    register = _detached(_read(key, bucket, stale, timeout))
    if register.is_empty:
        if default is _MISSING:
            raise KeyError(key)
        return default
    return register.value


def pid_of(
    key: Hashable, *, bucket: str = DEFAULT_BUCKET, stale: bool = False, timeout: float | None = None
) -> Pid | None:
    """The pid the key's value is bound to, or None."""
    register = _read(key, bucket, stale, timeout)
    return register.binding.pid if register.filled and register.binding is not None else None


def node_of(
    key: Hashable, *, bucket: str = DEFAULT_BUCKET, stale: bool = False, timeout: float | None = None
) -> str | None:
    """The node the key's value is bound to (its pid's node, or its ``node``), or None."""
    register = _read(key, bucket, stale, timeout)
    return register.binding.owner_node if register.filled and register.binding is not None else None


def epoch_of(key: Hashable, *, bucket: str = DEFAULT_BUCKET, stale: bool = False, timeout: float | None = None) -> int:
    """The key's fencing token: its current (or last) tenure's epoch; 0 if never set."""
    return _read(key, bucket, stale, timeout).epoch


def lease_term() -> int | None:
    """The current node's lease term if its lease is valid now, else None.

    Read from the node's lease clock (no message); `hold` checks the term again.
    """
    paxos_node = open_paxos_node(current_node())
    if paxos_node is None:
        raise NotRunning(f"PaxosKV is not running on node {current_node().name!r}")
    return paxos_node.lease.term_at(time.monotonic())


def hold(pid: Pid, bucket: str, key: Hashable, epoch: int, term: int | None) -> bool:
    """Record that local ``pid`` owns ``bucket``/``key`` at ``epoch``, granted in lease ``term``.

    False (and nothing recorded) if ``term`` is not the current valid term,
    or ``pid`` is not a live process of this node. A lease loss kills every
    held pid with reason "lease_expired".
    """
    if not isinstance(pid, Pid):
        raise TypeError(f"hold() takes a Pid, got {pid!r}")
    check_bucket_name(bucket)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    here = current_node()
    if pid.node != here.name or pid.incarnation != here.incarnation:
        raise ValueError(f"hold() takes a pid of this node ({here.name}), got {pid!r}")
    held: bool = _call(LEASE_KEEPER_NAME, ("hold", pid, bucket, key, epoch, term), _DEFAULT_CALL_TIMEOUT)
    return held


def unhold(pid: Pid, bucket: str, key: Hashable, epoch: int) -> None:
    """Forget that local ``pid`` owns tenure ``epoch`` of ``bucket``/``key`` (it ended).

    A tenure ended by a round proposed on another node (an unlock sent to the
    key's home) is not seen here; without this, a lease loss would still kill
    a process that no longer owns anything. A stale or unknown tenure is ignored.
    """
    if not isinstance(pid, Pid):
        raise TypeError(f"unhold() takes a Pid, got {pid!r}")
    check_bucket_name(bucket)
    cast(LEASE_KEEPER_NAME, ("unhold", pid, bucket, key, epoch))


def wait_for_quorum(timeout: float | None = 10) -> None:
    """Block until this node holds a valid lease (a quorum of voters answers it); NoQuorum on timeout."""
    check_timeout(timeout)
    call_timeout = None if timeout is None else timeout + _CALL_SLACK
    if not _call(LEASE_KEEPER_NAME, ("wait_valid", timeout), call_timeout):
        raise NoQuorum(f"no quorum of voters within {timeout} s")
