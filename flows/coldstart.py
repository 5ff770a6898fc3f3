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

from flows.cells import Cell, CellOutcome, max_concurrent, one_line, raise_if_failed, run_cells
from flows.evaluate import evaluate_flow
from flows.rl import rl_flow
from flows.sft import sft_flow
from flows.tasks import comparison_report, import_stage, kill_verl, preflight
from stable_verl.config.params import ColdstartParams
from stable_verl.reports.coldstart import InitRuns


# on_failure too: when one init's SFT fails, the others still run side by side, and they must die with the flow.
@flow(name="coldstart-comparison", on_cancellation=[kill_verl], on_crashed=[kill_verl], on_failure=[kill_verl])
def coldstart_comparison_flow(params: ColdstartParams) -> dict:
    """N cold-start inits -> SFT of each (or the import of an already-trained one) -> the same RL recipe ->
    checkpoint evaluation -> comparison report."""
    preflight(params)
    pairs = params.sft_pairs()
    # verl SFT keeps one core busy, so the inits' SFTs run side by side; their RL stages then run
    # launcher.max_concurrent at once (locally one: RL uses every core). A failed init leaves the others running.
    sft_runs = [_sft_side_by_side.submit(params.sft_params(t, s)) for t, s in pairs]
    # Already-trained inits: imported (while the SFTs run), then trained with the same recipe after the SFT inits.
    imports = {name: _timed_task(import_stage, params, name) for name in params.init_checkpoints}
    sfts, failed = {}, []
    for (name, seed), sft_run in zip(pairs, sft_runs, strict=True):
        try:
            sfts[name, seed] = sft_run.result()
        except Exception as e:
            failed.append(CellOutcome(f"{name}/seed{seed} (sft)", error=one_line(e)))
    sfts.update({(name, seed): imports[name] for name, seed in params.init_pairs()})
    order = [pair for pair in [*pairs, *params.init_pairs()] if pair in sfts]
    concurrency = max_concurrent(params.launcher, params.rl.nnodes * params.rl.n_gpus_per_node)
    cells = [Cell(f"{n}/seed{s}", rl_flow, params.rl_params(sfts[n, s]["run_id"], s)) for n, s in order]
    outcomes = run_cells("coldstart", cells, concurrency)
    raise_if_failed("coldstart", [*failed, *outcomes])
    inits, stages = [], list(imports.values())
    for (name, seed), outcome in zip(order, outcomes, strict=True):
        sft, rl = sfts[name, seed], outcome.result
        inits.append(InitRuns(name, seed, sft["run_id"], rl["run_id"]))
        stages += [rl] if name in params.init_checkpoints else [sft, rl]
    runs = list(dict.fromkeys(run for init in inits for run in (init.sft_run, init.rl_run)))  # an import: once
    scores = evaluate_flow(params.evaluate_params(runs))
    report = comparison_report(params, inits, scores)
    evaluation = {k: v for k, v in scores.items() if k != "rows"}
    return {**report, "inits": [dataclasses.asdict(i) for i in inits], "stages": stages, "eval": evaluation}


@task(name="sft-init", task_run_name="sft-{params.sft.teacher}-seed{params.sft_seed}", cache_policy=NO_CACHE)
def _sft_side_by_side(params) -> dict:
    """The SFT subflow of one init, in a task so that the flow can start every init's SFT at once."""
    return _timed(sft_flow, params)


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
