"""The SFT and RL stages: content-addressed run ids, locally built inputs, the exact verl command lines.

Run ids hash everything that determines the weights (stage config, recipe contents, seeds, model and
task specs) and the upstream checkpoint, but not operational knobs such as ``stall_s``, so a rerun of
the same stage lands in the same run prefix and is skipped or resumed there. Each stage is a
:class:`~.lifecycle.VerlJob` run by :func:`~.lifecycle.run_tracked`; ``stable-verl plan`` prints
the same jobs' command lines (:func:`sft_job`, :func:`rl_job`) without building or running anything.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, RunLayout, run_id, step_dir
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.config import cpu_env
from stable_verl.config.params import LauncherParams, RLFlowParams, SFTFlowParams
from stable_verl.config.stages import Logging, SFTStage
from stable_verl.launch.ray_job import RayJobLauncher
from stable_verl.launch.runner import Launcher, LocalLauncher
from stable_verl.models.hf import HFModel
from stable_verl.tasks.datasets import sft_split
from stable_verl.tasks.user_task import TaskData, task_identity
from stable_verl.train import model_source, node_sft, verl_command
from stable_verl.train.assets import Assets, prepare_assets, seeded_sft_file, seeded_sft_path
from stable_verl.train.lifecycle import StageResult, VerlJob, run_tracked
from stable_verl.train.model_source import ensure_hf_model, model_identity, model_key
from stable_verl.train.node_inputs import NodeInputs, checkpoint_model, model_config_dir, node_checkpoint_root
from stable_verl.verl_ext import rollout_precision

_OPERATIONAL = ("timeout_s", "stall_s")  # knobs that do not change the trained weights
# An SFT run's checkpoints before its last are resume points only (RL's are evaluated: its save_freq is identity).
_SFT_OPERATIONAL = ("save_freq",)
# Settings added after runs existed: left out of the identity at their default, so those runs keep their ids.
_OMITTED_AT = {"nnodes": 1, "n_gpus_per_node": 1}
_SFT_OMITTED_AT = {**_OMITTED_AT, "overrides": []}  # rl.overrides is as old as RL runs; sft.overrides came later
_RECIPE_OMITTED_AT = {"minirl": {"staleness_is": True}}  # the same rule, for a recipe's nested blocks


def _identity(obj: Any, omitted: dict[str, Any] = _OMITTED_AT) -> dict:
    fields = dataclasses.asdict(obj).items()
    operational = _OPERATIONAL + (_SFT_OPERATIONAL if isinstance(obj, SFTStage) else ())
    return {k: v for k, v in fields if k not in operational and not (k in omitted and v == omitted[k])}


def _recipe_identity(recipe: Any) -> dict:
    out = dataclasses.asdict(recipe)
    for block, defaults in _RECIPE_OMITTED_AT.items():
        out[block] = {k: v for k, v in out[block].items() if not (k in defaults and v == defaults[k])}
    return out


def launcher_factory(params: LauncherParams) -> Callable[[], Launcher]:
    """What makes each attempt's launcher: a local subprocess, or a Ray Job on the cluster ``params`` names."""
    if params.on_cluster:
        return lambda: RayJobLauncher(params.ray_address, python=params.python)
    return LocalLauncher


def stage_env(params: LauncherParams, log: Logging) -> dict[str, str]:
    """A local run gets this process's environment plus the settings; a Ray Job only the settings (with the
    trackers' non-secret ones)."""
    return cpu_env.cluster_env(params.cpu, log.backends) if params.on_cluster else cpu_env.verl_env()


def sft_run_id(p: SFTFlowParams) -> str:
    """The content-addressed id of the SFT run ``p`` describes."""
    config = {
        "sft": _identity(p.sft, _SFT_OMITTED_AT),
        "sft_seed": p.sft_seed,
        "model": model_identity(p.model, p.store.endpoint_url),
        "task": task_identity(p.task),
        "seed": p.seed,
    }
    return run_id("sft", p.sft.teacher, config)


