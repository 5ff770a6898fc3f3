"""The stability grid's results page: ``docs/results/stability-grid.md`` + its PNGs and CSVs, from a finished grid.

    python -m flows.stability_grid --config configs/stability_grid.yaml      # runs the grid, prints its id
    stable-verl comparisons publish <comparison id> [--out docs/results]     # writes the page
    stable-verl comparisons republish docs/results/stability-grid            # re-judges a published page from
                                                                             # its own table.csv (no store)

The page is the grid's report (claims table, figures, per-run table) with what a reader needs to judge it: the
budget (cells, steps, wall time), the regime and every setting (the flow's parameters as run), the command that
made it and the one that rebuilds the page. It is built only from a complete comparison folder in the store
(its manifest is verified on download), so the page and the store cannot disagree.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from stable_verl.artifacts import ArtifactStore, ComparisonLayout
from stable_verl.core import collapse_verdict as cv
from stable_verl.core import significance as sig
from stable_verl.reports import claims, grid_tables

PAGE = "stability-grid"
PAGE_FOLDER = f"docs/results/{PAGE}"
FIRST_CLAIMS = "claims_first_publication.csv"
ASSETS = ("table.csv", "claims.csv", "grid.json")
RECORD = "from_record"
"""grid.json's key (true) for a report rebuilt from a run record (:mod:`.grid_from_record`), not made by the flow."""


def _budget(table: pd.DataFrame, settings: dict) -> list[str]:
    params = settings["params"]
    ran = table[~table["skipped"].astype(bool)] if "skipped" in table else table
    verl_h = table["verl_s"].sum() / 3600
    steps_h = table["steps_s"].sum() / 3600
    ev = settings.get("timings", {}).get("eval", {})
    cells = f"- cells: {len(table)} runs = {table['arm'].nunique()} arms x N in {sorted(table['N'].unique().tolist())} "
    if settings.get(RECORD):  # rebuilt from a run record: no flow call, and no run.json to time the runs by
        return [
            cells + f"x seeds {params['seeds']} (all from the grid's run record)",
            f"- steps per run: {params['rl']['total_steps']}; checkpoints scored: {params['eval']['steps']}",
            f"- wall time: not in the record (no run.json); the runs' logged step times sum to {steps_h:.2f} h",
            f"- SFT init: `{settings['init_run']}`",
        ]
    return [
        cells + f"x seeds {params['seeds']} ({len(ran)} ran in the last flow call, the rest were complete)",
        f"- steps per run: {params['rl']['total_steps']}; checkpoints scored: {params['eval']['steps']}",
        f"- verl wall time summed over runs: {verl_h:.2f} h (start-up {table['startup_s'].sum() / 3600:.2f} h, "
        f"steps {steps_h:.2f} h); evaluation in the last flow call "
        f"{ev.get('eval_s', float('nan')):.0f} s ({ev.get('evaluated', '?')} checkpoints; earlier ones were kept)",
        f"- SFT init: `{settings['init_run']}`",
    ]


def _portable(settings: dict) -> dict:
    """``settings`` without store locations (a local store's are paths of the machine that ran the grid)."""
    timings = settings.get("timings", {})
    stages = [{k: v for k, v in stage.items() if k != "run_uri"} for stage in timings.get("stages", [])]
    return {**settings, "timings": {**timings, "stages": stages}}


