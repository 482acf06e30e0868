"""Sans-IO connect handshake: two nodes prove they share the cookie.

Four messages, the initiator proving first (as in Erlang's handshake, so an
unauthenticated client never obtains a proof it could attack offline):

    initiator                                   acceptor
    Hello(version, name_i, incarnation_i, nonce_i, cluster_i)  ->
                 <-  Challenge(version, name_a, incarnation_a, nonce_a, cluster_a)
    Proof(HMAC(cookie, "initiator" + transcript))   ->
                 <-  Proof(HMAC(cookie, "acceptor" + transcript))

The transcript is every field of Hello and Challenge (version, both names,
both incarnations, both nonces, both cluster ids), length-prefixed. Each proof is bound to both
fresh nonces, both identities and its role: it is worthless on any other
connection and cannot be reflected back to its author. Either side answers a
failure with `Refused(reason)` where that helps the operator (bad version,
name clash, bad cookie, another cluster) and then closes.

``cluster`` is the id of the cluster a node belongs to ("" while it does not
know yet: a new node, a client before it met anyone). Two nodes that both
know theirs and differ refuse each other (``other_cluster``): a node started
with a data directory of another cluster, or pointed at the wrong seeds,
never reaches any process.

This authenticates the peer; it does not encrypt or protect later frames.
Against an attacker on the network path, run the connection over TLS.

The machines are pure: they consume decoded messages and return a `Step`
(messages to send, and once finished a `Peer` or a `HandshakeFailed`). The
random source is injected. `pack_message`/`unpack_message` are the wire form:
plain msgpack arrays with no extension types, since the peer is not yet
trusted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from paxtor.actors.errors import PaxtorError

__all__ = [
    "PROTOCOL_VERSION",
    "NONCE_SIZE",
    "MAX_HANDSHAKE_FRAME",
    "Hello",
    "Challenge",
    "Proof",
    "Refused",
    "HandshakeMessage",
    "Peer",
    "HandshakeFailed",
    "Step",
    "Initiator",
    "Acceptor",
    "pack_message",
    "unpack_message",
    "compute_proof",
    "validate_node_name",
]

PROTOCOL_VERSION = 4  # 3: the MESH frame (`paxtor.actors.mesh`); 4: replies as `Ok`/`Err` (`paxtor.actors.outcome`)
NONCE_SIZE = 32
MAX_NAME_LENGTH = 255
MAX_HANDSHAKE_FRAME = 4096
"""Handshake frames are tiny; a connection refuses larger ones before auth."""

INITIATOR = b"initiator"
ACCEPTOR = b"acceptor"
_DOMAIN = b"paxtor-handshake"


# --------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class Hello:
    """Initiator -> acceptor: who I am and my nonce."""

    version: int
    name: str
    incarnation: int
    nonce: bytes
    cluster: str = ""


@dataclass(frozen=True)
class Challenge:
    """Acceptor -> initiator: who I am and my nonce."""

    version: int
    name: str
    incarnation: int
    nonce: bytes
    cluster: str = ""


@dataclass(frozen=True)
class Proof:
    """Either side: HMAC-SHA256 over the role and the transcript."""

    digest: bytes = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """Either side: why the handshake stops here."""

    reason: str


HandshakeMessage = Hello | Challenge | Proof | Refused

_TAGS: dict[type, str] = {
    Hello: "paxtor-hello",
    Challenge: "paxtor-challenge",
    Proof: "paxtor-proof",
    Refused: "paxtor-refused",
}
_FIELD_TYPES: dict[str, tuple[type, tuple[type, ...]]] = {
    "paxtor-hello": (Hello, (int, str, int, bytes, str)),
    "paxtor-challenge": (Challenge, (int, str, int, bytes, str)),
    "paxtor-proof": (Proof, (bytes,)),
    "paxtor-refused": (Refused, (str,)),
}


class HandshakeFailed(PaxtorError):
    """The handshake did not authenticate the peer; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def pack_message(message: HandshakeMessage) -> bytes:
    """The bytes of one handshake frame."""
    tag = _TAGS[type(message)]
    fields = [getattr(message, f) for f in message.__dataclass_fields__]
    return msgpack.packb([tag, *fields], use_bin_type=True)


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} in a handshake message")


def unpack_message(data: bytes) -> HandshakeMessage:
    """Parse one handshake frame; raises HandshakeFailed("malformed ...")."""
    if len(data) > MAX_HANDSHAKE_FRAME:
        raise HandshakeFailed("malformed: handshake message too large")
    try:
        items = msgpack.unpackb(data, raw=False, use_list=True, ext_hook=_no_ext, timestamp=0)
    except Exception as exc:  # noqa: BLE001 - whatever msgpack raises, the peer sent garbage
        raise HandshakeFailed(f"malformed: {type(exc).__name__}") from None
    if not isinstance(items, list) or not items or type(items[0]) is not str:
        raise HandshakeFailed("malformed: not a handshake message")
    spec = _FIELD_TYPES.get(items[0])
    if spec is None:
        raise HandshakeFailed(f"malformed: unknown handshake message {items[0][:40]!r}")
    cls, types = spec
    values = items[1:]
    if len(values) != len(types) or any(type(v) is not t for v, t in zip(values, types, strict=True)):
        raise HandshakeFailed(f"malformed: bad fields for {items[0]}")
    return cls(*values)