def rl_run_id(p: RLFlowParams, parent: str | None) -> str:
    """The content-addressed id of the RL run ``p`` describes, from the checkpoint ``parent`` (None: base model)."""
    config = {
        "rl": _identity(p.rl),
        "recipe": _recipe_identity(p.rl.recipe_config),
        "rl_seed": p.rl_seed,
        "model": model_identity(p.model, p.store.endpoint_url),
        "task": task_identity(p.task),
        "seed": p.seed,
    }
    return run_id("rl", p.rl.recipe, config, upstream=[parent] if parent else [])


def local_run_dir(workdir: Path, run_id: str) -> Path:
    """A run's local scratch folder: verl's checkpoint root (``checkpoints/``), logs, seeded data files."""
    return workdir / "runs" / run_id


def sft_job(p: SFTFlowParams, assets: Assets, run: str, workdir: Path) -> VerlJob:
    """verl SFT of ``assets``' base model on ``p.sft.teacher``'s data, as run ``run``.

    On a cluster (``launcher.kind=ray_job``) the command names node paths and runs under the job entrypoint
    :mod:`~.train.node_sft` (inputs from the store, checkpoints to it, on the node that runs torchrun); the
    job's ``node_inputs`` are what the flow uploads before submitting it."""
    data = assets.data
    train = seeded_sft_path(data[sft_split(p.sft.teacher, "train")], p.sft_seed, local_run_dir(workdir, run))
    val = data[sft_split(p.sft.teacher, "val")]
    model: Path | PurePosixPath = assets.model_dir
    env = {**stage_env(p.launcher, p.logging), **verl_command.model_env(p.model)}
    model_args = verl_command.model_overrides(p.model, "model")
    nodes = None
    if p.launcher.on_cluster:
        nodes = NodeInputs()
        model, val = nodes.model(assets, _model_key(p), _in_store(p)), nodes.asset(assets, val)
        train = nodes.seeded(assets, train) if p.sft_seed else nodes.asset(assets, train)
        env = {**env, **nodes.env()}

    def argv(ckpt_root: Path) -> list[str]:
        root = ckpt_root if nodes is None else node_checkpoint_root(ckpt_root.parent.name)
        command = verl_command.sft_argv(
            p.sft, model, train, val, root, p.sft_seed, p.launcher.cpu, log=p.logging, model_args=model_args
        )
        if nodes is None:
            return command
        return [command[0], "-m", node_sft.__name__, "--", *command[1:]]

    return VerlJob(
        kind="sft",
        name=p.sft.teacher,
        total_steps=p.sft.steps,
        argv=argv,
        env=env,
        timeout_s=p.sft.timeout_s,
        stall_s=p.sft.stall_s,
        config=p.model_dump(mode="json", exclude={"store"}),
        launcher=launcher_factory(p.launcher),
        platform=functools.partial(cpu_env.platform_facts, p.launcher.cpu),
        entrypoint_gpus=p.sft.n_gpus_per_node,  # torchrun's trainers run in the job's own process tree
        store_sync=nodes is not None,  # on a cluster: node_sft syncs on the node that saves
        node_inputs=nodes,
        logging=p.logging,
    )


