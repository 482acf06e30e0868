"""`python -m paxtor node _|N [...]` and `python -m paxtor demo`.

`node` starts a Paxtor node, connects it to the numbered peers on this host
(and any seeds), and opens an interactive Python shell that runs on the
gevent hub: the shell is the main greenlet, reading stdin in a worker
thread, so the node's processes keep running while you type. The shell
greenlet is a process of the node (`receive`, `call` and `self_pid` work
there); an exit signal ends that process and the next call starts a new
one, as Erlang's shell does. Ctrl-D (or `quit()`) stops the node.
`--no-shell` runs headless until SIGTERM/SIGINT, then stops cleanly (exit 0).
`--http [HOST:]PORT` serves the node's web view and /metrics.

`status` joins as a client, prints the cluster's state and leaves
(`paxtor.observe.status`).

Bad flags, a port in use, and a data directory the node cannot use (a full
disk, a corrupt log) are one-line errors with exit status 2.
Logging (structlog) is configured here only: key=value, or JSON with `--log-json`.
"""

from __future__ import annotations

import argparse
import code
import errno
import logging
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

import gevent
import gevent.event
import structlog
from greenlet import getcurrent

from paxtor.actors.listener import ListenError
from paxtor.observe.status import add_status_parser, run_status
from paxtor.paxos.node_meta import NodeMetaCorrupt, NodeMetaMismatch
from paxtor.paxos.storage import AcceptorLogError

__all__ = ["main", "build_parser", "configure_logging"]

PROG = "paxtor"
LOG_LEVELS = ("debug", "info", "warning", "error")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), so scripts see what went wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _request_bytes(text: str) -> int:
    """--max-request-bytes: checked here, so a bad value is a one-line error before the node starts."""
    from paxtor.paxos.config import MIN_REQUEST_BYTES
    from paxtor.paxos.wire_format import MAX_ENCODED_SIZE

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of bytes: {text!r}") from None
    if not MIN_REQUEST_BYTES <= value <= MAX_ENCODED_SIZE:
        raise argparse.ArgumentTypeError(f"must be from {MIN_REQUEST_BYTES} to {MAX_ENCODED_SIZE} bytes, got {text!r}")
    return value


def _host_of(text: str) -> tuple[int, str]:
    """``N=ADDRESS`` (``nodeN=ADDRESS`` too) for --hosts."""
    number_text, sep, address = text.strip().partition("=")
    number_text = number_text.strip().removeprefix("node")
    if not sep or not number_text.isdigit() or int(number_text) < 1 or not address.strip():
        raise argparse.ArgumentTypeError(f"--hosts takes N=ADDRESS (e.g. 1=127.0.0.11), got {text!r}")
    return int(number_text), address.strip()


def _hosts(text: str) -> list[tuple[int, str]]:
    return [_host_of(part) for part in text.split(",") if part.strip()]


