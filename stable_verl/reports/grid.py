"""The stability grid's report: per-N figures, the R2-vs-R3 crossover, collapse steps and the claims table.

Input: one :class:`GridRun` per cell (arm, N, seed) with its RL metrics and checkpoint scores, as
:class:`stable_verl.reports.compare.RunSeries` (the same series, metric keys and standard errors as the cold-start
report). Output in one folder (``comparisons/<name>-<hash of its runs>/`` in the store)::

    report.md                  the claims table, outcome verdicts, per-run table, figures
    plots/regime_N<n>.png      per N: score (+-1 SE band), train-infer KL (log), reward, per-token entropy
    plots/crossover.png        R2 vs R3 final score against N
    table.csv                  one row per run: peak/final score with SE, outcome verdict, onset, tags, the
                               entropy+KL warning step (a diagnostic), timings
    claims.csv                 claim, verdict, evidence, seeds, estimate, interval, p, Holm p, minimum detectable
                               difference (stable_verl.reports.claims)
    grid.json                  every setting of the grid and each cell's wall-time split

The curves of one arm are averaged over its seeds; the band is +-1 standard error of that mean for the score
(the larger of the seeds' SE and the evaluation's, per step) and the seeds' min..max for the other panels.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from stable_verl.artifacts import ArtifactStore, RunLayout, config_hash
from stable_verl.artifacts.run_record import RunRecord, cpu_label
from stable_verl.config.grid_cell import GridCell
from stable_verl.core import collapse_tags, collapse_verdict
from stable_verl.core.metric_keys import COLLAPSE_WARNING_KEYS, PAPER_CURVES, REWARD_KEYS
from stable_verl.core.significance import paired_prompts, per_prompt_means
from stable_verl.reports import claims, grid_tables
from stable_verl.reports.compare import NO_DATA, SCORE_PANEL, RunSeries, combined_stderr

if TYPE_CHECKING:
    from stable_verl.config.params import StabilityGridParams

STEP_TIME_KEY = "timing_s/step"
PANELS = (SCORE_PANEL, *PAPER_CURVES)  # the paper's four: score, train-infer KL (log), reward, per-token entropy


@dataclass
class GridRun:
    """One cell's RL run: its series (``init`` = the arm) and the stage's timings."""

    cell: GridCell
    run_id: str
    series: RunSeries
    prompts: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Checkpoint step -> benchmark -> prompt -> mean accuracy of its samples (``samples.jsonl``), for paired SEs."""
    timing: dict = field(default_factory=dict)
    """The stage result of this flow call (``skipped``, ``flow_s``) with ``verl_s`` of the attempt that completed the
    run (from its run.json when this call skipped it)."""

    def warning_step(self) -> int | None:
        """First step at which the entropy+KL warning reads 1 (``stability/collapse_warning``, or
        ``stability/collapse`` in older stores; it latches); None: never."""
        return next(
            (r["step"] for r in self.series.metrics if any(r.get(k, 0.0) >= 1.0 for k in COLLAPSE_WARNING_KEYS)), None
        )

    def outcome(self, w: int, max_response_length: int | None = None) -> tuple[str | None, int | None, tuple]:
        """(verdict, onset step, tags) by core.collapse_verdict / collapse_tags over the per-step training reward in
        passes of ``w`` steps; (None, None, ()) when the run logged no reward."""
        if self.series.metric_key(REWARD_KEYS) is None:
            return None, None, ()
        rows = self.series.metrics
        steps = max(int(r["step"]) for r in rows)
        rewards = collapse_tags.series(rows, REWARD_KEYS, steps)
        v = collapse_verdict.judge_rewards(rewards, w)  # type: ignore[arg-type]
        k = v.passes
        down = None
        if k and v.onset_step is not None:
            down = [i * w + 1 >= v.onset_step for i in range(k)]
        tags = collapse_tags.collapse_tags(rows, w, down, max_response_length)
        return v.verdict, v.onset_step, tuple(str(t) for t in tags)

    def summary(self, w: int | None = None, max_response_length: int | None = None) -> claims.RunSummary:
        """The run's RL checkpoints only (step 0, the shared init, excluded); with ``w`` (steps per pass over the RL
        prompts) its outcome verdict too, else the verdict is None (not judged)."""
        steps, scores = self.series.score_curve()
        stderrs = self.series.score_stderr()
        keep = [i for i, s in enumerate(steps) if s > 0]
        verdict, onset, tags = self.outcome(w, max_response_length) if w else (None, None, ())
        kept = [scores[i] for i in keep]
        peak_step = steps[keep[kept.index(max(kept))]] if kept else None
        return claims.RunSummary(
            self.cell.arm,
            self.cell.n,
            self.cell.seed,
            tuple(steps[i] for i in keep),
            tuple(scores[i] for i in keep),
            tuple(stderrs[i] for i in keep),
            verdict=verdict,
            onset_step=onset,
            tags=tags,
            warning_step=self.warning_step(),
            fall_se=self.paired_se(peak_step, steps[keep[-1]]) if kept else math.nan,
            run_id=self.run_id,
        )

    def paired_se(self, a: int | None, b: int) -> float:
        """SE of score(a) - score(b), paired per prompt and sample seed within each benchmark and combined over
        benchmarks as the score averages them; NaN when a checkpoint lacks per-prompt results (or a == b)."""
        if a is None or a == b or a not in self.prompts or b not in self.prompts:
            return math.nan
        benches = sorted(self.series.evals.get(b, {}))
        if not benches or any(x not in self.prompts[a] or x not in self.prompts[b] for x in benches):
            return math.nan
        return combined_stderr([paired_prompts(self.prompts[a][x], self.prompts[b][x]).se for x in benches])

    def time_split(self) -> dict[str, float]:
        """verl's wall time split into start-up + shutdown (verl_s minus the steps) and the steps themselves."""
        steps_s = sum(float(r[STEP_TIME_KEY]) for r in self.series.metrics if STEP_TIME_KEY in r)
        verl_s = float(self.timing.get("verl_s", 0.0))
        return {"verl_s": verl_s, "steps_s": steps_s, "startup_s": max(verl_s - steps_s, 0.0) if verl_s else 0.0}