def rl_job(
    p: RLFlowParams, assets: Assets, model_dir: Path | None, parent: str | None, model_folder: str = ""
) -> VerlJob:
    """verl RL (the recipe, vLLM rollouts) of the HF model in ``model_dir``, which is ``parent`` in the store.

    On a cluster the command names node paths: the model is ``model_folder`` of the checkpoint ``parent`` (or the
    built base model), materialised from the store on each node that reads it, as are the parquet files. A local
    run names this machine's files: verl reads them here, so a copy would only cost time and disk. A user's reward
    file is one such input on a cluster (its node copy), named by this machine's path locally."""
    _, precision = cpu_env.rollout_numerics(p.rl.rollout_dtype, p.rl.rollout_precision, p.launcher.cpu)
    env = {**stage_env(p.launcher, p.logging), rollout_precision.ENV: precision, **verl_command.model_env(p.model)}
    data = assets.data
    model: Path | PurePosixPath = model_dir if model_dir is not None else assets.model_dir
    train, val = data["rl_train"], data["rl_val"]
    reward = p.task.reward if isinstance(p.task, TaskData) else None  # None: the built-in's, with rl.format_bonus
    nodes, reward_file = None, None
    if p.launcher.on_cluster:
        nodes = NodeInputs()
        model = nodes.checkpoint(parent, model_folder) if parent else nodes.model(assets, _model_key(p), _in_store(p))
        train, val = nodes.asset(assets, train), nodes.asset(assets, val)
        if reward is not None and reward.file is not None:
            reward_file = nodes.code(reward.file)
        env = {**env, **nodes.env()}

    def argv(ckpt_root: Path) -> list[str]:
        root = ckpt_root if nodes is None else node_checkpoint_root(ckpt_root.parent.name)
        return verl_command.ppo_argv(
            verl_command.ppo_overrides(
                p.rl,
                model,
                train,
                val,
                root,
                p.rl_seed,
                cluster=p.launcher.on_cluster,
                cpu=p.launcher.cpu,
                log=p.logging,
                model_args=verl_command.ppo_model_overrides(p.model),
                reward=reward,
                reward_file=reward_file,
            )
        )

    return VerlJob(
        kind="rl",
        name=p.rl.recipe,
        total_steps=p.rl.total_steps,
        argv=argv,
        env=env,
        timeout_s=p.rl.timeout_s,
        stall_s=p.rl.stall_s,
        config=p.model_dump(mode="json", exclude={"store"}),
        parent_checkpoint=parent,
        platform=functools.partial(cpu_env.platform_facts, p.launcher.cpu),
        launcher=launcher_factory(p.launcher),
        store_sync=True,  # the stable_sync trainer uploads its checkpoints and metrics itself
        node_inputs=nodes,
        logging=p.logging,
    )


def _model_key(p: SFTFlowParams | RLFlowParams) -> str | None:
    """A user model's content address (its store prefix on a cluster); None for the tiny model."""
    return model_key(p.model, p.store.endpoint_url) if isinstance(p.model, HFModel) else None


def _in_store(p: SFTFlowParams | RLFlowParams) -> str | None:
    """On a cluster, the store prefix of a user's ``s3://`` model that is in the store: the nodes take it from there
    and the flow's machine never downloads it. None otherwise."""
    if p.launcher.on_cluster and isinstance(p.model, HFModel):
        return model_source.store_prefix(p.model, p.store.open())
    return None


def init_checkpoint(store: ArtifactStore, init_run: str) -> tuple[RunLayout, int]:
    """The complete run ``init_run`` and its last checkpoint; ValueError if there is none to start from."""
    run = RunLayout(store, init_run)
    record = RunRecord.read(run)
    if record is None or not record.complete:
        state = "does not exist" if record is None else f"is {record.status!r}, not complete"
        raise ValueError(f"init run {init_run} {state} in {store.uri()}")
    step = run.latest_checkpoint()
    if step is None:
        raise ValueError(f"init run {init_run} has no complete checkpoint in {store.uri()}")
    return run, step


def fetch_checkpoint(run: RunLayout, step: int, workdir: Path) -> Path:
    """``global_step_<step>`` of ``run`` under ``workdir/runs/<run_id>/checkpoints``, downloaded unless present.

    A local copy counts only if its ``_MANIFEST.json`` equals the store's and every file has the listed size
    (the stage that wrote the checkpoint leaves one after uploading it).
    """
    local = local_run_dir(workdir, run.run_id) / "checkpoints" / step_dir(step)
    remote = run.store.read_manifest(run.checkpoint(step))
    if remote is None:
        raise ValueError(f"{run.uri(run.checkpoint(step))} is not a complete checkpoint")
    manifest = local / MANIFEST_NAME
    if manifest.exists() and manifest.read_text() == remote.to_json():
        if all((local / f.path).is_file() and (local / f.path).stat().st_size == f.size for f in remote.files):
            return local
    run.download_checkpoint(step, local)
    return local


