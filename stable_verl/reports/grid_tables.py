"""The stability grid's tables and their markdown: per-run rows, the claims table, the rules, warnings vs scores.

Shared by the report a finished grid writes (``grid.write_grid_report``) and by the republish of a published page
from its ``table.csv`` (``grid_page.republish``), so both state the same rules in the same words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd

from stable_verl.core import collapse_verdict as cv
from stable_verl.reports import claims

CLAIM_COLUMNS = [
    "claim",
    "verdict",
    "evidence",
    "seeds",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "mdd",
]


def summary_row(s: claims.RunSummary) -> dict:
    """One run's row of table.csv (scores, outcome verdict, tags, the warning step as a diagnostic)."""
    return {
        "arm": s.arm,
        "N": s.n,
        "seed": s.seed,
        "peak": s.peak,
        "peak_step": s.peak_step,
        "peak_stderr": s.peak_stderr,
        "final": s.final,
        "final_stderr": s.final_stderr,
        "verdict": s.verdict if s.verdict is not None else "not judged",
        "onset_step": s.onset_step,
        "tags": " ".join(s.tags),
        "warning_step": s.warning_step,
    }


def claims_table(verdicts: Sequence[claims.Verdict]) -> pd.DataFrame:
    return pd.DataFrame.from_records([asdict(v) for v in verdicts], columns=CLAIM_COLUMNS)


def _num(value: object, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "-"
    return format(value, fmt) if isinstance(value, float) else str(value)


def claims_lines(verdicts: Sequence[claims.Verdict]) -> list[str]:
    lines = [
        "| claim | verdict | seeds | estimate [95% CI] | p (Holm) | min. detectable | evidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        est = "-" if math.isnan(v.estimate) else f"{v.estimate:+.3f}"
        if not math.isnan(v.ci_low):
            est += f" [{v.ci_low:+.3f}, {v.ci_high:+.3f}]"
        p = "-" if math.isnan(v.p) else f"{v.p:.3f} ({_num(v.p_holm)})"
        lines.append(f"| {v.claim} | **{v.verdict}** | {v.seeds} | {est} | {p} | {v.mdd or '-'} | {v.evidence} |")
    return lines


def rules_lines() -> list[str]:
    return [
        "Rules (stable_verl/reports/claims.py, fixed before the results they judge): arms are compared on **final** "
        "scores (never peaks), per training seed, with the SD of final scores pooled over every (arm, N) cell and "
        f"Student-t intervals; Holm across the claims (level {claims.ALPHA:g}); 'at least as good' is non-inferiority "
        f"within {claims.EQUIV_MARGIN:g}. A collapse claim reads only outcome verdicts "
        "(stable_verl/core/collapse_verdict.py: the mean training reward per pass over the RL prompts falls by "
        f"delta = max({cv.DELTA_FLOOR:g}, {cv.DELTA_SIGMAS:g} sigma) below its best earlier pass for two passes and "
        f"stays down; fewer than {cv.MIN_PASSES} passes is 'too short'), one pre-declared reference arm, one-sided "
        f"Fisher exact test, >= {claims.MIN_RATE_SEEDS} seeds per arm. Warnings, mechanism tags and other "
        "diagnostics never make a verdict. 'min. detectable': the true difference the test finds with 80% power "
        "(score claims), or the smallest collapse rate against a reference with none that could reach p < 0.05.",
    ]


def warnings_against_scores(summaries: Sequence[claims.RunSummary]) -> list[str]:
    """Did a run's score fall after its entropy+KL warning? Per warned run with a later checkpoint: the score at the
    last checkpoint at or before the warning against the final one, a fall counted beyond 2 SE of the difference."""
    warned = [s for s in summaries if s.warning_step is not None]
    if not warned:
        return ["No run raised the entropy+KL warning."]
    changes, fell = [], 0
    for s in warned:
        before = [i for i, step in enumerate(s.steps) if step <= s.warning_step]  # type: ignore[operator]
        if not before or s.steps[-1] <= s.warning_step:  # type: ignore[operator]
            continue
        b, f = before[-1], len(s.steps) - 1
        change = s.scores[f] - s.scores[b]
        se = math.hypot(s.stderrs[b], s.stderrs[f]) if s.stderrs else math.nan
        changes.append(change)
        fell += bool(change < -cv.HELDOUT_Z * se)
    if not changes:
        return [f"{len(warned)} run(s) raised the warning, none with a checkpoint scored after it."]
    return [
        f"{len(warned)} of {len(summaries)} runs raised the entropy+KL early warning (stable_verl/core/collapse.py: "
        "entropy fallen while the train-inference KL spiked; logged as `stability/collapse` before December 2026). "
        f"Of the {len(changes)} with a checkpoint scored after it, {fell} fell by more than {cv.HELDOUT_Z:g} SE from "
        f"the last checkpoint at or before the warning to the final one; the mean change was "
        f"{sum(changes) / len(changes):+.3f}. The warning fires on the policy sharpening (entropy falls as it learns) "
        "plus a noisy KL; it is a diagnostic, not a collapse."
    ]


def runs_lines(table: pd.DataFrame) -> list[str]:
    lines = [
        "| arm | N | seed | peak (SE) | final (SE) | outcome verdict | onset | tags | warning step | run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.arm} | {row.N} | {row.seed} | {_num(row.peak)} ({_num(row.peak_stderr)}) | "
            f"{_num(row.final)} ({_num(row.final_stderr)}) | {row.verdict} | {_num(row.onset_step, '.0f')} | "
            f"{_num(row.tags if isinstance(row.tags, str) else None)} | {_num(row.warning_step, '.0f')} | "
            f"{row.run_id} |"
        )
    return lines
