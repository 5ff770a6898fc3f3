"""Cross-initialisation comparison: the paper's 4-panel figure, a score table and a markdown report.

Input per run: verl's metrics rows (``metrics.jsonl``) and checkpoint evaluations
(``{step: {benchmark: avg@k}}``, with their standard errors across prompts, ``avg@k_stderr``). Output in one
folder: ``plots/curves.png``, ``table.csv``, ``report.md``.

Two errors are reported apart: ``±`` is the spread across RL seeds; ``SE`` (``*_stderr``) is the evaluation's own
standard error, the noise of scoring a fixed checkpoint on n prompts x k samples. The mean of m independent
estimates has ``SE = sqrt(sum_i SE_i^2) / m`` (:func:`combined_stderr`): over seeds in the table, over
benchmarks in the score panel's band.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from stable_verl.core.metric_keys import CURVES, REWARD_KEYS

NO_DATA = "no data"  # the text of a panel none of whose runs logged any of its keys
SCORE_PANEL = ("benchmark score (avg@k)", None, False)
"""The first panel of every report figure: (title, no metric keys: the checkpoint scores, linear scale)."""


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
    eval_stderr: dict[int, dict[str, float | None]] = field(default_factory=dict)
    """Checkpoint step -> benchmark -> standard error of its avg@k across prompts (None: unknown)."""
    cpu: str = ""
    """The CPU the run trained on (:attr:`RunRecord.cpu`): scores of one run id differ across machines."""

    def metric_key(self, keys: Sequence[str]) -> str | None:
        """The first of ``keys`` that some metrics row has; None when the run logged none of them."""
        return next((k for k in keys if any(k in row for row in self.metrics)), None)

    def series(self, keys: Sequence[str]) -> tuple[list[int], list[float]]:
        """(steps, values) of the first of ``keys`` the run logged; KeyError naming them when it logged none."""
        key = self.metric_key(keys)
        if key is None:
            raise KeyError(f"run {self.init} (seed {self.seed}) logged none of {list(keys)}")
        rows = [r for r in self.metrics if key in r]
        return [r["step"] for r in rows], [float(r[key]) for r in rows]

    def score_curve(self) -> tuple[list[int], list[float]]:
        """Mean avg@k over benchmarks at each evaluated step."""
        steps = sorted(self.evals)
        return steps, [sum(self.evals[s].values()) / len(self.evals[s]) for s in steps]

    def score_stderr(self) -> list[float]:
        """Standard error of each :meth:`score_curve` point (NaN where a benchmark's is unknown)."""
        return [combined_stderr([self.stderr(s, b) for b in self.evals[s]]) for s in sorted(self.evals)]

    def stderr(self, step: int, bench: str) -> float:
        """Standard error of ``evals[step][bench]``; NaN when unknown."""
        value = self.eval_stderr.get(step, {}).get(bench)
        return math.nan if value is None else value


def combined_stderr(errors: Sequence[float]) -> float:
    """Standard error of the mean of independent estimates with these standard errors: sqrt(sum SE^2) / m."""
    return math.sqrt(sum(e * e for e in errors)) / len(errors)  # NaN if any is NaN


def reward_ends(run: RunSeries, fraction: float = 0.2) -> tuple[float, float]:
    """Mean training reward over the first and the last ``fraction`` of the run's steps (at least one step each);
    NaN when it logged no reward."""
    if run.metric_key(REWARD_KEYS) is None:
        return math.nan, math.nan
    _, values = run.series(REWARD_KEYS)
    window = max(1, round(len(values) * fraction))
    return sum(values[:window]) / window, sum(values[-window:]) / window


def comparison_table(runs: Sequence[RunSeries]) -> pd.DataFrame:
    """Per benchmark and init: the start (first evaluated step: the SFT init in a cold-start comparison), final and
    peak scores and the gain (final - start), each as the mean over seeds with the std across seeds and the
    evaluation's standard error of that mean (``*_stderr``: the seeds' avg@k_stderr combined, NaN if one is unknown;
    a gain's is sqrt(SE_start^2 + SE_final^2) per seed); and the mean training reward over the first and last 20%
    of the RL steps (``reward_first``, ``reward_last``)."""
    records = []
    for run in runs:
        reward_first, reward_last = reward_ends(run)
        for bench in sorted({b for scores in run.evals.values() for b in scores}):
            steps = [s for s in sorted(run.evals) if bench in run.evals[s]]
            values = [run.evals[s][bench] for s in steps]
            start_se, final_se = run.stderr(steps[0], bench), run.stderr(steps[-1], bench)
            records.append(
                {
                    "init": run.init,
                    "seed": run.seed,
                    "benchmark": bench,
                    "start": values[0],
                    "start_stderr": start_se,
                    "gain": values[-1] - values[0],
                    "gain_stderr": math.hypot(start_se, final_se),
                    "reward_first": reward_first,
                    "reward_last": reward_last,
                    "final": values[-1],
                    "final_stderr": final_se,
                    "peak": max(values),
                    "peak_step": steps[values.index(max(values))],
                    "peak_stderr": run.stderr(steps[values.index(max(values))], bench),
                }
            )
    per_seed = pd.DataFrame.from_records(records)
    if per_seed.empty:
        return per_seed
    grouped = per_seed.groupby(["init", "benchmark"])
    table = grouped.agg(
        start_mean=("start", "mean"),
        start_stderr=("start_stderr", lambda e: combined_stderr(list(e))),
        final_mean=("final", "mean"),
        final_std=("final", "std"),
        final_stderr=("final_stderr", lambda e: combined_stderr(list(e))),
        peak_mean=("peak", "mean"),
        peak_std=("peak", "std"),
        peak_stderr=("peak_stderr", lambda e: combined_stderr(list(e))),
        gain_mean=("gain", "mean"),
        gain_std=("gain", "std"),
        gain_stderr=("gain_stderr", lambda e: combined_stderr(list(e))),
        reward_first=("reward_first", "mean"),
        reward_last=("reward_last", "mean"),
        seeds=("seed", "nunique"),
    ).reset_index()
    return table.fillna({"final_std": 0.0, "peak_std": 0.0, "gain_std": 0.0})


def curves_figure(runs: Sequence[RunSeries], title: str) -> plt.Figure:
    """Benchmark score, train-infer KL (log), training reward, per-token entropy and response length against steps.

    The score panel shades +-1 standard error of each evaluation (:meth:`RunSeries.score_stderr`) around its line.

    A run that logged none of a panel's keys (or has no evaluations, for the score panel) gets no line there and a
    ``UserWarning`` naming the keys; a panel no run has data for says ``NO_DATA`` and which keys it looked for.
    """
    panels = [SCORE_PANEL, *CURVES]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    colors = {init: f"C{i}" for i, init in enumerate(dict.fromkeys(r.init for r in runs))}
    for ax, (label, keys, log) in zip(axes, panels, strict=True):
        looked_for = "checkpoint evaluations" if keys is None else " or ".join(keys)
        missing = [run for run in runs if (not run.evals if keys is None else run.metric_key(keys) is None)]
        for run in missing:
            warnings.warn(f"{label}: run {run.init} (seed {run.seed}) has no {looked_for}; not plotted", stacklevel=2)
        if len(missing) == len(runs):
            ax.text(0.5, 0.5, f"{NO_DATA}\n(no {looked_for})", transform=ax.transAxes, ha="center", va="center")
        for run in runs:
            if any(run is m for m in missing):
                continue
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
            if keys is None:  # the evaluation's standard error as a band (a gap where it is unknown)
                pairs = list(zip(values, run.score_stderr(), strict=True))
                lo, hi = [v - e for v, e in pairs], [v + e for v, e in pairs]
                ax.fill_between(steps, lo, hi, color=colors[run.init], alpha=0.15, linewidth=0)
        ax.set_title(label)
        ax.set_xlabel("step")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    legend_ax = next((ax for ax in axes if ax.lines), None)  # the score panel, unless no run was evaluated
    if legend_ax is not None:
        legend_ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(runs: Sequence[RunSeries], path: Path, title: str) -> Path:
    """``curves_figure`` saved as a PNG at ``path``."""
    fig = curves_figure(runs, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(mean: float, std: float, seeds: int, sign: bool = False) -> str:
    value = f"{mean:+.3f}" if sign else f"{mean:.3f}"
    return value if seeds < 2 or math.isnan(std) else f"{value} ± {std:.3f}"


def _fmt_se(stderr: float) -> str:
    return "n/a" if math.isnan(stderr) else f"{stderr:.3f}"


def run_link(run_uri: str) -> str:
    """A run as the report links it: relative to ``comparisons/<id>/report.md``, so the link works wherever the store
    is served (a folder, an S3 website, MinIO); a remote store's URI is named too, a local one's path is not."""
    run_id = run_uri.rstrip("/").rsplit("/", 1)[-1]
    remote = f" ({run_uri})" if "://" in run_uri else ""
    return f"[{run_id}](../../runs/{run_id}/index.html){remote}"


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
        "| init | benchmark | start | final | final SE | gain | gain SE | peak | peak SE | training reward, "
        "first -> last 20% of steps | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.init} | {row.benchmark} | {row.start_mean:.3f} | "
            f"{_fmt(row.final_mean, row.final_std, row.seeds)} | {_fmt_se(row.final_stderr)} | "
            f"{_fmt(row.gain_mean, row.gain_std, row.seeds, sign=True)} | "
            f"{_fmt_se(row.gain_stderr)} | {_fmt(row.peak_mean, row.peak_std, row.seeds)} | "
            f"{_fmt_se(row.peak_stderr)} | {row.reward_first:.3f} -> {row.reward_last:.3f} | {row.seeds} |"
        )
    lines += [
        "",
        "start: the first evaluated checkpoint (the SFT init in a cold-start comparison); gain: final - start. "
        "± : std across seeds. SE: the evaluation's standard error of the seed mean (each checkpoint's avg@k_stderr "
        "across prompts, combined as sqrt(sum SE^2) / seeds); two scores closer than about 2.8 SE (2 sqrt(2) SE) are "
        "within evaluation noise, and a gain is measured when it exceeds 2 of its SE. The training reward is on the "
        "RL prompts, which the run may revisit: it shows learning, not transfer.",
    ]
    cpu = {r.run_uri: f"; CPU {r.cpu}" if r.cpu else "" for r in runs}
    lines += ["", "Runs:", *[f"- {r.init} (seed {r.seed}): {run_link(r.run_uri)}{cpu[r.run_uri]}" for r in runs]]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"plot": plot, "table": out_dir / "table.csv", "report": report}