def run_sft_stage(
    p: SFTFlowParams, store: ArtifactStore, echo: Callable[[str], None] = print, on_line=None
) -> StageResult:
    """verl SFT of the base model on ``p.sft.teacher``'s data, tracked in ``store``."""
    workdir = Path(p.workdir).resolve()
    run = RunLayout(store, sft_run_id(p))
    assets = prepare_assets(workdir, p.model, p.task, p.seed, p.store.endpoint_url, fetch_model=not _in_store(p))
    local = local_run_dir(workdir, run.run_id)
    seeded_sft_file(assets.data[sft_split(p.sft.teacher, "train")], p.sft_seed, local)
    job = sft_job(p, assets, run.run_id, workdir)
    publish_inputs(job, store, echo)
    return run_tracked(run, job, local, echo=echo, on_line=on_line)


def rl_run_complete(p: RLFlowParams, store: ArtifactStore) -> bool:
    """Whether the RL run ``p`` describes is complete in ``store`` already (running its stage would skip it)."""
    parent = None
    if p.init_run is not None:
        init, step = init_checkpoint(store, p.init_run)
        parent = init.checkpoint(step)
    record = RunRecord.read(RunLayout(store, rl_run_id(p, parent)))
    return record is not None and record.complete


def run_rl_stage(
    p: RLFlowParams, store: ArtifactStore, echo: Callable[[str], None] = print, on_line=None
) -> StageResult:
    """verl RL (the recipe, vLLM rollouts) from ``p.init_run``'s last checkpoint, tracked in ``store``."""
    workdir = Path(p.workdir).resolve()
    assets = prepare_assets(workdir, p.model, p.task, p.seed, p.store.endpoint_url, fetch_model=not _in_store(p))
    parent, model_dir, folder = None, None, ""
    p.rl.recipe_config.check_registered()
    if p.init_run is not None:
        init, step = init_checkpoint(store, p.init_run)
        parent = init.checkpoint(step)
        if p.launcher.on_cluster:  # the nodes fetch the HF folder; here only its config.json, for the check
            parent, folder = checkpoint_model(init, step)
            with tempfile.TemporaryDirectory() as tmp:
                p.rl.recipe_config.check_model(model_config_dir(store, parent, folder, Path(tmp)))
        else:
            model_dir = ensure_hf_model(fetch_checkpoint(init, step, workdir))
    if model_dir is not None or (p.init_run is None and not isinstance(p.model, HFModel)):
        p.rl.recipe_config.check_model(model_dir or assets.model_dir)
    elif p.init_run is None:  # a user's model, wherever it is: its config.json alone
        config = model_source.model_config(p.model, p.store.endpoint_url)
        p.rl.recipe_config.check_model_type(config.get("model_type"), p.model.path)
    run = RunLayout(store, rl_run_id(p, parent))
    job = rl_job(p, assets, model_dir, parent, folder)
    publish_inputs(job, store, echo)
    return run_tracked(run, job, local_run_dir(workdir, run.run_id), echo=echo, on_line=on_line)


def publish_inputs(job: VerlJob, store: ArtifactStore, echo: Callable[[str], None] = print) -> None:
    """Upload the inputs a cluster job's nodes materialise that the store lacks (built assets: once per store)."""
    if job.node_inputs is not None:
        for prefix in job.node_inputs.publish(store):
            echo(f"[{job.kind}] uploaded the stage's inputs to {store.uri(prefix)}")
