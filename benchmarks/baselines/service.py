"""Baseline clusters kept running, measured phase by phase on request (interleaved rounds).

``BaselineService(names, settings)`` starts a worker (``python -m
benchmarks.baselines --serve``) that starts every available cluster once,
opens its clients, warms up, and then measures one phase of one system per
request: a JSON line in (``{"system": "etcd", "phase": "lock_unlock"}``), a
JSON line out. The Paxtor benchmarks call it between their own phases, so
a slow moment of the machine lands on every system of a round alike.

The worker is a separate process (grpc and kazoo run OS threads; the
benchmarks are gevent processes), started through ``gevent.subprocess`` so a
gevent caller keeps serving its other greenlets while a phase runs. A system
that is not installed is reported as skipped with the reason, and the
benchmarks go on without it.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from typing import IO, Any

from . import REPO_ROOT, _cluster, _die_with_parent, _module, _stop_child
from .harness import PHASE_NAMES, BenchSettings, Phases


def serve(names: list[str], settings: BenchSettings, install: bool | None, out: IO[str], inp: IO[str]) -> None:
    """The worker: start the clusters, say which are ready, answer phase requests until EOF."""
    with ExitStack() as stack:
        ready: dict[str, Any] = {}
        measured: dict[str, Phases] = {}
        for name in names:
            module = _module(name)
            ok, reason = module.available(install)
            if not ok:
                ready[name] = {"skipped": reason}
                continue
            try:
                cluster = stack.enter_context(_cluster(name))
                phases = module.phases(cluster, settings)
                stack.callback(phases.close)
                phases.warm_up()
            except Exception as exc:  # noqa: BLE001 - one baseline failing must not hide the other
                ready[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                continue
            measured[name] = phases
            ready[name] = {
                "available": reason, "server_version": cluster.version, "client": module.client_description(),
            }  # fmt: skip
        _answer(out, {"ready": ready})
        for line in inp:
            request = json.loads(line)
            system, phase = request["system"], request["phase"]
            if system not in measured or phase not in PHASE_NAMES:
                _answer(out, {"error": f"cannot measure {phase!r} of {system!r}"})
                continue
            try:
                measured[system].refresh()
                _answer(out, {"result": getattr(measured[system], phase)()})
            except Exception as exc:  # noqa: BLE001 - reported to the caller, who goes on
                _answer(out, {"error": f"{type(exc).__name__}: {exc}"[:2000]})


def _answer(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


class BaselineService:
    """The caller's side: `measure(system, phase)` -> figures, or None when that system is not there."""

    def __init__(
        self, names: tuple[str, ...], settings: BenchSettings, install: bool | None = None, timeout: float = 600.0
    ) -> None:
        import gevent.subprocess

        argv = [*_die_with_parent(), sys.executable, "-m", "benchmarks.baselines", "--serve",
                "--settings", json.dumps(settings.as_dict()), "--only", ",".join(names)]  # fmt: skip
        if install is not None:
            argv.append("--install" if install else "--no-install")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.timeout = timeout
        self.child = gevent.subprocess.Popen(
            argv, cwd=str(REPO_ROOT), env=env, stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE,
            text=True,
        )  # fmt: skip
        not_started = {"error": "the baseline worker did not start"}
        self.status: dict[str, dict[str, Any]] = {name: dict(not_started) for name in names}
        self.errors: list[str] = []
        ready = self._read()
        if ready is not None and "ready" in ready:
            self.status = ready["ready"]

    @property
    def systems(self) -> list[str]:
        """The systems measured (installed and started)."""
        return [name for name, status in self.status.items() if "available" in status]

    def reason(self, name: str) -> str:
        """Why `name` is not measured ("not installed: ..."), or its description."""
        status = self.status.get(name, {})
        if "skipped" in status:
            return f"not installed ({status['skipped']})"
        return status.get("error") or status.get("available") or "unknown"

    def measure(self, system: str, phase: str) -> dict[str, Any] | None:
        if system not in self.systems or self.child.poll() is not None:
            return None
        assert self.child.stdin is not None
        self.child.stdin.write(json.dumps({"system": system, "phase": phase}) + "\n")
        self.child.stdin.flush()
        answer = self._read()
        if answer is None or "error" in answer:
            self.errors.append(f"{system} {phase}: {answer and answer['error']}")
            return None
        return answer["result"]

    def _read(self) -> dict[str, Any] | None:
        import gevent

        assert self.child.stdout is not None
        with gevent.Timeout(self.timeout, False):
            line = self.child.stdout.readline()
            return json.loads(line) if line else None
        return None

    def close(self) -> None:
        """EOF to the worker (it stops its servers and removes their dirs), then by pid if it lingers."""
        if self.child.stdin is not None and not self.child.stdin.closed:
            try:
                self.child.stdin.close()
            except OSError:
                pass
        try:
            self.child.wait(timeout=60)
        except Exception:  # noqa: BLE001 - gevent's TimeoutExpired; stop it by pid then
            _stop_child(self.child)  # type: ignore[arg-type]

    def __enter__(self) -> BaselineService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