def write_page(store: ArtifactStore, comparison: str, out_dir: Path) -> Path:
    """Download ``comparisons/<comparison>/`` (verified) and write ``out_dir/stability-grid.md`` + assets."""
    layout = ComparisonLayout(store, comparison)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        store.get_dir(layout.prefix, local)  # IncompleteArtifactError unless the report finished
        settings = _portable(json.loads((local / "grid.json").read_text()))
        table = pd.read_csv(local / "table.csv")
        report = (local / "report.md").read_text()
        assets = out_dir / PAGE
        if assets.exists():
            shutil.rmtree(assets)
        (assets / "plots").mkdir(parents=True)
        for png in sorted((local / "plots").glob("*.png")):
            shutil.copyfile(png, assets / "plots" / png.name)
        for name in ASSETS:
            shutil.copyfile(local / name, assets / name)
        (assets / "grid.json").write_text(json.dumps(settings, indent=1) + "\n")
    title, _, body = report.partition("\n")
    body = body.replace("](plots/", f"]({PAGE}/plots/")
    params = settings["params"]
    made = (
        "Rebuilt from the grid's run record (configs, metrics, evaluations; no checkpoints) by `stable-verl "
        "comparisons from-record`"
        if settings.get(RECORD)
        else "Produced by `python -m flows.stability_grid`"
    )
    lines = [
        title,
        "",
        f"{made} (comparison `{comparison}`), page written by "
        f"`stable-verl comparisons publish {comparison}`. Data: [{PAGE}/table.csv]({PAGE}/table.csv) (one row per "
        f"run), [{PAGE}/claims.csv]({PAGE}/claims.csv), every setting in [{PAGE}/grid.json]({PAGE}/grid.json).",
        "",
        *_budget_and_regime(table, settings, params),
        "",
        body.lstrip("\n"),
        "## Every setting",
        "",
        "```yaml",
        yaml.safe_dump(params, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    page = out_dir / f"{PAGE}.md"
    page.write_text("\n".join(lines))
    return page


# --------------------------------------------------------------------------------------------- republish
def _summary(row: pd.Series, total_steps: int, w: int) -> claims.RunSummary:
    """A published table.csv row as the claims read it: its peak and final checkpoints (no per-step data), the
    outcome verdict "too short" where the run's length alone decides it (else not judged: None)."""
    final_step = int(total_steps)
    if int(row["peak_step"]) == final_step:
        steps, scores, ses = (final_step,), (float(row["final"]),), (float(row["final_stderr"]),)
    else:
        steps = (int(row["peak_step"]), final_step)
        scores = (float(row["peak"]), float(row["final"]))
        ses = (float(row["peak_stderr"]), float(row["final_stderr"]))
    warning = row.get("warning_step", row.get("collapse_step"))
    return claims.RunSummary(
        str(row["arm"]),
        int(row["N"]),
        int(row["seed"]),
        steps,
        scores,
        ses,
        verdict=cv.TOO_SHORT if total_steps // w < cv.MIN_PASSES else None,
        warning_step=None if pd.isna(warning) else int(warning),
        run_id=str(row["run_id"]),
    )


def _unjudgeable(total_steps: int, w: int, n_seeds: int) -> list[str]:
    passes = total_steps // w
    return [
        "## What these published data can and cannot judge",
        "",
        "The grid's artifact store is gone; what remains is this page's table.csv (per run: peak and final score with "
        "their evaluation SE, and the step of the old entropy+KL flag), claims.csv, grid.json and the figures. So:",
        "",
        f"- **No collapse can be judged.** Each run has {total_steps} steps = {passes} passes of {w} steps over the "
        f"RL prompts; the outcome rule needs >= {cv.MIN_PASSES} (a best pass, two passes down, one more to show it "
        "lasts). Every run is 'too short', so every collapse claim is inconclusive, whatever the per-step rewards "
        "(which were not published) would show.",
        f"- **Rate claims could not be held anyway:** with {n_seeds} seeds per arm even {n_seeds}/{n_seeds} collapsed "
        f"vs 0/{n_seeds} gives one-sided Fisher p = {sig.fisher_one_sided(n_seeds, n_seeds, 0, n_seeds):.3f}.",
        "- **No paired comparison:** per-prompt results (samples.jsonl) were in the store only, so checkpoint-to-"
        "checkpoint falls use the unpaired SE sqrt(SE_a^2 + SE_b^2), which carries the prompt-difficulty variance "
        "that pairing would cancel.",
        "- **Score claims are judged on final scores** across seeds (SD pooled over all cells, t-quantiles, Holm). "
        "All runs stopped at the same step, so 'final' is a step fixed in advance; it is not where a run peaked.",
        "- **The figures are unchanged** from the original publication (seed means; the score band there is the old "
        "max(seed SE, evaluation SE) rule).",
    ]


def _warnings_published(summaries: list[claims.RunSummary]) -> list[str]:
    """What the published peak/final scores say about the runs the entropy+KL warning fired on."""
    warned = [s for s in summaries if s.warning_step is not None]
    if not warned:
        return ["No run raised the entropy+KL warning."]
    at_peak = sum(s.final == s.peak for s in warned)
    falls = [(s.peak - s.final) / math.hypot(s.peak_stderr, s.final_stderr) for s in warned]
    return [
        f"{len(warned)} of {len(summaries)} runs raised the entropy+KL early warning (stable_verl/core/collapse.py; "
        "logged as `stability/collapse` before December 2026). The published table holds only each run's peak and "
        f"final checkpoint, so a fall after the warning step cannot be located; but {at_peak} of the {len(warned)} "
        f"warned runs ended at their peak, and the largest peak-to-final fall of any warned run is {max(falls):.2f} SE "
        f"(unpaired), below the {cv.HELDOUT_Z:g} SE that would count. The warning fires on the policy sharpening "
        "(entropy falls as it learns) plus a noisy KL; it is a diagnostic, not a collapse.",
    ]


def republish(folder: Path, out_dir: Path) -> Path:
    """Rewrite a published stability-grid page from its own ``table.csv`` and ``grid.json`` (in ``folder``) under the
    current claim rules, with no store and no new runs: table.csv (outcome verdicts added), claims.csv and
    ``out_dir/stability-grid.md``; the figures are kept. Returns the page."""
    missing = [name for name in ("table.csv", "grid.json", "claims.csv") if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: pass the folder of a published grid page")
    settings = json.loads((folder / "grid.json").read_text())
    old_table = pd.read_csv(folder / "table.csv")
    first = folder / FIRST_CLAIMS  # the verdicts as first published, kept so a rerun shows the same changes
    old_claims = pd.read_csv(first if first.exists() else folder / "claims.csv")
    params = settings["params"]
    total = int(params["rl"]["total_steps"])
    w = cv.steps_per_pass(params["task"]["n_rl_train"], params["rl"]["train_batch_size"])
    summaries = [_summary(row, total, w) for _, row in old_table.iterrows()]
    verdicts = claims.judge(summaries)
    keep = [c for c in old_table.columns if c not in ("collapse_step", "verdict", "onset_step", "tags", "warning_step")]
    rows = [grid_tables.summary_row(s) for s in summaries]
    table = pd.concat([pd.DataFrame.from_records(rows), old_table[[c for c in keep if c not in rows[0]]]], axis=1)
    assets = out_dir / PAGE
    if assets.resolve() != folder.resolve():
        if assets.exists():
            shutil.rmtree(assets)
        shutil.copytree(folder, assets)
    table.to_csv(assets / "table.csv", index=False)
    old_claims.to_csv(assets / FIRST_CLAIMS, index=False)
    grid_tables.claims_table(verdicts).to_csv(assets / "claims.csv", index=False)
    seeds = min(int(v) for v in old_table.groupby(["arm", "N"]).size())
    changes = ["## Changes from the first publication", ""]
    if len(old_claims) == len(verdicts):
        pairs = zip(verdicts, old_claims["verdict"], strict=True)
        changes += ["| claim | first published | now |", "|---|---|---|"]
        changes += [f"| {v.claim} | {old} | **{v.verdict}** |" for v, old in pairs]
        changes += [
            "",
            "The first publication held two collapse claims on the entropy+KL flag alone "
            "(stable_verl/core/collapse.py, `stability/collapse`), which fires on a healthy policy sharpening plus a "
            "noisy train-inference KL (notes/grid-science.md §1.1-1.3). That flag is now an early warning only "
            "(`stability/collapse_warning`); "
            "claims read outcome verdicts. Score claims moved from peaks with a floored unpaired SE and Z = 2 to final "
            "scores with a pooled seed SD, t-quantiles and Holm.",
        ]
    title = f"# Stability grid: {total} RL steps, rollouts {params['rl'].get('rollout_precision', 'native')}"
    lines = [
        title,
        "",
        f"Republished under the outcome collapse rule and the paired/Holm statistics of issue 26 by `stable-verl "
        f"comparisons republish {PAGE_FOLDER}`, from this page's own data (no new runs, no store). Data: "
        f"[{PAGE}/table.csv]({PAGE}/table.csv) (one row per run), [{PAGE}/claims.csv]({PAGE}/claims.csv), every "
        f"setting in [{PAGE}/grid.json]({PAGE}/grid.json).",
        "",
        *_budget_and_regime(table, settings, params),
        "",
        *_unjudgeable(total, w, seeds),
        "",
        "## Claims (paper.md §6.5)",
        "",
        *grid_tables.claims_lines(verdicts),
        "",
        *grid_tables.rules_lines(),
        "",
        *changes,
        "",
        "## Entropy+KL warnings against scores",
        "",
        *_warnings_published(summaries),
        "",
        "## Curves per N",
        "",
        *[f"![N={n}]({PAGE}/plots/regime_N{n}.png)" for n in sorted(table["N"].unique())],
        "",
        "## R2 vs R3 against N",
        "",
        f"![crossover]({PAGE}/plots/crossover.png)",
        "",
        "## Runs",
        "",
        *grid_tables.runs_lines(table),
        "",
        "## Every setting",
        "",
        "```yaml",
        yaml.safe_dump(params, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    page = out_dir / f"{PAGE}.md"
    page.write_text("\n".join(lines))
    return page


def _budget_and_regime(table: pd.DataFrame, settings: dict, params: dict) -> list[str]:
    """The page's budget and the regime every arm shared (both pages: a first publication and a republication)."""
    return [
        "## Budget",
        "",
        *_budget(table, settings),
        "",
        "## Regime (shared by every arm; no arm was tuned on its own)",
        "",
        f"- model: {params['model']}; task: {params['task']}",
        f"- RL (the recipe is each cell's arm, its minibatches the cell's N): "
        f"{ {k: v for k, v in params['rl'].items() if k != 'recipe'} }",
        f"- evaluation: {params['eval']}",
    ]