# --------------------------------------------------------------------------
# Validation and proofs


def validate_node_name(name: object) -> str | None:
    """Why `name` is not an acceptable node name, or None if it is."""
    if type(name) is not str or not name:
        return "node name must be a non-empty str"
    if len(name) > MAX_NAME_LENGTH:
        return f"node name longer than {MAX_NAME_LENGTH} characters"
    if not name.isprintable() or any(c.isspace() for c in name):
        return "node name must be printable, without spaces"
    return None


MAX_CLUSTER_LENGTH = 64


def _check_identity(
    version: int, name: str, incarnation: int, nonce: bytes, own_name: str, cluster: str, own_cluster: str
) -> str | None:
    """Reason code for a peer identity we refuse, or None."""
    if version != PROTOCOL_VERSION:
        return f"version_mismatch: peer speaks {version}, we speak {PROTOCOL_VERSION}"
    problem = validate_node_name(name)
    if problem is not None:
        return f"malformed: {problem}"
    if name == own_name:
        return f"own_name: peer claims our name {name!r}"
    if incarnation < 0:
        return "malformed: negative incarnation"
    if len(nonce) != NONCE_SIZE:
        return "malformed: bad nonce size"
    if len(cluster) > MAX_CLUSTER_LENGTH:
        return "malformed: cluster id too long"
    if cluster and own_cluster and cluster != own_cluster:
        return f"other_cluster: peer belongs to cluster {cluster!r}, we to {own_cluster!r}"
    return None


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def compute_proof(cookie: bytes, role: bytes, hello: Hello, challenge: Challenge) -> bytes:
    """HMAC-SHA256(cookie, domain | role | every Hello and Challenge field)."""
    parts = (
        _DOMAIN,
        role,
        str(hello.version).encode(),
        hello.name.encode(),
        str(hello.incarnation).encode(),
        hello.nonce,
        hello.cluster.encode(),
        str(challenge.version).encode(),
        challenge.name.encode(),
        str(challenge.incarnation).encode(),
        challenge.nonce,
        challenge.cluster.encode(),
    )
    return hmac.new(cookie, b"".join(_field(p) for p in parts), hashlib.sha256).digest()


# --------------------------------------------------------------------------
# State machines


@dataclass(frozen=True)
class Peer:
    """The authenticated identity of the other side ("" cluster: it does not know its own yet)."""

    name: str
    incarnation: int
    cluster: str = ""


@dataclass(frozen=True)
class Step:
    """What a machine wants done after one input."""

    send: list[HandshakeMessage] = field(default_factory=list)
    outcome: Peer | HandshakeFailed | None = None


def _fail(reason: str, *, tell_peer: str | None = None) -> Step:
    send: list[HandshakeMessage] = [Refused(tell_peer)] if tell_peer else []
    return Step(send, HandshakeFailed(reason))


