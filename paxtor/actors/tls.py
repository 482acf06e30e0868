"""TLS for node connections: contexts from PEM files, and the TLS handshake of one socket.

`tls_contexts(cert, key, ca)` makes the (server, client) pair of contexts
that `start_distributed(ssl_context=...)` takes: TLS 1.2 or later, every
peer must present a certificate signed by `ca` (mutual TLS), and a node
checks that the certificate of the node it dials names the address it
dialed (a DNS name or IP address in the certificate's subjectAltName: the
``--host`` the peer listens on, which is what the mesh announces). The
cookie handshake still runs inside TLS: TLS says the peer holds a
certificate of this cluster's CA, the cookie that it belongs to this cluster.
`secure_socket` wraps one connected socket and runs the TLS handshake (a
connection does it before the cookie handshake, under the same deadline).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import gevent.ssl

from paxtor.actors.errors import PaxtorError

__all__ = ["tls_contexts", "secure_socket", "TlsConfigError"]


class TlsConfigError(PaxtorError, ValueError):
    """A certificate, key or CA file that cannot be used (missing, unreadable, not matching)."""


def tls_contexts(cert: str | Path, key: str | Path, ca: str | Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for a node with certificate `cert`,
    private key `key`, trusting peers signed by `ca` (PEM files)."""
    for what, path in (("certificate", cert), ("key", key), ("CA", ca)):
        if not Path(path).is_file():
            raise TlsConfigError(f"TLS {what} file {str(path)!r} does not exist")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_cert_chain(str(cert), str(key))
            context.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(
                f"cannot use TLS files cert={str(cert)!r} key={str(key)!r} ca={str(ca)!r}: {exc}"
            ) from None
    client.check_hostname = True
    return server, client


def secure_socket(sock: Any, context: ssl.SSLContext | None, *, server_side: bool, server_hostname: str | None) -> Any:
    """`sock` after a TLS handshake under `context` (`sock` itself when `context` is None).

    Blocks the calling greenlet; raises `ssl.SSLError` (or an OSError) if the
    peer fails it. `server_hostname` is what a client checks the server's
    certificate against.
    """
    if context is None:
        return sock
    secured = gevent.ssl.SSLSocket(
        sock=sock,
        server_side=server_side,
        server_hostname=None if server_side else server_hostname,
        do_handshake_on_connect=False,
        _context=context,
    )
    secured.do_handshake()
    return secured
