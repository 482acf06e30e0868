"""TLS between nodes from the command line (--tls-cert, --tls-key, --tls-ca):
three voters as `python -m paxtor node` OS processes and a client in this
process, every certificate made here at test time (loopback addresses only).
A node with a certificate of another CA, or none, never gets in."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest

cryptography = pytest.importorskip("cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

import paxtor  # noqa: E402
from paxtor import paxos  # noqa: E402
from paxtor.actors.distribution import start_distributed  # noqa: E402
from paxtor.actors.tls import TlsConfigError, tls_contexts  # noqa: E402
from paxtor.testing import LocalCluster, wait_for_quorum  # noqa: E402

pytestmark = pytest.mark.subprocess


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)), key, cert


def make_node_cert(directory: Path, name: str, ca_key, ca_cert, host: str = "127.0.0.1") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_path = _write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_path = _write(directory / f"{name}.key", key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def test_voters_started_with_tls_flags_serve_a_tls_client_and_refuse_others(tmp_path: Path) -> None:
    ca, ca_key, ca_cert = make_ca(tmp_path, "cluster-ca")
    (tmp_path / "run").mkdir()
    with LocalCluster(3, workdir=tmp_path / "run", flags=["--heartbeat-timeout", "2", "--reconnect-max", "0.5"]) as cluster:
        for number in (1, 2, 3):
            cert, key = make_node_cert(tmp_path, f"node{number}", ca_key, ca_cert)
            cluster.start(number, extra=["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca)])
        cert, key = make_node_cert(tmp_path, "web-1", ca_key, ca_cert)
        client = cluster.join("web-1", ssl_context=tls_contexts(cert, key, ca))
        assert client.dist.wait_for_nodes(cluster.voters, 30)
        wait_for_quorum([client], 30)
        assert client.run(paxtor.try_lock, "over tls") is not None
        assert client.run(paxos.put, "k", "v") == "v"
        assert client.dist.peers.up["node1"]._sock.version() in ("TLSv1.2", "TLSv1.3")

        # a certificate from another CA is refused, and so is plain TCP
        _, other_key, other_cert = make_ca(tmp_path, "other-ca")
        stranger_cert, stranger_key = make_node_cert(tmp_path, "stranger", other_key, other_cert)
        other_ca = tmp_path / "other-ca.pem"
        stranger = start_distributed(
            "stranger", port=0, cookie=cluster.cookie, base_port=cluster.base_port, cluster_size=3,
            ssl_context=tls_contexts(stranger_cert, stranger_key, other_ca), handshake_timeout=1.0,
        )  # fmt: skip
        plain = start_distributed("plain", port=0, cookie=cluster.cookie, base_port=cluster.base_port, cluster_size=3,
                                  handshake_timeout=1.0)  # fmt: skip
        assert not stranger.wait_for_nodes(["node1"], 3.0)
        assert not plain.wait_for_nodes(["node1"], 0.5)
        stranger.stop()
        plain.stop()
        for number in (1, 2, 3):
            assert any("tls_failed" in str(e.get("reason", "")) for e in cluster.processes[f"node{number}"].events("handshake_failed"))


def test_unusable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    ca, ca_key, ca_cert = make_ca(tmp_path, "ca")
    cert, key = make_node_cert(tmp_path, "n", ca_key, ca_cert)
    with pytest.raises(TlsConfigError, match="does not exist"):
        tls_contexts(cert, tmp_path / "missing.key", ca)
    _, other_key = make_node_cert(tmp_path, "m", ca_key, ca_cert)
    with pytest.raises(TlsConfigError, match="cannot use"):
        tls_contexts(cert, other_key, ca)  # a key that is not the certificate's
