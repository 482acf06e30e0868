"""The picture of one chaos run: operations over time per workload, faults shaded.

One row per workload; each operation is a tick at the time it completed (or
failed, or timed out), coloured by outcome, with a line of successes per
second on top; every fault window is a shaded band labelled with the fault,
the final heal a dashed line. Needs matplotlib (the ``chaos`` extra); the
run itself never does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OUTCOME_COLOURS = {"ok": "tab:green", "fail": "tab:red", "timeout": "tab:orange"}
KIND_COLOURS = {
    "isolate": "tab:blue", "halves": "tab:purple", "one_way": "tab:cyan", "client_cut": "tab:olive",
    "ipt_isolate": "navy", "ipt_one_way": "teal", "kill": "black", "pause": "tab:brown",
    "pause_holder": "tab:pink", "slow_disk": "tab:gray",
}  # fmt: skip


def write_png(result: Any, path: Path) -> Path:
    """Draw `result` (a `RunResult` with extra "series" and "windows") to `path`; return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[float]]] = result.extra["series"]
    windows: list[tuple[str, float, float, str]] = result.extra.get("windows", [])
    heal = result.extra.get("final_heal")
    end = max([t for outcomes in series.values() for ts in outcomes.values() for t in ts] + [1.0])
    fig, axes = plt.subplots(len(series), 1, figsize=(12, 2.3 * len(series) + 0.8), sharex=True, squeeze=False)
    for ax, (name, outcomes) in zip(axes[:, 0], series.items(), strict=True):
        for i, (window_kind, start, stop, label) in enumerate(windows):
            ax.axvspan(start, stop, color=KIND_COLOURS.get(window_kind, "tab:gray"), alpha=0.15)
            if ax is axes[0, 0]:
                ax.text((start + stop) / 2, 1.02 + 0.12 * (i % 2), label, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=7, rotation=0, clip_on=False)  # fmt: skip
        if heal is not None:
            ax.axvline(heal, color="black", linestyle="--", linewidth=1)
        for y, (outcome, times) in enumerate(
            sorted(outcomes.items(), key=lambda kv: list(OUTCOME_COLOURS).index(kv[0]))
        ):
            ax.plot(times, [y] * len(times), "|", color=OUTCOME_COLOURS[outcome], markersize=9,
                    label=f"{outcome} ({len(times)})")  # fmt: skip
        per_second = [0] * (int(end) + 1)
        for t in outcomes.get("ok", []):
            if t >= 0:
                per_second[min(len(per_second) - 1, int(t))] += 1
        rate = ax.twinx()
        rate.plot([s + 0.5 for s in range(len(per_second))], per_second, color="tab:green", alpha=0.5, linewidth=1)
        rate.set_ylabel("ok/s", fontsize=8)
        ax.set_yticks(range(len(outcomes)))
        ax.set_yticklabels(sorted(outcomes, key=list(OUTCOME_COLOURS).index), fontsize=8)
        ax.set_ylim(-0.7, len(outcomes) - 0.3)
        ax.set_ylabel(name)
        ax.legend(loc="lower left", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("seconds since the workloads started (dashed: final heal)")
    verdict = "PASS" if result.ok else "FAIL"
    fig.suptitle(f"chaos seed {result.seed}: {verdict}, {result.extra.get('shape', '')}", fontsize=10, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
