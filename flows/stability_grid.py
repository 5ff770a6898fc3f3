"""Stability grid flow (paper §5, notes §6.2): arms x N x seeds of RL from one SFT init -> eval -> claims report.

python -m flows.stability_grid [--config configs/stability_grid.yaml] [key=value ...]
stable-verl run stability-grid [--config ...] [key=value ...]              (the same flow)
stable-verl comparisons publish <comparison id>                             (docs/results/stability-grid.md)

Each cell is one tracked RL run with a content-addressed id: rerunning the flow skips the complete cells and
resumes a killed one from its last checkpoint in the store, so a grid of many hours can run in parts. Cells run
``launcher.max_concurrent`` at once (flows/cells.py; on a Ray cluster by default as many as its GPUs hold).
"""

from __future__ import annotations

if __name__ == "__main__":  # bad input fails in about a second: checked before Prefect, torch and verl are imported
    from flows._main import check_or_exit

    check_or_exit("flows.stability_grid")

import sys

from prefect import flow

from flows.cells import Cell, max_concurrent, raise_if_failed, run_cells
from flows.coldstart import _check_declared, _timed
from flows.evaluate import evaluate_flow
from flows.rl import rl_flow
from flows.sft import sft_flow
from flows.tasks import grid_report, kill_verl, preflight
from stable_verl.config.params import StabilityGridParams
from stable_verl.train.experiment import grid_graph
from stable_verl.train.stages import rl_run_complete


@flow(name="stability-grid", on_cancellation=[kill_verl], on_crashed=[kill_verl], on_failure=[kill_verl])
def stability_grid_flow(params: StabilityGridParams) -> dict:
    """One SFT init -> every (arm, N, seed) cell as a tracked RL run (``launcher.max_concurrent`` at once) ->
    checkpoint evaluation -> claims report. A failed cell leaves the others running; the flow then fails, naming
    every cell's outcome, and a rerun resumes what is unfinished."""
    preflight(params)
    graph = grid_graph(params)
    stages = [_timed(sft_flow, init.params) for init in graph.inits]  # none when init_run names the init
    for init, stage in zip(graph.inits, stages, strict=True):
        _check_declared(init.run_id, stage)
    (init_run,) = graph.init_runs()
    concurrency = max_concurrent(params.launcher, params.rl.nnodes * params.rl.n_gpus_per_node)
    grid_cells = [Cell(c.label, rl_flow, c.params) for c in graph.cells]
    store = params.store.open()
    to_run = sum(not rl_run_complete(cell.params, store) for cell in grid_cells)
    outcomes = run_cells("grid", grid_cells, concurrency, to_run)
    raise_if_failed("grid", outcomes)
    cells = [(cell.grid_cell, outcome.result) for cell, outcome in zip(graph.cells, outcomes, strict=True)]
    scores = _timed(evaluate_flow, params.evaluate_params([init_run, *(s["run_id"] for _, s in cells)]))
    evaluation = {k: v for k, v in scores.items() if k != "rows"}
    report = grid_report(params, init_run, cells, scores, {"stages": stages, "eval": evaluation})
    return {
        **report,
        "init_run": init_run,
        "max_concurrent": concurrency,
        "cells": [{"cell": c.label, **s} for c, s in cells],
        "eval": evaluation,
    }


def summary(result: dict) -> str:
    """Per-cell timings (flow_s: as seen by the grid; verl_s: the verl subprocess) and where the report is."""
    lines = ["cell                                   run                   flow_s  verl_s"]
    for c in result["cells"]:
        skipped = "  (skipped: complete)" if c["skipped"] else ""
        resumed = f"  (resumed from step {c['resumed_from']})" if c["resumed_from"] else ""
        lines.append(f"{c['cell']:<38} {c['run_id']:<21} {c['flow_s']:6.1f} {c['verl_s']:7.1f}{skipped}{resumed}")
    e = result["eval"]
    lines.append(f"eval: {e['evaluated']} checkpoint(s) in {e['eval_s']:.1f} s (flow {e['flow_s']:.1f} s)")
    lines.append(f"report: {result['report']}")
    lines.append(f"publish: stable-verl comparisons publish {result['comparison_id']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from flows._main import run_flow_main

    sys.exit(run_flow_main("flows.stability_grid", summary=summary))
