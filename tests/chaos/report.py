"""The text report of one chaos run (and the one-line summary of many)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.checkers import Verdict


@dataclass
class RunResult:
    seed: int
    enabled: tuple[str, ...]
    faults_log: list[tuple[float, str]]
    operations: dict[str, int]
    verdicts: list[Verdict]
    recovery: float | None
    duration: float
    replay: str
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        return sum(len(v.violations) for v in self.verdicts) + (1 if self.error else 0)

    @property
    def safety_violations(self) -> int:
        """Violations of the safety checkers (lost writes, two holders, not linearizable...),
        not counting liveness."""
        return sum(len(v.violations) for v in self.verdicts if v.name != "liveness")

    @property
    def unknown(self) -> bool:
        return any(v.unknown for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return self.violations == 0 and not self.unknown

    @property
    def fault_count(self) -> int:
        return len(self.extra.get("windows", ())) or sum(
            1 for _, text in self.faults_log
            if not text.startswith(("heal", "restart", "SIGCONT", "final", "quiet", "clock", "liveness",
                                    "iptables: heal", "slow disk over", "iptables faults skipped"))
        )  # fmt: skip

    def faults_by_kind(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for kind, *_ in self.extra.get("windows", ()):
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


def format_run(r: RunResult) -> str:
    lines = [f"=== chaos run seed={r.seed}  faults enabled: {', '.join(r.enabled)}  ({r.duration:.1f} s)"]
    if r.extra.get("shape"):
        lines.append(f"cluster: {r.extra['shape']}")
    if r.extra.get("negative_control"):
        lines.append(f"NEGATIVE CONTROL: {r.extra['negative_control']}; a violation here is expected, not a bug")
    lines.append("faults:")
    lines += [f"  [{t:6.2f}s] {text}" for t, text in r.faults_log] or ["  (none)"]
    lines.append("operations: " + ", ".join(f"{k}={n}" for k, n in r.operations.items()))
    for v in r.verdicts:
        state = "UNKNOWN" if v.unknown else ("ok" if not v.violations else f"{len(v.violations)} VIOLATIONS")
        lines.append(f"{v.name}: {state}")
        lines += [f"    {n}" for n in v.notes]
        lines += [f"  ! {x}" for x in v.violations[:20]]
    if r.error:
        lines.append(f"ERROR: {r.error}")
    if r.extra.get("error_summary"):
        lines.append("register operations that failed (recorded as maybe): " + "; ".join(r.extra["error_summary"]))
    if r.extra.get("timeline"):
        lines.append("progress per second (successes):")
        lines += ["  " + line for line in r.extra["timeline"]]
    if r.extra.get("plot"):
        lines.append(f"plot: {r.extra['plot']}")
    rec = "n/a" if r.recovery is None else f"{r.recovery:.2f} s"
    lines.append(f"recovery after the final heal: {rec}")
    verdict = "PASS" if r.ok else ("UNKNOWN" if r.violations == 0 else "FAIL")
    lines.append(f"result: {verdict}")
    if not r.ok:
        lines.append(f"replay (same seed, same fault schedule; timing is real): {r.replay}")
        if r.extra.get("logs"):
            lines.append(f"node logs kept in {r.extra['logs']}")
    return "\n".join(lines)


def format_summary(results: list[RunResult]) -> str:
    ops = sum(sum(r.operations.values()) for r in results)
    faults = sum(r.fault_count for r in results)
    bad = [r for r in results if not r.ok]
    worst = max((r.recovery for r in results if r.recovery is not None), default=None)
    kinds: dict[str, int] = {}
    for r in results:
        for kind, n in r.faults_by_kind().items():
            kinds[kind] = kinds.get(kind, 0) + n
    line = (f"=== {len(results)} runs, {ops} operations, {faults} faults, "
            f"{sum(r.violations for r in results)} violations, {sum(r.unknown for r in results)} unknown, "
            f"worst recovery {('n/a' if worst is None else f'{worst:.2f} s')}")  # fmt: skip
    by_checker: dict[str, int] = {}
    for r in results:
        for v in r.verdicts:
            if v.violations or v.unknown:
                by_checker[v.name] = by_checker.get(v.name, 0) + 1
        if r.error:
            by_checker["error"] = by_checker.get("error", 0) + 1
    if by_checker:
        line += "\nfailing runs by checker: " + ", ".join(f"{k}={n}" for k, n in sorted(by_checker.items()))
    if kinds:
        line += "\nfaults by kind: " + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items()))
    voters = {}
    for r in results:
        shape = r.extra.get("shape", "")
        voters[shape.split(" voters")[0]] = voters.get(shape.split(" voters")[0], 0) + 1
    if any(voters):
        line += "\nruns by voters: " + ", ".join(f"{k} voters: {n}" for k, n in sorted(voters.items()) if k)
    plots = [r.extra["plot"] for r in results if str(r.extra.get("plot", "")).endswith(".png")]
    if plots:
        line += f"\nplots: {plots[0]}" + (
            f" ... ({len(plots)} PNGs in {Path(plots[0]).parent})" if len(plots) > 1 else ""
        )
    if bad:
        line += "\nfailing seeds: " + ", ".join(str(r.seed) for r in bad)
        line += "\n" + "\n".join(f"  {r.replay}" for r in bad)
    return line
