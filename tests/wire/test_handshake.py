"""The cookie handshake state machines, driven without sockets."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import msgpack
import pytest

from paxtor.actors.handshake import (
    ACCEPTOR,
    INITIATOR,
    MAX_HANDSHAKE_FRAME,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    Acceptor,
    Challenge,
    HandshakeFailed,
    HandshakeMessage,
    Hello,
    Initiator,
    Peer,
    Proof,
    Refused,
    Step,
    compute_proof,
    pack_message,
    unpack_message,
)

COOKIE = b"the-cluster-cookie"


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def initiator(name: str = "node1", cookie: bytes = COOKIE, seed: int = 1, **kw: object) -> Initiator:
    return Initiator(cookie=cookie, name=name, incarnation=11, random_bytes=seeded(seed), **kw)  # type: ignore[arg-type]


def acceptor(name: str = "node2", cookie: bytes = COOKIE, seed: int = 2, **kw: object) -> Acceptor:
    return Acceptor(cookie=cookie, name=name, incarnation=22, random_bytes=seeded(seed), **kw)  # type: ignore[arg-type]


def over_wire(messages: list[HandshakeMessage]) -> list[HandshakeMessage]:
    """As the driver does: every message goes through its byte form."""
    return [unpack_message(pack_message(m)) for m in messages]


def run(i: Initiator, a: Acceptor) -> tuple[object, object, list[HandshakeMessage]]:
    """Pump messages both ways until neither side has anything to say."""
    transcript: list[HandshakeMessage] = []
    to_acceptor = over_wire(i.start().send)
    to_initiator: list[HandshakeMessage] = []
    while to_acceptor or to_initiator:
        for m in to_acceptor:
            transcript.append(m)
            to_initiator += over_wire(a.receive(m).send)
        to_acceptor = []
        for m in to_initiator:
            transcript.append(m)
            to_acceptor += over_wire(i.receive(m).send)
        to_initiator = []
    return i.outcome, a.outcome, transcript


def failure(outcome: object) -> str:
    assert isinstance(outcome, HandshakeFailed), outcome
    return outcome.reason


# ----------------------------------------------------------------- success


def test_success_both_sides_learn_the_authenticated_peer() -> None:
    i_out, a_out, transcript = run(initiator(), acceptor())
    assert i_out == Peer("node2", 22)
    assert a_out == Peer("node1", 11)
    assert [type(m) for m in transcript] == [Hello, Challenge, Proof, Proof]


def test_initiator_proves_first_and_acceptor_sends_nothing_provable_before() -> None:
    i, a = initiator(), acceptor()
    hello = i.start().send[0]
    challenge_step = a.receive(hello)
    assert [type(m) for m in challenge_step.send] == [Challenge]
    assert challenge_step.outcome is None


def test_messages_after_the_end_change_nothing() -> None:
    i, a = initiator(), acceptor()
    run(i, a)
    step = a.receive(Proof(b"x" * 32))
    assert step == Step(outcome=Peer("node1", 11))


def test_nonces_come_from_the_injected_source() -> None:
    source = seeded(5)
    expected = seeded(5)(NONCE_SIZE)
    hello = Initiator(cookie=COOKIE, name="n", incarnation=0, random_bytes=source).start().send[0]
    assert isinstance(hello, Hello) and hello.nonce == expected
    assert hello.version == PROTOCOL_VERSION


def test_random_source_of_wrong_size_is_a_programming_error() -> None:
    i = Initiator(cookie=COOKIE, name="n", incarnation=0, random_bytes=lambda n: b"short")
    with pytest.raises(ValueError, match="wrong number of bytes"):
        i.start()


def test_constructor_rejects_empty_cookie_and_bad_name() -> None:
    with pytest.raises(ValueError):
        initiator(cookie=b"")
    with pytest.raises(ValueError):
        acceptor(name="has space")


# -------------------------------------------------------------- bad cookie


def test_initiator_with_wrong_cookie_is_refused_and_told_why() -> None:
    i_out, a_out, transcript = run(initiator(cookie=b"wrong"), acceptor())
    assert failure(a_out).startswith("bad_cookie")
    assert failure(i_out) == "refused_by_peer: bad_cookie"
    assert transcript[-1] == Refused("bad_cookie")


def test_acceptor_with_wrong_cookie_refuses_the_honest_initiator() -> None:
    i_out, a_out, _ = run(initiator(), acceptor(cookie=b"wrong"))
    assert failure(a_out).startswith("bad_cookie")
    assert failure(i_out) == "refused_by_peer: bad_cookie"


def test_acceptor_that_cannot_prove_the_cookie_is_rejected_by_the_initiator() -> None:
    # An impostor acceptor without the cookie gets the initiator's proof but
    # must answer with its own, which it cannot compute.
    i = initiator()
    hello = i.start().send[0]
    assert isinstance(hello, Hello)
    step = i.receive(Challenge(PROTOCOL_VERSION, "node2", 22, bytes(range(32))))
    assert [type(m) for m in step.send] == [Proof]
    step = i.receive(Proof(b"\x00" * 32))
    assert failure(step.outcome).startswith("bad_cookie")


# ------------------------------------------------------- reflection, replay


def test_reflected_initiator_proof_is_rejected() -> None:
    i = initiator()
    i.start()
    own_proof = i.receive(Challenge(PROTOCOL_VERSION, "node2", 22, bytes(range(32)))).send[0]
    assert isinstance(own_proof, Proof)
    assert failure(i.receive(own_proof).outcome).startswith("bad_cookie")


def test_echoed_nonce_is_rejected_as_reflection() -> None:
    i = initiator()
    hello = i.start().send[0]
    assert isinstance(hello, Hello)
    step = i.receive(Challenge(PROTOCOL_VERSION, "node2", 22, hello.nonce))
    assert failure(step.outcome).startswith("reflection")
    assert step.send == []


def test_replayed_initiator_proof_fails_on_a_new_session() -> None:
    _, _, recorded = run(initiator(), acceptor())
    recorded_hello, recorded_proof = recorded[0], recorded[2]
    fresh = acceptor(seed=99)  # a new connection: a new acceptor nonce
    fresh.receive(recorded_hello)
    step = fresh.receive(recorded_proof)
    assert failure(step.outcome).startswith("bad_cookie")


def test_replayed_acceptor_proof_fails_on_a_new_session() -> None:
    _, _, recorded = run(initiator(), acceptor())
    recorded_challenge, recorded_proof = recorded[1], recorded[3]
    i = initiator(seed=77)  # fresh initiator nonce
    i.start()
    i.receive(recorded_challenge)
    assert failure(i.receive(recorded_proof).outcome).startswith("bad_cookie")


def test_proof_is_bound_to_role_and_every_transcript_field() -> None:
    hello = Hello(1, "a", 1, b"n" * 32)
    challenge = Challenge(1, "b", 2, b"m" * 32)
    base = compute_proof(COOKIE, INITIATOR, hello, challenge)
    variants = [
        compute_proof(COOKIE, ACCEPTOR, hello, challenge),
        compute_proof(b"other", INITIATOR, hello, challenge),
        compute_proof(COOKIE, INITIATOR, Hello(2, "a", 1, b"n" * 32), challenge),
        compute_proof(COOKIE, INITIATOR, Hello(1, "c", 1, b"n" * 32), challenge),
        compute_proof(COOKIE, INITIATOR, Hello(1, "a", 3, b"n" * 32), challenge),
        compute_proof(COOKIE, INITIATOR, Hello(1, "a", 1, b"o" * 32), challenge),
        compute_proof(COOKIE, INITIATOR, hello, Challenge(1, "d", 2, b"m" * 32)),
        compute_proof(COOKIE, INITIATOR, hello, Challenge(1, "b", 4, b"m" * 32)),
        compute_proof(COOKIE, INITIATOR, hello, Challenge(1, "b", 2, b"p" * 32)),
        compute_proof(COOKIE, INITIATOR, Hello(1, "a", 1, b"n" * 32, "c1"), challenge),
        compute_proof(COOKIE, INITIATOR, hello, Challenge(1, "b", 2, b"m" * 32, "c1")),
        # field boundaries are unambiguous: moving a character between names changes the proof
        compute_proof(COOKIE, INITIATOR, Hello(1, "ab", 1, b"n" * 32), Challenge(1, "", 2, b"m" * 32)),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_proof_for_another_name_is_rejected() -> None:
    # The initiator proves as "node1"; a man in the middle renaming it to
    # "node3" in the Hello cannot reuse that proof.
    i, a = initiator(), acceptor()
    hello = i.start().send[0]
    assert isinstance(hello, Hello)
    renamed = Hello(hello.version, "node3", hello.incarnation, hello.nonce)
    challenge = a.receive(renamed).send[0]
    proof = i.receive(challenge).send[0]
    assert failure(a.receive(proof).outcome).startswith("bad_cookie")


# ------------------------------------------------- identity and version


def test_peer_claiming_the_acceptors_own_name_is_refused() -> None:
    i_out, a_out, transcript = run(initiator(name="node2"), acceptor(name="node2"))
    assert failure(a_out).startswith("own_name")
    assert failure(i_out) == "refused_by_peer: own_name"
    assert len(transcript) == 2  # Hello, Refused: no challenge was issued


def test_acceptor_claiming_the_initiators_own_name_is_rejected() -> None:
    i = initiator(name="node1")
    i.start()
    step = i.receive(Challenge(PROTOCOL_VERSION, "node1", 1, bytes(32)))
    assert failure(step.outcome).startswith("own_name")
    assert step.send == [Refused("own_name")]


def test_version_mismatch_is_refused_by_the_acceptor() -> None:
    a = acceptor()
    step = a.receive(Hello(PROTOCOL_VERSION + 1, "node1", 1, bytes(32)))
    assert failure(step.outcome).startswith("version_mismatch")
    assert step.send == [Refused("version_mismatch")]


def test_version_mismatch_is_refused_by_the_initiator() -> None:
    i = initiator()
    i.start()
    step = i.receive(Challenge(PROTOCOL_VERSION + 1, "node2", 1, bytes(32)))
    assert failure(step.outcome).startswith("version_mismatch")


def test_nodes_of_two_clusters_refuse_each_other_at_the_hello() -> None:
    i_out, a_out, transcript = run(initiator(cluster="c1"), acceptor(cluster="c2"))
    assert failure(a_out).startswith("other_cluster")
    assert failure(i_out) == "refused_by_peer: other_cluster"
    assert len(transcript) == 2  # Hello, Refused: nothing provable was sent


def test_the_initiator_refuses_an_acceptor_of_another_cluster() -> None:
    i = initiator(cluster="c1")
    i.start()
    step = i.receive(Challenge(PROTOCOL_VERSION, "node2", 1, bytes(32), "c2"))
    assert failure(step.outcome).startswith("other_cluster")


def test_a_node_that_does_not_know_its_cluster_yet_is_admitted_and_learns_the_peers() -> None:
    i_out, a_out, _ = run(initiator(cluster=""), acceptor(cluster="c2"))
    assert i_out == Peer("node2", 22, "c2")
    assert a_out == Peer("node1", 11, "")
    i_out, a_out, _ = run(initiator(cluster="c2", seed=5), acceptor(cluster="c2", seed=6))
    assert i_out == Peer("node2", 22, "c2") and a_out == Peer("node1", 11, "c2")


def test_unexpected_peer_name_fails_the_initiator() -> None:
    i_out, _, _ = run(initiator(expected_peer="node3"), acceptor(name="node2"))
    assert failure(i_out).startswith("unexpected_peer")


def test_admit_hook_can_refuse_an_authenticated_peer() -> None:
    seen: list[tuple[str, int]] = []

    def admit(name: str, incarnation: int) -> str | None:
        seen.append((name, incarnation))
        return "duplicate_connection"

    i_out, a_out, _ = run(initiator(), acceptor(admit=admit))
    assert seen == [("node1", 11)]
    assert failure(a_out) == "not_admitted: duplicate_connection"
    assert failure(i_out) == "refused_by_peer: duplicate_connection"


def test_admit_hook_is_not_consulted_for_a_bad_cookie() -> None:
    called = []
    run(initiator(cookie=b"bad"), acceptor(admit=lambda n, i: called.append(n)))
    assert called == []


# --------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb("paxtor-hello"),
        msgpack.packb([]),
        msgpack.packb([1, 2]),
        msgpack.packb(["paxtor-unknown", 1]),
        msgpack.packb(["paxtor-hello", 1, "n", 1]),  # missing nonce
        msgpack.packb(["paxtor-hello", 1, "n", 1, "not-bytes"]),
        msgpack.packb(["paxtor-hello", True, "n", 1, b"x" * 32]),  # bool is not an int here
        msgpack.packb(["paxtor-hello", 1, "n", 1, b"x" * 32, "", "extra"]),
        msgpack.packb(["paxtor-proof", msgpack.ExtType(1, b"")]),  # no ext types before auth
        msgpack.packb(["paxtor-refused", "x" * MAX_HANDSHAKE_FRAME]),  # too large
        msgpack.packb(["paxtor-hello", 1, "n", 1, b"x" * 32]) + b"\x00",  # trailing data
    ],
)
def test_malformed_bytes_fail_with_handshake_failed(data: bytes) -> None:
    with pytest.raises(HandshakeFailed, match="^malformed"):
        unpack_message(data)


@pytest.mark.parametrize(
    "hello",
    [
        Hello(PROTOCOL_VERSION, "", 1, bytes(32)),
        Hello(PROTOCOL_VERSION, "two words", 1, bytes(32)),
        Hello(PROTOCOL_VERSION, "x" * 300, 1, bytes(32)),
        Hello(PROTOCOL_VERSION, "bell\x07", 1, bytes(32)),
        Hello(PROTOCOL_VERSION, "node1", -1, bytes(32)),
        Hello(PROTOCOL_VERSION, "node1", 1, bytes(31)),
    ],
)
def test_malformed_hello_fields_are_refused(hello: Hello) -> None:
    step = acceptor().receive(hello)
    assert failure(step.outcome).startswith("malformed")
    assert step.send == [Refused("malformed")]


@pytest.mark.parametrize(
    ("make_machine", "message"),
    [
        (acceptor, Proof(b"x" * 32)),  # proof before hello
        (acceptor, Challenge(PROTOCOL_VERSION, "node1", 1, bytes(32))),  # wrong role's message
    ],
)
def test_out_of_order_messages_fail(make_machine: Callable[[], Acceptor], message: HandshakeMessage) -> None:
    assert failure(make_machine().receive(message).outcome).startswith("malformed")


def test_initiator_rejects_hello_and_early_proof() -> None:
    for message in (Hello(PROTOCOL_VERSION, "node2", 1, bytes(32)), Proof(b"x" * 32)):
        i = initiator()
        i.start()
        assert failure(i.receive(message).outcome).startswith("malformed")


def test_second_hello_fails_the_acceptor() -> None:
    a = acceptor()
    hello = Hello(PROTOCOL_VERSION, "node1", 1, bytes(32))
    a.receive(hello)
    assert failure(a.receive(hello).outcome).startswith("malformed")


def test_start_twice_is_a_programming_error() -> None:
    i = initiator()
    i.start()
    with pytest.raises(RuntimeError):
        i.start()


def test_every_message_kind_round_trips_through_bytes() -> None:
    for message in (
        Hello(1, "a", 2, b"n" * 32),
        Challenge(1, "b", 3, b"m" * 32),
        Proof(b"p" * 32),
        Refused("why"),
    ):
        data = pack_message(message)
        assert len(data) < MAX_HANDSHAKE_FRAME
        assert unpack_message(data) == message


def test_many_sessions_all_succeed_with_distinct_nonces() -> None:
    nonces = set()
    for seed in itertools.islice(itertools.count(), 50):
        i_out, a_out, transcript = run(initiator(seed=seed), acceptor(seed=seed + 1000))
        assert isinstance(i_out, Peer) and isinstance(a_out, Peer)
        nonces.update(m.nonce for m in transcript if isinstance(m, (Hello, Challenge)))
    assert len(nonces) == 100
