"""Cold-start comparison flow: SFT per teacher style (x seeds) -> the same RL recipe -> eval -> report.

Inits that are already-trained SFT checkpoints (``init_checkpoints``) skip SFT: each is imported into the store as
a complete SFT run (:mod:`stable_verl.train.checkpoint_import`) and trained with the same recipe.

python -m flows.coldstart [--config configs/coldstart.yaml] [key=value ...]     (what `make demo` runs)
"""

from __future__ import annotations

if __name__ == "__main__":  # bad input fails in about a second: checked before Prefect, torch and verl are imported
    from flows._main import check_or_exit

    check_or_exit("flows.coldstart")

import dataclasses
import sys
import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.cells import Cell, max_concurrent, raise_if_failed, run_cells, sft_concurrency
from flows.evaluate import evaluate_flow
from flows.rl import rl_flow
from flows.sft import sft_flow
from flows.tasks import comparison_report, import_stage, kill_verl, preflight
from stable_verl.config.params import ColdstartParams
from stable_verl.reports.coldstart import InitRuns
from stable_verl.train.experiment import coldstart_graph


# on_failure too: when one init's SFT fails, the others still run side by side, and they must die with the flow.
@flow(name="coldstart-comparison", on_cancellation=[kill_verl], on_crashed=[kill_verl], on_failure=[kill_verl])
def coldstart_comparison_flow(params: ColdstartParams) -> dict:
    """N cold-start inits -> SFT of each (or the import of an already-trained one) -> the same RL recipe ->
    checkpoint evaluation -> comparison report."""
    preflight(params)
    graph = coldstart_graph(params)
    sft_inits = [init for init in graph.inits if init.kind == "sft"]
    # Already-trained inits: imported while the SFTs run (a task on the flow's runner), trained after the SFT inits.
    imports = {i.run_id: _import_side_by_side.submit(params, i.name) for i in graph.inits if i.kind == "import"}
    # verl SFT keeps one core busy: locally every init's SFT runs at once, on a cluster launcher.max_concurrent at
    # once (as the RL stages after them). A failed init leaves the others running.
    sft_cells = [Cell(f"{init.label} (sft)", sft_flow, init.params) for init in sft_inits]
    sft_at_once = sft_concurrency(params.launcher, params.sft.n_gpus_per_node, len(sft_cells))
    sft = run_cells("coldstart-sft", sft_cells, sft_at_once) if sft_cells else []
    imported = {run_id: future.result() for run_id, future in imports.items()}
    done = {**imported, **{i.run_id: o.result for i, o in zip(sft_inits, sft, strict=True) if o.error is None}}
    failed = [o for o in sft if o.error is not None]
    for run_id, result in done.items():
        _check_declared(run_id, result)
    ready = [cell for cell in graph.cells if cell.init.run_id in done]
    concurrency = max_concurrent(params.launcher, params.rl.nnodes * params.rl.n_gpus_per_node)
    outcomes = run_cells("coldstart", [Cell(c.label, rl_flow, c.params) for c in ready], concurrency)
    raise_if_failed("coldstart", [*failed, *outcomes])
    inits, stages = [], list(imported.values())
    for cell, outcome in zip(ready, outcomes, strict=True):
        init, rl = cell.init, outcome.result
        inits.append(InitRuns(init.name, cell.params.rl_seed, init.run_id, rl["run_id"]))
        stages += [rl] if init.kind == "import" else [done[init.run_id], rl]
    runs = list(dict.fromkeys(run for init in inits for run in (init.sft_run, init.rl_run)))  # an import: once
    scores = evaluate_flow(params.evaluate_params(runs))
    report = comparison_report(params, inits, scores)
    evaluation = {k: v for k, v in scores.items() if k != "rows"}
    return {**report, "inits": [dataclasses.asdict(i) for i in inits], "stages": stages, "eval": evaluation}


@task(name="import-init", task_run_name="import-{name}", cache_policy=NO_CACHE)
def _import_side_by_side(params: ColdstartParams, name: str) -> dict:
    """The import of one already-trained init, in a task so that it runs while the SFT inits train."""
    return _timed_task(import_stage, params, name)


def _check_declared(run_id: str, result: dict) -> None:
    """A stage's result is the run its experiment declares (the run id its RL cells start from)."""
    if result["run_id"] != run_id:
        raise RuntimeError(f"stage ran {result['run_id']}, its experiment declares {run_id}")


def _timed(subflow, params) -> dict:
    """Run a stage subflow; add ``flow_s``, its wall time as seen from here (Prefect's own cost included)."""
    start = time.monotonic()
    result = subflow(params)
    return {**result, "flow_s": time.monotonic() - start}


def _timed_task(stage_task, *args) -> dict:
    """A stage task called here; adds ``flow_s``, its wall time as seen from here."""
    start = time.monotonic()
    result = stage_task(*args)
    return {**result, "flow_s": time.monotonic() - start}


def summary(result: dict) -> str:
    """Per-stage timings and where the report is.

    flow_s: the stage subflow as seen by the parent; stage_s: the stage body (store reads/writes, checkpoint
    restore, verl, final sync); verl_s: the verl subprocess; overhead = flow_s - verl_s (Prefect + S3 + set-up).
    """
    lines = ["stage  run                  flow_s  stage_s  verl_s  overhead_s  upload_s  download_s"]
    for s in result["stages"]:
        lines.append(
            f"{s['kind']:<6} {s['run_id']:<20} {s['flow_s']:7.1f} {s['wall_s']:8.1f} {s['verl_s']:7.1f}"
            f" {s['flow_s'] - s['verl_s']:11.1f} {s['upload_s']:9.1f} {s['download_s']:11.1f}"
            f"{'  (skipped: complete)' if s['skipped'] else ''}"
        )
    e = result["eval"]
    lines.append(
        f"eval: {e['evaluated']} checkpoint(s) in {e['eval_s']:.1f} s (+{e['download_s']:.1f} s download,"
        f" {e['upload_s']:.1f} s upload)"
    )
    lines.append(f"report: {result['report']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from flows._main import run_flow_main

    sys.exit(run_flow_main("flows.coldstart", summary=summary))
