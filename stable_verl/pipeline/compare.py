"""Cross-initialisation comparison: the paper's 4-panel figure, a score table and a markdown report.

Input per run: verl's metrics rows (``metrics.jsonl``) and checkpoint evaluations
(``{step: {benchmark: avg@k}}``). Output in one folder: ``plots/curves.png``, ``table.csv``, ``report.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

# First key present wins: our MiniRL diagnostic, else verl's rollout-correction estimators.
KL_KEYS = ("actor/train_infer_kl_k3", "rollout_corr/k3_kl", "rollout_corr/kl")
REWARD_KEYS = ("reward/acc", "critic/score/mean")
ENTROPY_KEYS = ("actor/entropy",)
LENGTH_KEYS = ("response_length/mean",)


@dataclass
class RunSeries:
    """One RL run of the comparison."""

    init: str
    """Cold-start initialisation (e.g. the SFT teacher style)."""
    seed: int
    """RL seed; several seeds per init give the spread."""
    metrics: list[dict]
    """verl metrics rows: ``{"step": n, key: value, ...}``."""
    evals: dict[int, dict[str, float]] = field(default_factory=dict)
    """Checkpoint step -> benchmark -> avg@k."""
    run_uri: str = ""
    """Where the run's artifacts live."""

    def series(self, keys: Sequence[str]) -> tuple[list[int], list[float]]:
        key = next((k for k in keys if any(k in row for row in self.metrics)), None)
        if key is None:
            return [], []
        rows = [r for r in self.metrics if key in r]
        return [r["step"] for r in rows], [float(r[key]) for r in rows]

    def score_curve(self) -> tuple[list[int], list[float]]:
        """Mean avg@k over benchmarks at each evaluated step."""
        steps = sorted(self.evals)
        return steps, [sum(self.evals[s].values()) / len(self.evals[s]) for s in steps]


def comparison_table(runs: Sequence[RunSeries]) -> pd.DataFrame:
    """Final and peak score per benchmark and init: mean over seeds, with the std across seeds."""
    records = []
    for run in runs:
        for bench in sorted({b for scores in run.evals.values() for b in scores}):
            steps = [s for s in sorted(run.evals) if bench in run.evals[s]]
            values = [run.evals[s][bench] for s in steps]
            records.append(
                {
                    "init": run.init,
                    "seed": run.seed,
                    "benchmark": bench,
                    "final": values[-1],
                    "peak": max(values),
                    "peak_step": steps[values.index(max(values))],
                }
            )
    per_seed = pd.DataFrame.from_records(records)
    if per_seed.empty:
        return per_seed
    grouped = per_seed.groupby(["init", "benchmark"])
    table = grouped.agg(
        final_mean=("final", "mean"),
        final_std=("final", "std"),
        peak_mean=("peak", "mean"),
        peak_std=("peak", "std"),
        seeds=("seed", "nunique"),
    ).reset_index()
    return table.fillna({"final_std": 0.0, "peak_std": 0.0})


def plot_curves(runs: Sequence[RunSeries], path: Path, title: str) -> Path:
    """Benchmark score, train-infer KL (log), training reward, entropy and response length against steps."""
    panels = [
        ("benchmark score (avg@k)", None, False),
        ("train-inference KL", KL_KEYS, True),
        ("training reward", REWARD_KEYS, False),
        ("entropy", ENTROPY_KEYS, False),
        ("response length", LENGTH_KEYS, False),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    colors = {init: f"C{i}" for i, init in enumerate(dict.fromkeys(r.init for r in runs))}
    for ax, (label, keys, log) in zip(axes, panels, strict=True):
        for run in runs:
            steps, values = run.score_curve() if keys is None else run.series(keys)
            if log:
                values = [max(v, 1e-12) for v in values]  # KL estimates can be exactly 0 in fp32 on-policy
            ax.plot(
                steps,
                values,
                marker="o",
                ms=3,
                color=colors[run.init],
                alpha=0.85,
                label=f"{run.init} (seed {run.seed})",
            )
        ax.set_title(label)
        ax.set_xlabel("step")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.3f}" if seeds < 2 or math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def write_report(runs: Sequence[RunSeries], out_dir: Path, title: str) -> dict[str, Path]:
    """Write plots/curves.png, table.csv and report.md (last) into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_curves(runs, out_dir / "plots" / "curves.png", title)
    table = comparison_table(runs)
    table.to_csv(out_dir / "table.csv", index=False)
    lines = [
        f"# {title}",
        "",
        "![curves](plots/curves.png)",
        "",
        "| init | benchmark | final | peak | seeds |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.init} | {row.benchmark} | {_fmt(row.final_mean, row.final_std, row.seeds)} | "
            f"{_fmt(row.peak_mean, row.peak_std, row.seeds)} | {row.seeds} |"
        )
    lines += ["", "Runs:", *[f"- {r.init} (seed {r.seed}): {r.run_uri}" for r in runs]]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"plot": plot, "table": out_dir / "table.csv", "report": report}