class _Machine:
    """Shared plumbing: finished machines accept nothing more."""

    def __init__(
        self, *, cookie: bytes, name: str, incarnation: int, random_bytes: Callable[[int], bytes], cluster: str = ""
    ) -> None:
        if not cookie:
            raise ValueError("empty cookie")
        problem = validate_node_name(name)
        if problem is not None:
            raise ValueError(problem)
        self._cookie = cookie
        self.name = name
        self.incarnation = incarnation
        self.cluster = cluster
        self._random_bytes = random_bytes
        self.outcome: Peer | HandshakeFailed | None = None
        self._state = "start"

    def _new_nonce(self) -> bytes:
        nonce = self._random_bytes(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError("random source returned the wrong number of bytes")
        return nonce

    def _finish(self, step: Step) -> Step:
        if step.outcome is not None:
            self.outcome = step.outcome
            self._state = "done"
        return step

    def receive(self, message: HandshakeMessage) -> Step:
        """Consume one message from the peer; return what to send next."""
        if self._state == "done":
            return Step(outcome=self.outcome)
        if isinstance(message, Refused):
            reason = message.reason[:200]
            return self._finish(Step(outcome=HandshakeFailed(f"refused_by_peer: {reason}")))
        return self._finish(self._receive(message))

    def _receive(self, message: HandshakeMessage) -> Step:
        raise NotImplementedError


class Initiator(_Machine):
    """The connecting side. Call `start()` once, then `receive()` each reply.

    `expected_peer`, if given, is the node name we meant to reach; any other
    name fails the handshake (a stale address now used by another node).
    """

    def __init__(
        self,
        *,
        cookie: bytes,
        name: str,
        incarnation: int,
        random_bytes: Callable[[int], bytes],
        expected_peer: str | None = None,
        cluster: str = "",
    ) -> None:
        super().__init__(cookie=cookie, name=name, incarnation=incarnation, random_bytes=random_bytes, cluster=cluster)
        self.expected_peer = expected_peer
        self._hello: Hello | None = None
        self._challenge: Challenge | None = None

    def start(self) -> Step:
        """The opening message."""
        if self._state != "start":
            raise RuntimeError("handshake already started")
        self._hello = Hello(PROTOCOL_VERSION, self.name, self.incarnation, self._new_nonce(), self.cluster)
        self._state = "await_challenge"
        return Step([self._hello])

    def _receive(self, message: HandshakeMessage) -> Step:
        if self._state == "await_challenge" and isinstance(message, Challenge):
            return self._on_challenge(message)
        if self._state == "await_proof" and isinstance(message, Proof):
            return self._on_proof(message)
        return _fail(f"malformed: unexpected {type(message).__name__} in state {self._state}")

    def _on_challenge(self, challenge: Challenge) -> Step:
        assert self._hello is not None
        problem = _check_identity(
            challenge.version, challenge.name, challenge.incarnation, challenge.nonce, self.name,
            challenge.cluster, self.cluster,
        )  # fmt: skip
        if problem is not None:
            return _fail(problem, tell_peer=problem.split(":", 1)[0])
        if self.expected_peer is not None and challenge.name != self.expected_peer:
            reason = f"unexpected_peer: expected {self.expected_peer!r}, reached {challenge.name!r}"
            return _fail(reason, tell_peer="unexpected_peer")
        if hmac.compare_digest(challenge.nonce, self._hello.nonce):
            return _fail("reflection: peer echoed our nonce")
        self._challenge = challenge
        self._state = "await_proof"
        return Step([Proof(compute_proof(self._cookie, INITIATOR, self._hello, challenge))])

    def _on_proof(self, proof: Proof) -> Step:
        assert self._hello is not None and self._challenge is not None
        expected = compute_proof(self._cookie, ACCEPTOR, self._hello, self._challenge)
        if not hmac.compare_digest(proof.digest, expected):
            return _fail("bad_cookie: peer's proof does not match our cookie")
        return Step(outcome=Peer(self._challenge.name, self._challenge.incarnation, self._challenge.cluster))


class Acceptor(_Machine):
    """The accepting side. Call `receive()` for each message from the peer.

    `admit(name, incarnation)`, if given, runs once the peer has proved the
    cookie and may return a reason to refuse it (e.g. a duplicate
    connection); the reason is sent to the peer.
    """

    def __init__(
        self,
        *,
        cookie: bytes,
        name: str,
        incarnation: int,
        random_bytes: Callable[[int], bytes],
        admit: Callable[[str, int], str | None] | None = None,
        cluster: str = "",
    ) -> None:
        super().__init__(cookie=cookie, name=name, incarnation=incarnation, random_bytes=random_bytes, cluster=cluster)
        self._admit = admit
        self._hello: Hello | None = None
        self._challenge: Challenge | None = None
        self._state = "await_hello"

    @property
    def claimed_peer(self) -> str | None:
        """The name the peer claims (NOT yet authenticated), once it said Hello."""
        return self._hello.name if self._hello is not None else None

    def _receive(self, message: HandshakeMessage) -> Step:
        if self._state == "await_hello" and isinstance(message, Hello):
            return self._on_hello(message)
        if self._state == "await_proof" and isinstance(message, Proof):
            return self._on_proof(message)
        return _fail(f"malformed: unexpected {type(message).__name__} in state {self._state}")

    def _on_hello(self, hello: Hello) -> Step:
        problem = _check_identity(
            hello.version, hello.name, hello.incarnation, hello.nonce, self.name, hello.cluster, self.cluster
        )
        if problem is not None:
            return _fail(problem, tell_peer=problem.split(":", 1)[0])
        nonce = self._new_nonce()
        if hmac.compare_digest(nonce, hello.nonce):  # only a broken random source does this
            return _fail("reflection: nonce collision")
        self._hello = hello
        self._challenge = Challenge(PROTOCOL_VERSION, self.name, self.incarnation, nonce, self.cluster)
        self._state = "await_proof"
        return Step([self._challenge])

    def _on_proof(self, proof: Proof) -> Step:
        assert self._hello is not None and self._challenge is not None
        expected = compute_proof(self._cookie, INITIATOR, self._hello, self._challenge)
        if not hmac.compare_digest(proof.digest, expected):
            return _fail("bad_cookie: peer's proof does not match our cookie", tell_peer="bad_cookie")
        peer = Peer(self._hello.name, self._hello.incarnation, self._hello.cluster)
        if self._admit is not None:
            refusal = self._admit(peer.name, peer.incarnation)
            if refusal is not None:
                return _fail(f"not_admitted: {refusal}", tell_peer=refusal)
        reply = Proof(compute_proof(self._cookie, ACCEPTOR, self._hello, self._challenge))
        return Step([reply], outcome=peer)
