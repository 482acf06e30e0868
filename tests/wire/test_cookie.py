"""Cookie resolution: argument, environment, then a private file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from paxtor.actors.cookie import COOKIE_ENV, CookieError, read_cookie_file, resolve_cookie


def test_explicit_argument_wins(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    assert resolve_cookie("abc", environ={COOKIE_ENV: "env"}, path=path) == b"abc"
    assert resolve_cookie(b"raw", environ={}, path=path) == b"raw"
    assert not path.exists()


def test_empty_explicit_cookie_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CookieError, match="empty"):
        resolve_cookie("  ", environ={}, path=tmp_path / "c")


def test_environment_comes_next(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    assert resolve_cookie(environ={COOKIE_ENV: "from-env"}, path=path) == b"from-env"
    assert not path.exists()


def test_empty_environment_variable_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    cookie = resolve_cookie(environ={COOKIE_ENV: ""}, path=path)
    assert path.exists() and cookie == path.read_bytes().strip()


def test_missing_file_is_created_private_with_a_random_cookie(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".paxtor.cookie"
    first = resolve_cookie(environ={}, path=path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_cookie(environ={}, path=path) == first  # stable once created
    assert [p.name for p in path.parent.iterdir()] == [".paxtor.cookie"]  # no temp file left
    other = tmp_path / "other.cookie"
    assert resolve_cookie(environ={}, path=other) != first


def test_existing_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    path.write_bytes(b"  my-cookie\n")
    path.chmod(0o600)
    assert resolve_cookie(environ={}, path=path) == b"my-cookie"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "cookie"
    path.write_bytes(b"secret")
    path.chmod(mode)
    with pytest.raises(CookieError, match=f"mode {mode:04o}.*chmod 600"):
        resolve_cookie(environ={}, path=path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    path.write_bytes(b"\n")
    path.chmod(0o600)
    with pytest.raises(CookieError, match="empty"):
        read_cookie_file(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    path.mkdir(mode=0o700)
    with pytest.raises(CookieError):
        read_cookie_file(path)


def test_missing_file_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CookieError, match="does not exist"):
        read_cookie_file(tmp_path / "nope", create=False)


def test_concurrent_creators_agree_on_one_cookie(tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(read_cookie_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert sorted(os.listdir(tmp_path)) == ["cookie"]