def comparison_id(name: str, run_ids: Sequence[str]) -> str:
    return f"{name}-{config_hash(list(run_ids))}"


def report_title(params: StabilityGridParams) -> str:
    """The report's title: the grid's step count and rollout precision."""
    return f"Stability grid: {params.rl.total_steps} RL steps, rollouts {params.rl.rollout_precision}"


def report_settings(params: StabilityGridParams, init_run: str, timings: dict) -> dict:
    """What grid.json records: every parameter of the grid, its init and the flow's timings."""
    return {"params": params.model_dump(mode="json"), "init_run": init_run, "timings": timings}


def build_runs(
    store: ArtifactStore, cells: Sequence[tuple[GridCell, dict]], init_run: str, scores: list[dict], metric: str
) -> list[GridRun]:
    """GridRun per (cell, stage result); evals {0: the SFT init, N: RL checkpoint N} from flat score rows."""
    runs = []
    for cell, stage in cells:
        evals: dict[int, dict[str, float]] = {}
        stderr: dict[int, dict[str, float | None]] = {}
        for row in scores:
            if row["run_id"] in (init_run, stage["run_id"]):
                step = 0 if row["run_id"] == init_run else row["step"]
                evals.setdefault(step, {})[row["benchmark"]] = row[metric]
                stderr.setdefault(step, {})[row["benchmark"]] = row.get(f"{metric}_stderr")
        layout = RunLayout(store, stage["run_id"])
        record = RunRecord.read(layout)
        cpu = record.cpu if record is not None else _config_cpu(layout)
        series = RunSeries(cell.arm, cell.seed, layout.read_metrics(), evals, layout.uri(), stderr, cpu=cpu)
        prompts: dict[int, dict[str, dict[str, float]]] = {}
        for step, benches in evals.items():
            for bench in benches if step > 0 else ():
                rel = layout.eval_samples(step, bench)
                if store.exists(rel):
                    prompts.setdefault(step, {})[bench] = per_prompt_means(store.read_jsonl(rel))
        timing = dict(stage)
        if stage.get("skipped"):  # nothing ran now: the time of the attempt that completed it, as recorded
            timing["verl_s"] = record.verl_s if record is not None else 0.0
        runs.append(GridRun(cell, stage["run_id"], series, prompts, timing=timing))
    return runs


