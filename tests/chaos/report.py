"""The text report of one chaos run (and the one-line summary of many)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    def unknown(self) -> bool:
        return any(v.unknown for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return self.violations == 0 and not self.unknown

    @property
    def fault_count(self) -> int:
        return sum(1 for _, text in self.faults_log if not text.startswith(("heal", "restart", "SIGCONT", "final")))


def format_run(r: RunResult) -> str:
    lines = [f"=== chaos run seed={r.seed}  faults enabled: {', '.join(r.enabled)}  ({r.duration:.1f} s)"]
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
    line = (f"=== {len(results)} runs, {ops} operations, {faults} faults, "
            f"{sum(r.violations for r in results)} violations, {sum(r.unknown for r in results)} unknown, "
            f"worst recovery {('n/a' if worst is None else f'{worst:.2f} s')}")  # fmt: skip
    if bad:
        line += "\nfailing seeds: " + ", ".join(str(r.seed) for r in bad)
        line += "\n" + "\n".join(f"  {r.replay}" for r in bad)
    return line
