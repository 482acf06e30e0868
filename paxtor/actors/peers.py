"""A node's connections to its peers: one up `Connection` per peer node.

`PeerConnections` owns the node's `Listener`, one dialer greenlet per
`Target` (numbered peers and seeds, redialed with capped backoff whenever
not connected; and the nodes the mesh learned of, added and dropped by
`dial` / `stop_dialing_node`) and the table of up connections. Which of two connections
to one peer survives is decided by `paxtor.actors.peer_rules` (a restarted
peer, i.e. a newer incarnation, replaces the old one; otherwise the
connection initiated by the smaller name wins), at admission when possible
and when a second connection comes up otherwise.

It reports through callbacks, in order per peer: ``on_up(conn)`` once a
connection is the peer's and ``on_down(name, incarnation, reason)`` once
that connection is lost (exactly once each); ``on_attempt_over()`` after
every connection attempt, so that whoever held signals for a peer while
`reaching` it can drop them if it is still not up. Incoming frames go
straight from the connection to ``on_message`` (the hot path).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import gevent.socket
import structlog

from paxtor.actors.connection import Connection
from paxtor.actors.connection_config import ConnectionConfig
from paxtor.actors.discovery import Target
from paxtor.actors.listener import Listener
from paxtor.actors.peer_rules import Backoff, ConnectionInfo, admission, keeps_new

__all__ = ["PeerConnections"]

log = structlog.get_logger(__name__)

OnUp = Callable[[Connection], None]
OnDown = Callable[[str, int, str], None]
OnMessage = Callable[[Connection, Any], None]

NODE_STOPPING = "node_stopping"


class PeerConnections:
    """The listener, the dialers and the up connection of each peer (see module doc)."""

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        targets: Iterable[Target],
        on_message: OnMessage,
        on_up: OnUp,
        on_down: OnDown,
        on_attempt_over: Callable[[], None] = lambda: None,
        host: str = "127.0.0.1",
        port: int = 0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        address_of: Callable[[str], tuple[str, int] | None] = lambda name: None,
        rng: random.Random | None = None,
        source_host: str | None = None,
        listen_socket: Any = None,
    ) -> None:
        self.name = config.name
        self.config = dataclasses.replace(config, admit=self._admit)
        #: peer name -> the connection that is up and in use
        self.up: dict[str, Connection] = {}
        self.targets = list(targets)
        self._on_message = on_message
        self._on_up = on_up
        self._on_down = on_down
        self._on_attempt_over = on_attempt_over
        self._address_of = address_of
        #: dials leave from this address (None: the kernel picks), so peers and firewalls see who dialed
        self._source = (source_host, 0) if source_host else None
        self._reconnect = (reconnect_min, reconnect_max)
        self._rng = rng or random.Random()
        #: every connection we initiated that is not closed yet
        self._outgoing: set[Connection] = set()
        #: peer name (None: a seed not known yet) -> attempts in flight (TCP or handshake)
        self._attempts: dict[str | None, int] = {}
        #: the same, counting only attempts whose TCP connection is made (handshaking)
        self._shaking: dict[str | None, int] = {}
        #: node learned from the mesh -> its target and dialer greenlet
        self._learned: dict[str, tuple[Target, gevent.Greenlet]] = {}
        self._kicks: dict[int, gevent.event.Event] = {}
        self._greenlets: list[gevent.Greenlet] = []
        self._changed = gevent.event.Event()
        self._stopped = False
        self.listener = Listener(
            self.config, on_message=on_message, on_close=self._closed, on_up=self._up, host=host, port=port,
            sock=listen_socket,
        )  # fmt: skip

    # -- life ------------------------------------------------------------------

    def start(self) -> None:
        """Listen (raises OSError if the port is taken), then dial every target."""
        self.listener.start()
        for target in self.targets:
            kick = self._kicks[id(target)] = gevent.event.Event()
            self._greenlets.append(gevent.spawn(self._dial_loop, target, kick))

    @property
    def port(self) -> int:
        return self.listener.port

    def stop_dialing(self) -> None:
        """Accept and dial nothing more (the first half of stopping)."""
        self._stopped = True
        for greenlet in [*self._greenlets, *(g for _, g in self._learned.values())]:
            greenlet.kill(block=False)
        self._learned.clear()
        self.listener.stop(close_connections=False)

    # -- nodes learned from the mesh -------------------------------------------------

    def has_target(self, name: str) -> bool:
        """Whether a configured target (numbered, or a seed once named) is `name`."""
        return any(t.name == name for t in self.targets)

    def dial(self, name: str, host: str, port: int) -> None:
        """Keep node `name` at (host, port) connected, as any target, until
        `stop_dialing_node`; a new address replaces the one being dialed. A
        numbered target's address is only a guess (`base_port + N` on
        `host`): the node's own announcement replaces it; a seed's is kept."""
        if self._stopped or name == self.name:
            return
        configured = [t for t in self.targets if t.name == name]
        if configured:
            for target in configured:
                if not target.seed and target.address != (host, port):
                    log.info("target_moved", node=self.name, peer=name, was=str(target), now=f"{host}:{port}")
                    target.host, target.port = host, port
                    self._kicks[id(target)].set()
            return
        learned = self._learned.get(name)
        if learned is not None and not learned[1].dead:
            target = learned[0]
            if target.address != (host, port):
                target.host, target.port = host, port
                self._kicks[id(target)].set()
            return
        target = Target(host, port, name)
        kick = self._kicks[id(target)] = gevent.event.Event()
        self._learned[name] = (target, gevent.spawn(self._dial_loop, target, kick))

    def stop_dialing_node(self, name: str) -> None:
        """Stop dialing a node learned from the mesh (its connection, if up, stays)."""
        learned = self._learned.pop(name, None)
        if learned is not None:
            self._kicks.pop(id(learned[0]), None)
            learned[1].kill(block=False)

    def dialing_learned(self) -> list[str]:
        """The learned nodes being kept connected, sorted."""
        return sorted(self._learned)

    def close_all(self, reason: str = NODE_STOPPING) -> None:
        """Close every connection, up or in flight (on_down runs for the up ones)."""
        self.stop_dialing()
        for conn in [*self.up.values(), *self._outgoing, *self.listener.connections]:
            conn.close(reason)

    # -- queries and requests --------------------------------------------------------

    def reaching(self, name: str) -> bool:
        """True while an attempt that may connect `name` is in flight (one
        to `name`, or to a seed whose name is not known yet)."""
        attempts = self._attempts
        return bool(attempts) and (name in attempts or None in attempts)

    def connections(self) -> list[Connection]:
        """Every connection not closed yet: up, dialing or being accepted."""
        found = {id(c): c for c in (*self.up.values(), *self._outgoing, *self.listener.connections)}
        return [c for c in found.values() if c.state != "closed"]

    def connect(self, name: str, timeout: float | None = 5.0) -> bool:
        """Make sure `name` is connected: dial it now (a target, or a
        numbered name found by number) and wait; True once it is up."""
        if name in self.up:
            return True
        if self._stopped:
            return False
        kicked = False
        for target in self.targets:
            if target.name == name or target.name is None:
                self._kicks[id(target)].set()
                kicked = kicked or target.name == name
        learned = self._learned.get(name)
        if learned is not None:
            self._kicks[id(learned[0])].set()
            kicked = True
        if not kicked:
            address = self._address_of(name)
            if address is not None:
                once = Target(address[0], address[1], name)
                self._greenlets = [g for g in self._greenlets if not g.dead]
                self._greenlets.append(gevent.spawn(self._dial_once, once))
            elif not any(t.name is None for t in self.targets):
                return False  # nowhere to look for it
        return self.wait_until(lambda: name in self.up, timeout)

    def disconnect(self, name: str, reason: str = "disconnected") -> bool:
        """Close the connection to `name` (Erlang's disconnect_node); the
        dialers will connect again later if it is a target."""
        conn = self.up.get(name)
        if conn is None:
            return False
        conn.close(reason)
        return True

    def wait_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Block until `condition()` holds, re-checked on every peer up/down and
        at the end of every connection attempt."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._changed.wait(remaining)
        return True

    def _notify(self) -> None:
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    # -- dialing ------------------------------------------------------------------------

    def _dial_loop(self, target: Target, kick: gevent.event.Event) -> None:
        """Keep `target` connected, for the life of the node."""
        backoff = Backoff(*self._reconnect, rng=self._rng)
        if target.name is not None and target.name < self.name:
            # The smaller name's connection wins a simultaneous connect:
            # give its dial a head start rather than race it.
            kick.wait(backoff.next())
        while not self._stopped:
            current = self.up.get(target.name) if target.name is not None else None
            if current is not None:
                current.wait_closed()
                kick.clear()
                kick.wait(backoff.next())
                continue
            conn = self._dial_once(target)
            if conn is not None and conn.peer is not None:
                target.name = conn.peer.name  # learned, for a seed
            if conn is not None and conn.is_up:
                backoff.reset()
                continue
            if conn is not None and (conn.close_reason or "").startswith("own_name"):
                log.debug("dial_stopped", node=self.name, target=str(target), reason="it is this node")
                return
            kick.clear()
            kick.wait(backoff.next())

    def _dial_once(self, target: Target) -> Connection | None:
        """One attempt: TCP connect (quietly: a peer that is not running is
        the common case), then the handshake; returns the connection once up
        or closed, or None if TCP failed."""
        key = target.name
        _count(self._attempts, key, 1)
        shaking = [False]
        try:
            return self._attempt(target, shaking)
        finally:
            _count(self._attempts, key, -1)
            if shaking[0]:
                _count(self._shaking, key, -1)
            self._notify()  # whoever waits on `reaching` looks again
            self._on_attempt_over()

    def _attempt(self, target: Target, shaking: list[bool]) -> Connection | None:
        config = self.config
        faults = config.faults
        if faults is not None and target.name is not None and faults.link(self.name, target.name).block_dial:
            log.debug("dial_failed", node=self.name, target=str(target), error="blocked by fault injection")
            return None
        try:
            sock = gevent.socket.create_connection(
                target.address, timeout=config.handshake_timeout, source_address=self._source
            )
        except OSError as exc:
            log.debug("dial_failed", node=self.name, target=str(target), error=str(exc))
            return None
        if self._stopped:
            sock.close()
            return None
        shaking[0] = True
        _count(self._shaking, target.name, 1)
        sock.settimeout(None)
        conn = Connection(
            config,
            role="initiator",
            on_message=self._on_message,
            on_close=self._closed,
            on_up=self._up,
            sock=sock,
            address=target.address,
            expected_peer=target.name,
            server_hostname=target.host,
        )
        self._outgoing.add(conn)
        conn.start()
        conn.wait_up()
        return conn

    # -- connection callbacks (must not block) -------------------------------------------

    def _admit(self, name: str, incarnation: int) -> str | None:
        """ConnectionConfig.admit: the acceptor's early duplicate check."""
        if self._stopped:
            return NODE_STOPPING
        current = self.up.get(name)
        admit, why = admission(
            local_name=self.name,
            peer_name=name,
            peer_incarnation=incarnation,
            up_incarnation=current.peer.incarnation if current is not None and current.peer else None,
            dialing=self._handshaking(name),  # a seed not named yet may be this peer
        )
        if not admit:
            return why
        if why is not None and current is not None:
            current.close(why)  # the peer restarted: its old incarnation is gone
        return None

    def _handshaking(self, name: str) -> bool:
        """True while our own attempt that may reach `name` has its TCP connection:
        one still connecting may never (one-way reachability), so it yields."""
        shaking = self._shaking
        return bool(shaking) and (name in shaking or None in shaking)

    def _info(self, conn: Connection) -> ConnectionInfo:
        assert conn.peer is not None
        initiator = self.name if conn.role == "initiator" else conn.peer.name
        return ConnectionInfo(conn.peer.incarnation, initiator)

    def _up(self, conn: Connection) -> None:
        peer = conn.peer
        assert peer is not None
        name = peer.name
        if self._stopped:
            conn.close(NODE_STOPPING)
            return
        current = self.up.get(name)
        if current is not None and current is not conn:
            if keeps_new(self._info(current), self._info(conn)):
                current.close("replaced: another connection to this peer won")
            else:
                conn.close("duplicate: another connection to this peer is in use")
                return
        self.up[name] = conn
        self._notify()
        self._on_up(conn)

    def _closed(self, conn: Connection, reason: str) -> None:
        self._outgoing.discard(conn)
        peer = conn.peer
        if peer is not None and self.up.get(peer.name) is conn:
            del self.up[peer.name]
            self._notify()
            self._on_down(peer.name, peer.incarnation, reason)


def _count(counts: dict[str | None, int], key: str | None, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left:
        counts[key] = left
    else:
        counts.pop(key, None)