def _config_cpu(layout: RunLayout) -> str:
    """The CPU of a run without run.json (a record: ``pilot_page --export``), from its config.yaml's ``platform``,
    which each attempt writes there as in run.json; 'unknown' without one."""
    return cpu_label((layout.read_config() or {}).get("platform"))


# ------------------------------------------------------------------------------------------------ curves
def _score_points(series: RunSeries) -> dict[int, tuple[float, float]]:
    steps, values = series.score_curve()
    return dict(zip(steps, zip(values, series.score_stderr(), strict=True), strict=True))


def _metric_points(series: RunSeries, keys: Sequence[str]) -> dict[int, float]:
    if series.metric_key(keys) is None:
        return {}
    return dict(zip(*series.series(keys), strict=True))


def arm_curve(runs: Sequence[GridRun], keys: Sequence[str] | None) -> tuple[list[int], list[float], list, list]:
    """Steps, mean over seeds, band low, band high for one arm at one N (score: +-1 SE; metrics: min..max)."""
    if keys is None:
        points = [_score_points(r.series) for r in runs]
    else:
        points = [{s: (v, math.nan) for s, v in _metric_points(r.series, keys).items()} for r in runs]
    steps = sorted({s for p in points for s in p})
    mean, lo, hi = [], [], []
    for step in steps:
        values = [p[step][0] for p in points if step in p]
        m = statistics.fmean(values)
        if keys is None:  # per step: max(seed SE, evaluation SE)
            eval_se = combined_stderr([p[step][1] for p in points if step in p])
            seed_se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            se = max((s for s in (seed_se, eval_se) if not math.isnan(s)), default=math.nan)
            lo.append(m - se)
            hi.append(m + se)
        else:
            lo.append(min(values))
            hi.append(max(values))
        mean.append(m)
    return steps, mean, lo, hi


