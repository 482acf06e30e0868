"""Where a node's cookie (the cluster's shared secret) comes from.

In order: an explicit argument, else the environment variable
``PAXTOR_COOKIE`` (ignored when empty), else the file ``~/.paxtor.cookie``,
created with a random cookie and mode 0600 when missing. As in Erlang, a
cookie file that group or others may read or write is refused: a secret
everyone can read authenticates nobody.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from paxtor.actors.errors import PaxtorError

__all__ = ["COOKIE_ENV", "CookieError", "default_cookie_path", "read_cookie_file", "resolve_cookie"]

COOKIE_ENV = "PAXTOR_COOKIE"


class CookieError(PaxtorError):
    """No usable cookie: the message says what to fix."""


def default_cookie_path() -> Path:
    """``~/.paxtor.cookie``."""
    return Path.home() / ".paxtor.cookie"


def resolve_cookie(
    cookie: str | bytes | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """The cookie to use, as bytes (see the module docstring for the order)."""
    if cookie is not None:
        value = cookie.encode("utf-8") if isinstance(cookie, str) else bytes(cookie)
        if not value.strip():
            raise CookieError("the cookie given is empty")
        return value
    env = os.environ if environ is None else environ
    from_env = env.get(COOKIE_ENV, "")
    if from_env.strip():
        return from_env.encode("utf-8")
    return read_cookie_file(default_cookie_path() if path is None else Path(path))


def read_cookie_file(path: str | os.PathLike[str], *, create: bool = True) -> bytes:
    """The cookie stored at `path`, creating it (mode 0600) if missing."""
    path = Path(path)
    if create and not path.exists():
        _create_cookie_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise CookieError(f"cookie file {path} does not exist") from None
    except OSError as exc:
        raise CookieError(f"cannot open cookie file {path}: {exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CookieError(f"cookie file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise CookieError(
                f"cookie file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        value = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if not value:
        raise CookieError(f"cookie file {path} is empty")
    return value


def _create_cookie_file(path: Path) -> None:
    """Write a fresh random cookie atomically; a concurrent creator wins harmlessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(32).encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces an existing file
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
