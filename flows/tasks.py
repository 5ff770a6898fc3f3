"""Prefect tasks and hooks shared by the flows: thin wrappers over stable_verl's stages and reports plus UI artifacts.

Stage tasks retry transient failures only (network / S3 trouble; :func:`is_transient`); a retried
stage resumes from its last checkpoint in the store. Tasks are called directly (not submitted), so they
run on the flow's main thread, where a SIGTERM reaches them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from stable_verl import site
from stable_verl.artifacts import ArtifactStore
from stable_verl.config.grid_cell import GridCell
from stable_verl.config.params import (
    ColdstartParams,
    EvaluateFlowParams,
    RLFlowParams,
    SFTFlowParams,
    StabilityGridParams,
)
from stable_verl.eval import checkpoints as checkpoint_eval
from stable_verl.launch import procs
from stable_verl.launch.progress import progress_printer
from stable_verl.launch.transient import is_transient
from stable_verl.reports import coldstart, compare, grid
from stable_verl.reports.publish import publish_report
from stable_verl.train import checkpoint_import
from stable_verl.train import stages as train_stages
from stable_verl.train.preflight import check_inputs


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only what :func:`is_transient` calls transient."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False


STAGE = {"retries": 2, "retry_delay_seconds": [10, 60], "retry_condition_fn": retry_if_transient}


def kill_verl(flow, flow_run, state) -> None:
    """Flow ``on_cancellation`` / ``on_crashed`` (/ ``on_failure``) hook: no verl process may outlive its flow."""
    killed = procs.kill_active(grace_s=5.0)
    if killed:
        get_run_logger().warning(f"killed verl process tree(s) {killed} ({state.name})")


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(params) -> str:
    """Every flow's first step: verl trees die with the flow on SIGTERM; unusable input (the store, the workdir, a
    cluster's address, the input runs: :func:`~stable_verl.train.preflight.check_inputs`) fails fast, never
    retried, also when the flow was started by Prefect rather than ``python -m flows.<name>``."""
    procs.install_sigterm_handler()  # main thread: kill registered verl trees, then Prefect's own handler
    check_inputs(params)
    return params.store.open().uri()


class _Progress:
    """A Prefect progress artifact that follows verl's step lines, plus about ten step lines in the log."""

    def __init__(self, kind: str, total: int, key: str) -> None:
        self.kind, self.total = kind, total
        self.id = create_progress_artifact(0.0, key=artifact_key("progress", key), description=f"{kind}: 0/{total}")
        log, every = get_run_logger(), max(1, total // 10)  # about ten step lines per stage in the log

        def echo(line: str) -> None:
            step = re.search(r"step (\d+)/", line)
            if step is None or int(step.group(1)) % every == 0 or int(step.group(1)) == total:
                log.info(line)

        self.on_line = progress_printer(kind, total, echo, on_step=self.update)

    def update(self, step: int) -> None:
        update_progress_artifact(
            self.id, 100.0 * step / self.total, description=f"{self.kind}: step {step}/{self.total}"
        )


def _publish_run(kind: str, result: dict, store: ArtifactStore) -> None:
    create_link_artifact(
        site.page_url(store, site.run_page_path(result["run_id"])),  # site hook: link the run's page
        link_text=result["run_id"],
        key=artifact_key(kind, "run"),
        description=f"{kind} run page: metrics plotted, checkpoints, evaluations, config, command (folder: "
        f"{result['run_uri']})",
    )


def _tracked_stage(kind: str, total: int, key: str, run_stage, params) -> dict:
    """Run a tracked stage (``train_stages.run_<kind>_stage``) with a progress artifact; link its run folder."""
    progress = _Progress(kind, total, key)
    store = params.store.open()
    result = run_stage(params, store, echo=get_run_logger().info, on_line=progress.on_line).as_dict()
    progress.update(total)
    _publish_run(kind, result, store)
    return result


@task(name="verl-sft", task_run_name="sft-{params.sft.teacher}-seed{params.sft_seed}", cache_policy=NO_CACHE, **STAGE)
def sft_stage(params: SFTFlowParams) -> dict:
    key = f"sft-{params.sft.teacher}-seed{params.sft_seed}"
    return _tracked_stage("sft", params.sft.steps, key, train_stages.run_sft_stage, params)


@task(name="verl-rl", task_run_name="rl-{params.rl.recipe}-seed{params.rl_seed}", cache_policy=NO_CACHE, **STAGE)
def rl_stage(params: RLFlowParams) -> dict:
    key = f"rl-{params.init_run or 'base'}-seed{params.rl_seed}"
    return _tracked_stage("rl", params.rl.total_steps, key, train_stages.run_rl_stage, params)


@task(name="import-checkpoint", task_run_name="import-{name}", cache_policy=NO_CACHE, **STAGE)
def import_stage(params: ColdstartParams, name: str) -> dict:
    """An already-trained init (``params.init_checkpoints[name]``) imported as a complete SFT run (skipped if it is
    complete in the store already); the link to its run page."""
    store = params.store.open()
    result = checkpoint_import.import_checkpoint(
        name,
        params.init_checkpoints[name],
        store,
        Path(params.workdir).resolve(),
        params.store.endpoint_url,
        echo=get_run_logger().info,
    ).as_dict()
    _publish_run("import", result, store)
    return result


@task(name="evaluate-checkpoints", cache_policy=NO_CACHE, **STAGE)
def evaluate_runs(params: EvaluateFlowParams) -> dict:
    """Evaluate the selected checkpoints (one vLLM process: here, or a Ray Job with ``launcher.kind=ray_job``),
    publish a score table; returns flat score rows."""
    log = get_run_logger()
    store = params.store.open()
    workdir = Path(params.workdir).resolve()
    names = params.eval.benchmark_list(params.task)
    targets = checkpoint_eval.select_targets(store, params.runs, params.eval.steps, params.select, names)
    if params.select is not None:
        log.info(f"[eval] selector {params.select.model_dump(exclude_defaults=True)}: {len(targets)} checkpoint(s)")
    benchmarks = checkpoint_eval.benchmark_files(workdir, params.task, names, params.eval.n_prompts)
    settings = checkpoint_eval.resolve_dtype(store, targets, params.eval.settings())
    # Listed runs are waited for (a comparison needs their scores); a selector's scheduled run skips busy ones.
    wait_s = math.inf if params.select is None else 0.0
    outcome = checkpoint_eval.evaluate_checkpoints(
        store,
        targets,
        benchmarks,
        settings,
        workdir,
        params.eval.timeout_s,
        echo=log.info,
        lease_wait_s=wait_s,
        reward=checkpoint_eval.eval_reward(params.task),
        engine=params.eval.engine,
        launcher=params.launcher,
        stall_s=params.eval.stall_s,
    )
    metric = f"avg@{settings.k}"
    rows = outcome.rows(metric)
    create_table_artifact(rows, key=artifact_key("eval-scores"), description=f"{metric} per checkpoint and benchmark")
    create_link_artifact(site.page_url(store, site.PAGE), link_text="runs and comparisons", key="artifacts-index")
    return {
        "metric": metric,
        "rows": rows,
        "evaluated": len(outcome.evaluated),
        "busy": [dataclasses.asdict(t) for t in outcome.busy],
        "eval_s": outcome.eval_s,
        "download_s": outcome.download_s,
        "upload_s": outcome.upload_s,
    }


@task(name="comparison-report", cache_policy=NO_CACHE, **STAGE)
def comparison_report(params: ColdstartParams, inits: list[coldstart.InitRuns], scores: dict) -> dict:
    """Write the report to comparisons/<id>/ and show it (markdown) and its folder (link) in Prefect."""
    store: ArtifactStore = params.store.open()
    comparison = coldstart.comparison_id(params.name, inits)
    series = coldstart.build_series(store, inits, scores["rows"], scores["metric"])
    title = f"Cold-start comparison: {params.rl.recipe}, {params.rl.total_steps} RL steps"
    layout = publish_report(
        store,
        comparison,
        [s.run_uri for s in series],
        Path(params.workdir).resolve(),
        lambda out: compare.write_report(series, out, title),
    )
    report = store.read_text(layout.report_md)
    create_markdown_artifact(
        f"{report}\n\nReport folder: `{layout.uri()}`", key=artifact_key("coldstart-report"), description=title
    )
    page = site.page_url(store, site.comparison_page_path(comparison))  # site hook: link the comparison's page
    create_link_artifact(page, link_text=comparison, key=artifact_key("coldstart-report-folder"))
    return {"comparison_id": comparison, "report": layout.uri(layout.report_md), "folder": layout.uri()}


@task(name="stability-grid-report", cache_policy=NO_CACHE, **STAGE)
def grid_report(
    params: StabilityGridParams, init_run: str, cells: list[tuple[GridCell, dict]], scores: dict, timings: dict
) -> dict:
    """Figures per N, crossover, outcome verdicts and the claims table to comparisons/<id>/; shown in Prefect."""
    store: ArtifactStore = params.store.open()
    runs = grid.build_runs(store, cells, init_run, scores["rows"], scores["metric"])
    comparison = grid.comparison_id(params.name, [r.run_id for r in runs])
    title, settings = grid.report_title(params), grid.report_settings(params, init_run, timings)
    layout = publish_report(
        store,
        comparison,
        [r.series.run_uri for r in runs],
        Path(params.workdir).resolve(),
        lambda out: grid.write_grid_report(runs, out, title, settings),
    )
    report = store.read_text(layout.report_md)
    create_markdown_artifact(f"{report}\n\nReport folder: `{layout.uri()}`", key=artifact_key("grid-report"))
    page = site.page_url(store, site.comparison_page_path(comparison))  # site hook: link the comparison's page
    create_link_artifact(page, link_text=comparison, key=artifact_key("grid-report-folder"))
    return {"comparison_id": comparison, "report": layout.uri(layout.report_md), "folder": layout.uri()}