def regime_figure(runs: Sequence[GridRun], n: int, title: str) -> plt.Figure:
    """The paper's 4-panel figure for one N: every arm overlaid (mean over seeds, band over seeds)."""
    mine = [r for r in runs if r.cell.n == n]
    arms = list(dict.fromkeys(r.cell.arm for r in mine))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.4 * len(PANELS), 3.6))
    for ax, (label, keys, log) in zip(axes, PANELS, strict=True):
        for i, arm in enumerate(arms):
            seeds = [r for r in mine if r.cell.arm == arm]
            steps, mean, lo, hi = arm_curve(seeds, keys)
            if not steps:
                continue
            if log:
                mean, lo, hi = ([max(v, 1e-12) for v in vs] for vs in (mean, lo, hi))
            legend = f"{arm} ({len(seeds)} seed{'s' * (len(seeds) != 1)})"
            ax.plot(steps, mean, marker="o", ms=3, color=f"C{i}", label=legend)
            ax.fill_between(steps, lo, hi, color=f"C{i}", alpha=0.18, linewidth=0)
        if not ax.lines:
            looked_for = "checkpoint evaluations" if keys is None else " or ".join(keys)
            ax.text(0.5, 0.5, f"{NO_DATA}\n(no {looked_for})", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(label)
        ax.set_xlabel("step")
        if log and ax.lines:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if axes[0].lines:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: N={n}")
    fig.tight_layout()
    return fig


def crossover_figure(summaries: Sequence[claims.RunSummary], title: str) -> plt.Figure:
    """R2 vs R3 final score against N (mean over seeds, +-1 SE from the pooled seed SD): the crossover the paper's
    argument implies."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, arm in enumerate((claims.R2, claims.R3)):
        points = [(n, s) for n in (1, 2, 4, 8) if (s := claims.arm_score(summaries, arm, n)) is not None]
        if points:
            ns, means = [n for n, _ in points], [s[0] for _, s in points]
            errs = [0.0 if math.isnan(s[1]) else s[1] for _, s in points]
            ax.errorbar(ns, means, yerr=errs, marker="o", capsize=3, color=f"C{i}", label=arm)
    if not ax.lines:
        ax.text(0.5, 0.5, f"{NO_DATA}\n(no {claims.R2} or {claims.R3} runs)", transform=ax.transAxes, ha="center")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.set_xlabel("N (mini-batches per rollout batch)")
    ax.set_ylabel("final score (avg@k)")
    ax.set_title(f"{title}: R2 vs R3")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ tables
def steps_per_pass(settings: dict) -> int:
    """W of the grid's regime: steps per pass over its RL prompts (``params.task.n_rl_train`` / train batch)."""
    params = settings["params"]
    return collapse_verdict.steps_per_pass(params["task"]["n_rl_train"], params["rl"]["train_batch_size"])


def runs_table(runs: Sequence[GridRun], summaries: Sequence[claims.RunSummary]) -> pd.DataFrame:
    """One row per run: scores, outcome verdict and tags, the warning step and the wall-time split."""
    rows = []
    for run, s in zip(runs, summaries, strict=True):
        rows.append(
            {
                **grid_tables.summary_row(s),
                **run.time_split(),
                "skipped": bool(run.timing.get("skipped", False)),
                "run_id": run.run_id,
            }
        )
    return pd.DataFrame.from_records(rows)


def write_grid_report(runs: Sequence[GridRun], out_dir: Path, title: str, settings: dict) -> dict[str, Path]:
    """Figures per N, the crossover, table.csv, claims.csv, grid.json and report.md (last) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    max_len = settings["params"]["rl"].get("max_response_length")
    summaries = [r.summary(steps_per_pass(settings), max_len) for r in runs]
    ns = sorted({r.cell.n for r in runs})
    plots = {n: _save(regime_figure(runs, n, title), out_dir / "plots" / f"regime_N{n}.png") for n in ns}
    crossover = _save(crossover_figure(summaries, title), out_dir / "plots" / "crossover.png")
    table, verdicts = runs_table(runs, summaries), claims.judge(summaries)
    table.to_csv(out_dir / "table.csv", index=False)
    grid_tables.claims_table(verdicts).to_csv(out_dir / "claims.csv", index=False)
    (out_dir / "grid.json").write_text(json.dumps(settings, indent=1, default=str))
    lines = [f"# {title}", "", "## Claims (paper.md §6.5)", "", *grid_tables.claims_lines(verdicts)]
    lines += ["", *grid_tables.rules_lines()]
    lines += ["", "## Entropy+KL warnings against scores", "", *grid_tables.warnings_against_scores(summaries)]
    lines += ["", "## Curves per N", ""]
    lines += [f"![N={n}](plots/{p.name})" for n, p in plots.items()]
    lines += ["", "## R2 vs R3 against N", "", f"![crossover](plots/{crossover.name})", ""]
    lines += ["## Runs", "", *grid_tables.runs_lines(table)]
    cpus = sorted({r.series.cpu for r in runs if r.series.cpu})
    if cpus:  # scores of one run id differ across machines
        lines += ["", f"Trained on CPU: {'; '.join(cpus)}."]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return {"report": out_dir / "report.md", "table": out_dir / "table.csv", "claims": out_dir / "claims.csv"} | {
        f"regime_N{n}": p for n, p in plots.items()
    }