def _node_name(text: str) -> str:
    from paxtor.actors.handshake import validate_node_name

    if text == "_":
        return text
    if text.isdigit() and int(text) >= 1:
        return f"node{int(text)}"
    if text.startswith("node") and text[4:].isdigit() and int(text[4:]) >= 1:
        return f"node{int(text[4:])}"
    if text.startswith("node") or validate_node_name(text) is not None:
        raise argparse.ArgumentTypeError(
            f"a node is '_' (the next free number), a number N >= 1, or a client's own name "
            f"(e.g. web-$(hostname)-$$), got {text!r}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Paxtor: CP locks and singleton processes on gevent.")
    commands = parser.add_subparsers(dest="command", metavar="{node,status,demo,cluster}", parser_class=_Parser)
    node = commands.add_parser("node", help="start a node (and a shell)", description=__doc__.split("\n\n")[1])
    node.add_argument("name", type=_node_name, metavar="_|N|NAME",
                      help="'_' for the next free number, N for nodeN, or a client's unique name (with --client)")
    node.add_argument("--cluster-size", type=int, default=3, help="voters are node1..nodeN (default 3)")
    node.add_argument("--host", default="127.0.0.1", help="address to listen on and find numbered peers at")
    node.add_argument(
        "--hosts",
        type=_hosts,
        action="append",
        default=[],
        metavar="N=ADDR[,...]",
        help="numbered nodes on other addresses than --host (e.g. 1=127.0.0.11); dials leave from the node's own",
    )
    node.add_argument("--base-port", type=int, default=4370, help="nodeN listens on base-port + N (default 4370)")
    node.add_argument(
        "--seeds", action="append", default=[], metavar="HOST:PORT[,...]", help="more peers to connect to"
    )
    node.add_argument("--cookie", default=None, help="shared secret (default: $PAXTOR_COOKIE, else ~/.paxtor.cookie)")
    node.add_argument("--data-dir", default=None, help="where durable state lives (default ./paxtor-data)")
    node.add_argument("--durability", choices=("fsync", "memory"), default=None,
                      help="voters default to fsync; clients to memory (they write nothing)")
    node.add_argument("--client", action="store_true", help="join without voting")
    node.add_argument("--join", action="store_true",
                      help="join a cluster that exists; never found one (a restart after the voters changed)")
    node.add_argument("--no-singletons", action="store_true", help="host no singletons on this node")
    node.add_argument(
        "--hidden",
        action="store_true",
        help="a client that connects only to its seeds and the voters, is named to no other node, hosts nothing",
    )
    node.add_argument("--port", type=int, default=None,
                      help="a named client's listen port (default: any free one; numbered nodes use base-port + N)")
    node.add_argument(
        "--tls-cert", metavar="PEM", help="this node's certificate (TLS between nodes; with --tls-key, --tls-ca)"
    )
    node.add_argument("--tls-key", metavar="PEM", help="this node's private key")
    node.add_argument("--tls-ca", metavar="PEM", help="the CA that signs every node's certificate")
    node.add_argument(
        "--voter",
        action="store_true",
        help="run an acceptor even if N is above --cluster-size (it votes once added: paxtor cluster add)",
    )
    node.add_argument("--allow-modules", action="append", default=None, metavar="PREFIX[,...]",
                      help="only these modules (and those under them) may be named by remote spawns and "
                           "singleton starts here, e.g. myapp,paxtor.demo (default: any importable module)")
    node.add_argument("--no-shell", action="store_true", help="run headless until SIGTERM/SIGINT")
    node.add_argument("--log-json", action="store_true", help="log JSON lines instead of key=value")
    node.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    node.add_argument("--heartbeat-interval", type=_positive, default=1.0, metavar="SECONDS")
    node.add_argument("--heartbeat-timeout", type=_positive, default=5.0, metavar="SECONDS",
                      help="a peer silent this long is down (default 5)")
    node.add_argument("--handshake-timeout", type=_positive, default=5.0, metavar="SECONDS")
    node.add_argument("--reconnect-max", type=_positive, default=5.0, metavar="SECONDS",
                      help="longest wait between attempts to reach a lost peer")
    node.add_argument("--lease", type=_positive, default=None, metavar="SECONDS",
                      help="how long a quorum's heartbeat ack keeps this node's lease (default 3)")
    node.add_argument("--lease-margin", type=_positive, default=None, metavar="SECONDS",
                      help="safety margin added to the acceptors' silence wait (default 0.5)")
    node.add_argument("--max-drift", type=_positive, default=None, metavar="FRACTION",
                      help="bound on clock-rate drift, e.g. 0.05 for 5%% (default 0.05)")
    node.add_argument("--tombstone-ttl", type=_positive, default=None, metavar="SECONDS",
                      help="drop keys emptied this long ago from every voter (default 60)")
    node.add_argument("--http", default=None, metavar="[HOST:]PORT",
                      help="serve the read-only web view and /metrics there (host default 127.0.0.1)")
    node.add_argument("--max-request-bytes", type=_request_bytes, default=None, metavar="BYTES",
                      help="largest key and value of one request, encoded (default 1572864: 1.5 MiB; "
                           "every node of a cluster must use the same)")
    commands.add_parser("demo", help="the lock and counter examples on a local 3-node cluster")
    add_status_parser(commands, _positive, "nodes to connect to (and to ask)")
    from paxtor.cluster_command import add_cluster_parser

    add_cluster_parser(commands)
    return parser


def configure_logging(json_output: bool = False, level: str = "info", stream: TextIO | None = None) -> None:
    """structlog to `stream` (stderr): one key=value (or JSON) line per event."""
    renderer: Any
    if json_output:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"], drop_missing=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "node":
        return run_node(args)
    if args.command == "status":
        configure_logging(level="error")
        return run_status(args)
    if args.command == "demo":
        from paxtor.demo import run_demo

        configure_logging(level="error")
        return run_demo()
    if args.command == "cluster":
        from paxtor.cluster_command import run_cluster

        return run_cluster(args)
    sys.stderr.write(f"usage: {PROG} {{node,status,demo,cluster}} ... (see {PROG} --help)\n")
    return 2


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG} node: error: {message}\n")
    return 2


