"""Interleaved rounds: comparisons that hold on a noisy machine.

Systems measured one after the other let a slow minute of the shared disk
or CPU land on one side only. Here every phase runs each system in turn,
round after round (A B C, B C A, C A B, ...: the order rotates so that none
always follows the same neighbour), and every comparison is the median of
the per-round ratios, with their spread (lowest and highest round). Every
round's raw figures are kept for ``--json``.

A ratio here is always a speedup: above 1 means ours is better (faster, or
more per second), whatever the metric's direction. Ratios to the floor are
time per operation over the floor's time per operation: 1 is the floor.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Rounds", "Row", "Spread", "figure_text", "markdown", "per_op_seconds", "rotated", "speedup", "spread"]


def rotated(systems: Sequence[str], round_index: int) -> list[str]:
    """The order of `systems` in round `round_index`: shifted by one each round."""
    if not systems:
        return []
    shift = round_index % len(systems)
    return [*systems[shift:], *systems[:shift]]


@dataclass(frozen=True)
class Spread:
    """The median of per-round values and the lowest and highest of them."""

    median: float
    low: float
    high: float
    per_round: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "per_round": list(self.per_round)}

    def text(self, digits: int = 2, unit: str = "x") -> str:
        """``1.69x (0.86-2.53)``."""
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.low * factor, self.high * factor,
                      tuple(v * factor for v in self.per_round))  # fmt: skip


def spread(values: Sequence[float | None]) -> Spread | None:
    """The median and range of the values that exist; None if there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Spread(statistics.median(present), min(present), max(present), tuple(present))


def speedup(ours: float, theirs: float, higher_is_better: bool) -> float:
    """How many times better ours is (>1: ours faster or higher)."""
    return ours / theirs if higher_is_better else theirs / ours


def per_op_seconds(value: float, unit: str, clients: int = 1) -> float:
    """Seconds one client waits per operation, from a latency in ms or a total rate in 1/s."""
    if unit == "ms":
        return value / 1e3
    if unit == "us":
        return value / 1e6
    if unit == "per_s":
        return clients / value
    raise ValueError(f"unknown unit {unit!r}")


@dataclass
class Rounds:
    """The raw figures of every (round, phase, system), and comparisons across rounds."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, round_index: int, phase: str, system: str, figures: dict[str, Any]) -> None:
        self.rows.append({"round": round_index, "phase": phase, "system": system, **figures})

    @property
    def count(self) -> int:
        return 1 + max((row["round"] for row in self.rows), default=-1)

    def value(self, round_index: int, phase: str, system: str, metric: str) -> float | None:
        for row in self.rows:
            if row["round"] == round_index and row["phase"] == phase and row["system"] == system:
                found = row.get(metric)
                return float(found) if isinstance(found, int | float) and not isinstance(found, bool) else None
        return None

    def values(self, phase: str, system: str, metric: str) -> list[float | None]:
        return [self.value(r, phase, system, metric) for r in range(self.count)]

    def figure(self, phase: str, system: str, metric: str) -> Spread | None:
        """One system's metric over the rounds."""
        return spread(self.values(phase, system, metric))

    def compare(
        self, phase: str, metric: str, ours: str, theirs: str, higher_is_better: bool,
        their_metric: str | None = None, their_phase: str | None = None,
    ) -> Spread | None:  # fmt: skip
        """Per-round speedup of `ours` over `theirs` on `metric`, over the rounds where both ran."""
        ratios = []
        for r in range(self.count):
            a = self.value(r, phase, ours, metric)
            b = self.value(r, their_phase or phase, theirs, their_metric or metric)
            ratios.append(speedup(a, b, higher_is_better) if a and b else None)
        return spread(ratios)

    def over_floor(
        self, phase: str, system: str, metric: str, unit: str, floor_metric: str, clients: int = 1
    ) -> Spread | None:
        """Per-round time per operation over the floor's (the "floor" phase of the same round): 1 is the floor."""
        ratios = []
        for r in range(self.count):
            value = self.value(r, phase, system, metric)
            floor = self.value(r, "floor", "machine", floor_metric)
            ratios.append(per_op_seconds(value, unit, clients) / (floor / 1e3) if value and floor else None)
        return spread(ratios)

    def as_json(self) -> list[dict[str, Any]]:
        return list(self.rows)


@dataclass(frozen=True)
class Row:
    """One line of a comparison table: our figure, what it is compared with, the ratio over the rounds."""

    aim: str
    figure: str  # our figure over the rounds, e.g. "2.20 ms (2.05-2.41)"
    against: str  # "floor 2 x (RTT + fsync)", "etcd 3.4.23", ...
    ratio: Spread | None  # speedup (>1: ours better) or, against a floor, x the floor (1: the floor)
    target: str = ""  # ">= 2" or "<= 2" on the median ratio; "" for context only
    note: str = ""  # why there is no ratio ("not installed ...")
    unit: str = "x"  # of the ratio column ("%" for a fairness figure)

    @property
    def met(self) -> bool | None:
        if self.ratio is None or not self.target:
            return None
        op, bound = self.target.split()
        return self.ratio.median >= float(bound) if op == ">=" else self.ratio.median <= float(bound)

    def as_dict(self) -> dict[str, Any]:
        return {
            "aim": self.aim, "figure": self.figure, "against": self.against,
            "ratio": self.ratio.as_dict() if self.ratio else None, "target": self.target,
            "met": self.met, "note": self.note, "unit": self.unit,
        }  # fmt: skip


def markdown(rows: Sequence[Row]) -> str:
    """The rows as a markdown table; the ratio is the median of the rounds, then (lowest-highest)."""
    lines = [
        "| aim | ours (median of rounds, range) | against | ratio: median (range) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.ratio.text(unit=row.unit) if row.ratio else (row.note or "-")
        met = {True: "yes", False: "no", None: "-"}[row.met]
        target = f"{row.target}{'' if row.unit == 'x' else ' ' + row.unit}" if row.target else "-"
        lines.append(f"| {row.aim} | {row.figure} | {row.against} | {ratio} | {target} | {met} |")
    return "\n".join(lines)


def figure_text(values: Spread | None, unit: str, digits: int = 2) -> str:
    """``2.20 ms (2.05-2.41)``; ``1,020/s (980-1,100)`` for rates."""
    if values is None:
        return "-"
    if unit == "/s":
        return f"{values.median:,.0f}/s ({values.low:,.0f}-{values.high:,.0f})"
    unit = f" {unit}" if unit and unit != "%" else unit
    return f"{values.median:.{digits}f}{unit} ({values.low:.{digits}f}-{values.high:.{digits}f})"
