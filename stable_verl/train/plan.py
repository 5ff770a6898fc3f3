"""``stable-verl plan``: the exact verl command lines of a flow's stages, without building, running or the store.

The stages are the real ones (:func:`~.train.stages.sft_job`, :func:`~.train.stages.rl_job`) with the run ids and
local paths they will have. An RL stage that starts from an SFT stage of the same plan starts from that stage's
last checkpoint; one that starts from an existing run (``init_run``) names that run's last checkpoint, which only
the store knows, as ``global_step_<last>`` (and its own run id, which hashes it, as ``<rl run from ...>``).
An already-trained init (``init_checkpoints``) is an import stage (its source and store folder), then RL from it.
A comparison's stages are its stage graph (:mod:`.experiment`), the one its flow runs.
With ``launcher.kind=ray_job`` each stage is the ``ray job submit`` command of its first attempt instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stable_verl.artifacts import RunLayout, checkpoint_path, step_dir
from stable_verl.config.params import ColdstartParams, RLFlowParams, SFTFlowParams, StabilityGridParams
from stable_verl.launch.ray_job import job_submit_argv, resolve_address
from stable_verl.train.assets import planned_assets
from stable_verl.train.checkpoint_import import checkpoint_prefix
from stable_verl.train.experiment import Experiment, InitStage, coldstart_graph, grid_graph
from stable_verl.train.lifecycle import VerlJob, launch_spec
from stable_verl.train.stages import local_run_dir, rl_job, rl_run_id, sft_job, sft_run_id


@dataclass(frozen=True)
class PlannedStage:
    """One verl stage of a plan: its kind, run id and command line."""

    kind: str
    run_id: str
    argv: list[str]


def plan_sft(p: SFTFlowParams) -> PlannedStage:
    workdir = Path(p.workdir).resolve()
    run = sft_run_id(p)
    job = sft_job(p, planned_assets(workdir, p.model, p.task, p.seed, p.store.endpoint_url), run, workdir)
    return PlannedStage("sft", run, _command(p, job, run, workdir))


def plan_rl(p: RLFlowParams, init_steps: int | None = None) -> PlannedStage:
    """The RL stage of ``p``; ``init_steps``: the last checkpoint of ``p.init_run`` when the plan knows it."""
    workdir = Path(p.workdir).resolve()
    assets = planned_assets(workdir, p.model, p.task, p.seed, p.store.endpoint_url)
    if p.init_run is None:
        model_dir, parent = assets.model_dir, None
        run = rl_run_id(p, parent)
    else:
        last = step_dir(init_steps) if init_steps is not None else "global_step_<last>"
        model_dir = local_run_dir(workdir, p.init_run) / "checkpoints" / last / "huggingface"
        parent = checkpoint_path(p.init_run, init_steps) if init_steps is not None else None
        run = rl_run_id(p, parent) if parent else f"<rl run from {p.init_run}>"
        if p.launcher.on_cluster:  # the nodes read the checkpoint's HF folder from the store
            parent = parent or f"runs/{p.init_run}/checkpoints/{last}"
    job = rl_job(p, assets, model_dir, parent, "huggingface")
    return PlannedStage("rl", run, _command(p, job, run, workdir))


def _command(p: SFTFlowParams | RLFlowParams, job: VerlJob, run: str, workdir: Path) -> list[str]:
    """The verl command line; on a cluster, the ``ray job submit`` of the stage's first attempt."""
    local = local_run_dir(workdir, run)
    argv = job.argv(local / "checkpoints")
    if not p.launcher.on_cluster:
        return argv
    layout = RunLayout(p.store.open(), run)
    spec = launch_spec(layout, job, argv, local, 1, local / "metrics-attempt-1.jsonl")
    return job_submit_argv(resolve_address(p.launcher.ray_address), spec, p.launcher.python)


def plan_sft_flow(p: SFTFlowParams) -> list[PlannedStage]:
    return [plan_sft(p)]


def plan_rl_flow(p: RLFlowParams) -> list[PlannedStage]:
    return [plan_rl(p)]


def plan_import(init: InitStage) -> PlannedStage:
    """The import of the already-trained init ``init``: its source and where the store will hold it."""
    checkpoint = init.params
    source = checkpoint.path + (f"@{checkpoint.revision}" if checkpoint.revision else "")
    return PlannedStage("import", init.run_id, [source, "->", checkpoint_prefix(init.run_id)])


def plan_experiment(graph: Experiment) -> list[PlannedStage]:
    """The stages of ``graph`` in the order the plan prints them: each init's stage before its first cell, then
    every cell's RL stage from its init's last checkpoint."""
    stages: list[PlannedStage] = []
    planned: set[str] = set()
    for cell in graph.cells:
        init = cell.init
        if init is not None and init.run_id not in planned:
            planned.add(init.run_id)
            stages.append(plan_sft(init.params) if isinstance(init.params, SFTFlowParams) else plan_import(init))
        stages.append(plan_rl(cell.params, init_steps=None if init is None else init.last_step))
    return stages


def plan_coldstart(p: ColdstartParams) -> list[PlannedStage]:
    """Per init: its SFT, then the RL stage from the SFT's last checkpoint; per already-trained init, its import,
    then the RL stage from it (step 0)."""
    return plan_experiment(coldstart_graph(p))


def plan_stability_grid(p: StabilityGridParams) -> list[PlannedStage]:
    """The init's SFT (unless ``init_run`` names one), then every cell's RL stage."""
    return plan_experiment(grid_graph(p))