def _data_dir_error(exc: OSError, args: argparse.Namespace) -> str:
    """What a start-up OSError other than listening says: the data directory could not be
    written (or read), with the file when the error names one."""
    directory = Path(args.data_dir or "paxtor-data").expanduser().absolute()
    if args.name != "_":
        directory = directory / args.name
    what = exc.strerror or str(exc)
    if exc.filename is not None and exc.strerror:
        what = f"{exc.filename}: {exc.strerror}"
    return f"cannot use the data directory {directory}: {what}"


def _allowed_modules(args: argparse.Namespace) -> list[str] | None:
    if args.allow_modules is None:
        return None
    return [prefix.strip() for group in args.allow_modules for prefix in group.split(",") if prefix.strip()]


def _paxos_settings(args: argparse.Namespace) -> dict[str, float]:
    """The PaxosKV settings given on the command line (the rest keep their defaults)."""
    given = {
        "lease": args.lease, "margin": args.lease_margin, "max_drift": args.max_drift,
        "tombstone_ttl": args.tombstone_ttl, "max_request_bytes": args.max_request_bytes,
    }
    return {name: value for name, value in given.items() if value is not None}


def _tls(args: argparse.Namespace) -> dict[str, Any]:
    """``ssl_context`` for start_node from --tls-cert/--tls-key/--tls-ca (all or none)."""
    from paxtor.actors.tls import tls_contexts

    given = [args.tls_cert, args.tls_key, args.tls_ca]
    if not any(given):
        return {}
    if not all(given):
        raise ValueError("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
    return {"ssl_context": tls_contexts(args.tls_cert, args.tls_key, args.tls_ca)}


def _role_flags(args: argparse.Namespace) -> dict[str, Any]:
    """start_node's role arguments from --client, --hidden, --no-singletons, --port."""
    flags: dict[str, Any] = {"voter": args.voter or not (args.client or args.hidden), "hidden": args.hidden}
    if args.no_singletons:
        flags["singletons"] = False
    if args.port is not None:
        flags["port"] = args.port
    return flags


def run_node(args: argparse.Namespace) -> int:
    from paxtor.actors.cookie import CookieError
    from paxtor.node import start_node

    configure_logging(args.log_json, args.log_level)
    numbered = args.name.startswith("node") and args.name[4:].isdigit()
    if args.name != "_" and not (args.voter or args.client or args.hidden) and (
        not numbered or int(args.name[4:]) > args.cluster_size
    ):
        return _fail(
            f"{args.name} is not one of the voters a cluster is founded with (node1..node{args.cluster_size}): "
            "pass --client to join as a client, or --voter to run an acceptor you then add (paxtor cluster add)"
        )
    seeds = [seed for group in args.seeds for seed in group.split(",") if seed.strip()]
    hosts = dict(pair for group in args.hosts for pair in group)
    own_host = hosts.get(int(args.name[4:]), args.host) if numbered else args.host
    try:
        node = start_node(
            args.name,
            cluster_size=args.cluster_size,
            host=args.host,
            hosts=hosts,
            base_port=args.base_port,
            seeds=seeds,
            cookie=args.cookie,
            data_dir=args.data_dir,
            durability=args.durability,
            heartbeat_interval=args.heartbeat_interval,
            heartbeat_timeout=args.heartbeat_timeout,
            handshake_timeout=args.handshake_timeout,
            reconnect_max=args.reconnect_max,
            paxos=_paxos_settings(args),
            http=args.http,
            join=args.join,
            **_role_flags(args),
            **_tls(args),
            allowed_modules=_allowed_modules(args),
        )
    except ListenError as exc:
        if exc.errno == errno.EADDRINUSE:
            if args.name == "_":
                return _fail(f"no free node port on {args.host} from {args.base_port + 1}")
            port = args.base_port + int(args.name[4:]) if numbered else args.port
            return _fail(f"port {port} on {own_host} is in use (is {args.name} already running?)")
        return _fail(f"cannot listen on {own_host}: {exc.strerror or exc}")
    except (ValueError, TypeError, CookieError) as exc:
        return _fail(str(exc))
    except (
        AcceptorLogError,
        NodeMetaCorrupt,
        NodeMetaMismatch,
    ) as exc:  # the data directory: refused, never guessed at
        structlog.get_logger(__name__).error("node_refused", node=args.name, reason=str(exc))
        return _fail(str(exc))
    except OSError as exc:  # anything else the start touched: the data directory (a full disk...)
        reason = _data_dir_error(exc, args)
        structlog.get_logger(__name__).error("node_refused", node=args.name, reason=reason)
        return _fail(reason)
    if args.no_shell:
        return _run_headless(node)
    return _run_shell(node)


def _run_headless(node: Any) -> int:
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        stop.wait()
    finally:
        structlog.get_logger(__name__).info("node_stopping", node=node.name, reason="signal")
        node.stop()
        for handler in handlers:
            handler.cancel()
    return 0


# -- the shell ------------------------------------------------------------------------------


class _LineReader:
    """Reads stdin lines in the hub's threadpool, so the hub keeps running.

    One read at a time: a read interrupted in the greenlet (Ctrl-C) stays
    pending in its thread and the next `readline` takes its result.
    """

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._pending: Any = None
        self._editing = stdin.isatty() and stdout.isatty()
        if self._editing:
            try:
                import readline  # noqa: F401 - line editing and history for input()
            except ImportError:
                pass

    def _read_interactive(self, prompt: str) -> str:
        try:
            return input(prompt) + "\n"
        except EOFError:
            return ""

    def readline(self, prompt: str) -> str:
        if self._pending is None:
            pool = gevent.get_hub().threadpool
            if self._editing:
                self._pending = pool.spawn(self._read_interactive, prompt)
            else:
                self._stdout.write(prompt)
                self._stdout.flush()
                self._pending = pool.spawn(self._stdin.readline)
        line = self._pending.get()
        self._pending = None
        return line


class HubConsole(code.InteractiveConsole):
    """An InteractiveConsole whose input never blocks the gevent hub."""

    def __init__(self, namespace: dict[str, Any], reader: _LineReader) -> None:
        super().__init__(namespace, filename="<paxtor>")
        self._reader = reader

    def raw_input(self, prompt: str = "") -> str:
        line = self._reader.readline(prompt)
        if not line:
            raise EOFError
        return line.rstrip("\n")


def shell_namespace(node: Any) -> dict[str, Any]:
    """What the shell starts with: `paxtor`, `actors` and its public names,
    `gevent`, the node (`this_node`) and Erlang's node(), nodes(), connect()."""
    import paxtor
    import paxtor.actors as actors
    from paxtor.actors import distribution

    namespace: dict[str, Any] = {"__name__": "__console__", "__doc__": None}
    namespace.update({name: getattr(actors, name) for name in actors.__all__})
    namespace.update(
        paxtor=paxtor,
        actors=actors,
        gevent=gevent,
        this_node=node,
        node=distribution.node,
        nodes=distribution.nodes,
        connect=distribution.connect,
        monitor_nodes=distribution.monitor_nodes,
    )
    return namespace


def _run_shell(node: Any, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    from paxtor.actors import self_pid

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    main_greenlet = getcurrent()
    loop = gevent.get_hub().loop
    why = ["shell_exit"]

    def terminate() -> None:  # SIGTERM: leave the shell wherever it is
        why[0] = "signal"
        loop.run_callback(main_greenlet.throw, SystemExit(0))

    handler = gevent.signal_handler(signal.SIGTERM, terminate)
    me = self_pid()  # the shell is a process of the node from now on
    banner = (
        f"paxtor node {node.name} ({node.role}) on {node.dist.host}:{node.dist.port}, shell process {me!r}\n"
        f"voters node1..node{node.cluster_size}; connected: {', '.join(node.nodes()) or 'none yet'}\n"
        "preloaded: paxtor, actors and its names (spawn, send, receive, call, ...), gevent,\n"
        "node(), nodes(), connect(name), this_node. Ctrl-D or quit() stops the node."
    )
    console = HubConsole(shell_namespace(node), _LineReader(stdin, stdout))
    try:
        console.interact(banner=banner, exitmsg="")
    except SystemExit:
        pass
    finally:
        handler.cancel()
        structlog.get_logger(__name__).info("node_stopping", node=node.name, reason=why[0])
        node.stop()
    return 0
