"""Where nodes listen and whom a node dials: numbered names and seeds.

No gossip: on one host, node ``nodeN`` listens on ``base_port + N``, so a
node finds ``node1 .. node<cluster_size>`` by number; other nodes are given
as seeds (``"host:port"``), whose names are learned by the handshake. Pure
functions, no sockets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Target", "node_number", "numbered_name", "listen_port", "parse_seed", "dial_targets"]

_NUMBERED = re.compile(r"node([1-9][0-9]{0,5})")
_MAX_PORT = 65535


@dataclass
class Target:
    """An address this node keeps a connection to. `name` is the node we
    expect there: known for numbered peers, learned for seeds."""

    host: str
    port: int
    name: str | None = None
    seed: bool = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"{self.name}@{where}" if self.name else where


def node_number(name: str) -> int | None:
    """N for a name ``nodeN`` (N >= 1, no leading zero), else None."""
    match = _NUMBERED.fullmatch(name)
    return int(match.group(1)) if match else None


def numbered_name(number: int) -> str:
    """``nodeN``."""
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError(f"a node number is an int >= 1, got {number!r}")
    return f"node{number}"


def _check_port(port: int, what: str) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= _MAX_PORT:
        raise ValueError(f"{what} must be an int in 0..{_MAX_PORT}, got {port!r}")
    return port


def listen_port(name: str, base_port: int, port: int | None = None) -> int:
    """The port node `name` listens on: `port` if given, ``base_port + N``
    for ``nodeN``, else 0 (any free port: such a node dials out, nobody
    can find it by number)."""
    if port is not None:
        return _check_port(port, "port")
    number = node_number(name)
    if number is None:
        return 0
    return _check_port(_check_port(base_port, "base_port") + number, f"the port of {name} (base_port + {number})")


def parse_seed(seed: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` (or a ``(host, port)`` pair) -> ``(host, port)``."""
    if isinstance(seed, tuple):
        if len(seed) != 2 or not isinstance(seed[0], str):
            raise ValueError(f"a seed is 'host:port' or (host, port), got {seed!r}")
        host, port = seed
    elif isinstance(seed, str):
        host, sep, port_text = seed.strip().rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"a seed is 'host:port', got {seed!r}")
        port = int(port_text)
    else:
        raise ValueError(f"a seed is 'host:port' or (host, port), got {seed!r}")
    if not host:
        raise ValueError(f"seed {seed!r} has no host")
    return host.strip("[]"), _check_port(port, f"the port of seed {seed!r}")


def dial_targets(
    own_name: str,
    own_address: tuple[str, int] | None,
    *,
    host: str,
    base_port: int,
    cluster_size: int,
    seeds: Iterable[str | tuple[str, int]] = (),
) -> list[Target]:
    """Everything `own_name` should stay connected to: ``node1 ..
    node<cluster_size>`` on `host` by number, then the seeds; never itself,
    never one address twice (a seed naming a numbered address is dropped)."""
    if not isinstance(cluster_size, int) or cluster_size < 0:
        raise ValueError(f"cluster_size must be an int >= 0, got {cluster_size!r}")
    targets: list[Target] = []
    seen: set[tuple[str, int]] = set()
    if own_address is not None:
        seen.add(own_address)
    for number in range(1, cluster_size + 1):
        name = numbered_name(number)
        address = (host, listen_port(name, base_port))
        if name == own_name or address in seen:
            continue
        seen.add(address)
        targets.append(Target(host, address[1], name))
    for seed in seeds:
        address = parse_seed(seed)
        if address in seen:
            continue
        seen.add(address)
        targets.append(Target(address[0], address[1], None, seed=True))
    return targets
