"""Cold-start comparison: gather each init's RL metrics and checkpoint scores, write the report to the store.

Each init is one (teacher style, seed): SFT run -> RL run. Its score curve starts at step 0 with the
SFT checkpoint (the RL init) and continues with the evaluated RL checkpoints. The report
(``plots/curves.png``, ``table.csv``, ``report.md``) goes to ``comparisons/<name>-<hash of its runs>/``
through :func:`stable_verl.reports.publish.publish_report` (manifest written last).
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_verl.artifacts import ArtifactStore, RunLayout, config_hash
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.reports.compare import RunSeries


@dataclass(frozen=True)
class InitRuns:
    """One cold-start initialisation and the runs it produced."""

    teacher: str
    seed: int
    sft_run: str
    rl_run: str


def comparison_id(name: str, inits: list[InitRuns]) -> str:
    return f"{name}-{config_hash([i.rl_run for i in inits])}"


def build_series(store: ArtifactStore, inits: list[InitRuns], scores: list[dict], metric: str) -> list[RunSeries]:
    """RunSeries per init: RL metrics from the store; evals {0: SFT checkpoint, N: RL checkpoint N}.

    ``scores`` are flat rows ``{"run_id", "step", "benchmark", metric, f"{metric}_stderr", ...}``
    (:meth:`EvalOutcome.rows`); the standard errors go to ``RunSeries.eval_stderr``.
    """
    series = []
    for init in inits:
        evals: dict[int, dict[str, float]] = {}
        stderr: dict[int, dict[str, float | None]] = {}
        for row in scores:
            if row["run_id"] in (init.sft_run, init.rl_run):
                step = 0 if row["run_id"] == init.sft_run else row["step"]
                evals.setdefault(step, {})[row["benchmark"]] = row[metric]
                stderr.setdefault(step, {})[row["benchmark"]] = row[f"{metric}_stderr"]
        rl = RunLayout(store, init.rl_run)
        cpu = (RunRecord.read(rl) or RunRecord(init.rl_run)).cpu
        series.append(RunSeries(init.teacher, init.seed, rl.read_metrics(), evals, rl.uri(), stderr, cpu))
    return series
