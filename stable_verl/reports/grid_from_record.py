"""The stability grid's comparison report from a run record: no checkpoints, no run.json, no flow.

    stable-verl comparisons from-record --config configs/stability_stress.yaml --store RECORD RUN_ID [...]
    stable-verl comparisons publish <comparison id> --store RECORD --out FOLDER

A record (``python -m stable_verl.reports.pilot_page --export``) keeps per run its config.yaml, metrics.jsonl and
held-out evaluations (results.json, samples.jsonl with one row per prompt), and its init's last evaluation: all that
the grid's report reads. :func:`report_from_record` rebuilds what the grid flow hands its report task
(``grid_report`` in flows/tasks.py): the cell of each run, from its config (:func:`.pilot_page.config_cell`); the
flat score rows the evaluate flow returns, for the steps ``eval.steps`` names; one stage result per cell, marked
``skipped`` as for a cell complete before the flow call (a record has no run.json: its wall times read 0). Then the
flow's own functions write ``comparisons/<id>/`` into the record, under the id the flow would give the same runs.

The runs must be cells of the config's grid, each at most once, at its rollout precision, from its init, and
evaluated with its sampling settings; anything else is a one-line ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stable_verl.artifacts import ArtifactStore, ComparisonLayout, RunLayout
from stable_verl.artifacts.layout import parse_step_dir
from stable_verl.config.eval_settings import score_row
from stable_verl.config.grid_cell import GridCell
from stable_verl.config.params import StabilityGridParams
from stable_verl.config.selector import choose_steps
from stable_verl.reports import grid
from stable_verl.reports.grid_page import RECORD
from stable_verl.reports.pilot_page import config_cell, config_precision
from stable_verl.reports.publish import publish_report


def record_cell(run_id: str, config: dict | None, params: StabilityGridParams, init_run: str) -> GridCell:
    """The cell of ``params``' grid that ``run_id`` ran, from its ``config`` (config.yaml); a ``ValueError`` for a run
    that is not one of the grid's cells, rolled out at another precision or started from another init."""
    if config is None:
        raise ValueError(f"run {run_id} has no config.yaml in the record")
    found = config_cell(config)
    if found is None:
        raise ValueError(f"run {run_id} is not a stability-grid cell: its config has no minibatches= or no rl_seed")
    cell = GridCell(*found)
    precision, wanted = config_precision(config), params.rl.rollout_precision
    if precision != wanted:
        raise ValueError(f"run {run_id} rolled out at {precision}, the grid's rl.rollout_precision is {wanted}")
    if cell not in params.cells():
        raise ValueError(f"run {run_id} ({cell.label}) is not a cell of this grid ({len(params.cells())} cells)")
    if config.get("init_run") != init_run:
        raise ValueError(f"run {run_id} started from {config.get('init_run')}, the grid's init is {init_run}")
    return cell


def _evaluated_steps(layout: RunLayout, benchmarks: Sequence[str]) -> list[int]:
    """The steps at which the record holds a results.json of every one of ``benchmarks``."""
    per_bench = []
    for bench in benchmarks:
        found = layout.store.glob(f"{layout.prefix}/eval/global_step_*/{bench}/results.json")
        per_bench.append({parse_step_dir(rel.split("/")[-3]) for rel in found} - {None})
    return sorted(set.intersection(*per_bench)) if per_bench else []


def record_scores(
    store: ArtifactStore, params: StabilityGridParams, init_run: str, configs: dict[str, dict | None]
) -> tuple[str, list[dict]]:
    """(metric, rows): the flat score rows (:func:`~stable_verl.config.eval_settings.score_row`) the evaluate flow
    returns for ``init_run`` (its last evaluation) and the runs of ``configs`` (run id -> config.yaml; the steps
    ``eval.steps`` names), read from the record; a ``ValueError`` for a step the record lacks or a result sampled
    with other settings than the grid's (the flow would evaluate it again)."""
    benches = params.eval.benchmark_list(params.task)
    settings = params.eval.settings().resolved([RunLayout(store, init_run).read_config(), *configs.values()])
    metric = f"avg@{settings.k}"
    rows = []
    for run_id in (init_run, *configs):
        layout = RunLayout(store, run_id)
        evaluated = _evaluated_steps(layout, benches)
        if not evaluated:
            raise ValueError(f"run {run_id} has no evaluation of {', '.join(benches)} in the record")
        steps = evaluated[-1:] if run_id == init_run else choose_steps(layout, evaluated, params.eval.steps, False)
        wanted = params.eval.steps if isinstance(params.eval.steps, list) and run_id != init_run else []
        missing = sorted(set(wanted) - set(steps))
        if missing:
            raise ValueError(f"run {run_id} has no evaluation of step(s) {missing} in the record")
        for step in steps:
            for bench in benches:
                results = store.read_json(layout.eval_results(step, bench))
                where = f"run {run_id} step {step} {bench}"
                if not settings.recorded_in(results):
                    grid_eval = dataclasses.asdict(settings)
                    raise ValueError(
                        f"{where} was evaluated with {results.get('settings')}, not the grid's {grid_eval}"
                    )
                lacks = [k for k in (metric, f"{metric}_stderr", "format_rate") if k not in results]
                if lacks:
                    raise ValueError(f"{where}: its results.json lacks {', '.join(lacks)}")
                rows.append(score_row(run_id, step, bench, results, metric))
    return metric, rows


def report_from_record(
    store: ArtifactStore, params: StabilityGridParams, run_ids: Sequence[str], init_run: str
) -> ComparisonLayout:
    """The grid's comparison report of ``run_ids`` (cells of ``params``' grid from ``init_run``) from the record in
    ``store``, written and uploaded to ``comparisons/<id>/`` there as the grid flow publishes it; returns its
    layout. The id is the one the flow gives the same cells (their runs in the grid's cell order)."""
    if not run_ids or len(set(run_ids)) != len(run_ids):
        raise ValueError(f"give each run once, and at least one: got {list(run_ids)}")
    configs = {run_id: RunLayout(store, run_id).read_config() for run_id in run_ids}
    by_cell: dict[GridCell, str] = {}
    for run_id, config in configs.items():
        cell = record_cell(run_id, config, params, init_run)
        if cell in by_cell:
            raise ValueError(f"runs {by_cell[cell]} and {run_id} are the same cell {cell.label}: give one")
        by_cell[cell] = run_id
    # the flow's stage results, in its cell order; "skipped": complete before this call, so nothing ran now
    cells = [(cell, {"run_id": by_cell[cell], "skipped": True}) for cell in params.cells() if cell in by_cell]
    ordered = {stage["run_id"]: configs[stage["run_id"]] for _, stage in cells}
    metric, rows = record_scores(store, params, init_run, ordered)
    runs = grid.build_runs(store, cells, init_run, rows, metric)
    comparison = grid.comparison_id(params.name, [r.run_id for r in runs])
    timings = {"stages": [], "eval": {"metric": metric, "evaluated": 0}}  # nothing ran, nothing was evaluated now
    settings = grid.report_settings(params, init_run, timings) | {RECORD: True}
    title = grid.report_title(params)
    with tempfile.TemporaryDirectory() as workdir:
        return publish_report(
            store,
            comparison,
            [RunLayout(store, r.run_id).prefix for r in runs],  # store-relative: a record names no machine's folder
            Path(workdir),
            lambda out: grid.write_grid_report(runs, out, title, settings),
        )
