"""SFT and RL as tracked stages: content-addressed run ids, locally built inputs, verl command lines.

Run ids hash everything that determines the weights (stage config, recipe contents, seeds, model and
task specs) and the upstream checkpoint, but not operational knobs such as ``timeout_s``, so a rerun of
the same stage lands in the same run prefix and is skipped or resumed there.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, RunLayout, config_hash, run_id
from stable_verl.pipeline import cpu_env, stages, verl_command
from stable_verl.pipeline.evaluate import ensure_hf_model
from stable_verl.pipeline.params import RLFlowParams, SFTFlowParams
from stable_verl.pipeline.tracked import StageResult, VerlJob, run_tracked
from stable_verl.verl_ext import rollout_precision

_OPERATIONAL = ("timeout_s",)  # knobs that do not change the trained weights


def _identity(obj: Any) -> dict:
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in _OPERATIONAL}


def prepare_assets(workdir: Path, p: SFTFlowParams | RLFlowParams) -> stages.Assets:
    """Tokenizer, base model and task splits under ``workdir/assets/<hash>``, built once (marker written last).

    A file lock makes stages started side by side (the cold-start SFTs) build them once and wait for it."""
    spec = {"model": dataclasses.asdict(p.model), "task": dataclasses.asdict(p.task), "seed": p.seed}
    root = workdir / "assets" / config_hash(spec)
    marker = root / "assets.json"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f"{root.name}.lock"):
        if marker.exists():
            saved = json.loads(marker.read_text())
            return stages.Assets(Path(saved["model_dir"]), {k: Path(v) for k, v in saved["data"].items()})
        assets = stages.build_assets(root, p.model, p.task, p.seed)
        data = {k: str(v) for k, v in assets.data.items()}
        marker.write_text(json.dumps({"model_dir": str(assets.model_dir), "data": data, "spec": spec}, indent=1))
        return assets


def sft_run(store: ArtifactStore, p: SFTFlowParams) -> RunLayout:
    config = {"sft": _identity(p.sft), "sft_seed": p.sft_seed, "model": p.model, "task": p.task, "seed": p.seed}
    return RunLayout(store, run_id("sft", p.sft.teacher, config))


def rl_run(store: ArtifactStore, p: RLFlowParams, parent: str | None) -> RunLayout:
    config = {
        "rl": _identity(p.rl),
        "recipe": dataclasses.asdict(p.rl.recipe_config),
        "rl_seed": p.rl_seed,
        "model": p.model,
        "task": p.task,
        "seed": p.seed,
    }
    return RunLayout(store, run_id("rl", p.rl.recipe, config, upstream=[parent] if parent else []))


def init_checkpoint(store: ArtifactStore, init_run: str) -> tuple[RunLayout, int]:
    """The complete run ``init_run`` and its last checkpoint; ValueError if there is none to start from."""
    run = RunLayout(store, init_run)
    record = run.read_run()
    if record is None or record.get("status") != "complete":
        state = "does not exist" if record is None else f"is {record.get('status')!r}, not complete"
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
    local = workdir / "runs" / run.run_id / "checkpoints" / f"global_step_{step}"
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
    run = sft_run(store, p)
    assets = prepare_assets(workdir, p)
    data = assets.data
    train = stages.seeded_sft_file(data[f"sft_{p.sft.teacher}_train"], p.sft_seed, workdir / "runs" / run.run_id)
    job = VerlJob(
        kind="sft",
        name=p.sft.teacher,
        total_steps=p.sft.steps,
        argv=lambda ckpt_root: verl_command.sft_argv(
            p.sft, assets.model_dir, train, data[f"sft_{p.sft.teacher}_val"], ckpt_root, p.sft_seed
        ),
        env=cpu_env.verl_env(),
        timeout_s=p.sft.timeout_s,
        config=p.model_dump(mode="json", exclude={"store"}),
    )
    return run_tracked(run, job, workdir / "runs" / run.run_id, echo=echo, on_line=on_line)


def run_rl_stage(
    p: RLFlowParams, store: ArtifactStore, echo: Callable[[str], None] = print, on_line=None
) -> StageResult:
    """verl RL (the recipe, vLLM rollouts) from ``p.init_run``'s last checkpoint, tracked in ``store``."""
    workdir = Path(p.workdir).resolve()
    assets = prepare_assets(workdir, p)
    parent = None
    model_dir = assets.model_dir
    if p.init_run is not None:
        init, step = init_checkpoint(store, p.init_run)
        parent = init.checkpoint(step)
        model_dir = ensure_hf_model(fetch_checkpoint(init, step, workdir))
    run = rl_run(store, p, parent)
    env = {**cpu_env.verl_env(), rollout_precision.ENV: p.rl.rollout_precision}
    data = assets.data
    job = VerlJob(
        kind="rl",
        name=p.rl.recipe,
        total_steps=p.rl.total_steps,
        argv=lambda ckpt_root: verl_command.ppo_argv(
            verl_command.ppo_overrides(p.rl, model_dir, data["rl_train"], data["rl_val"], ckpt_root, p.rl_seed)
        ),
        env=env,
        timeout_s=p.rl.timeout_s,
        config=p.model_dump(mode="json", exclude={"store"}),
        parent_checkpoint=parent,
    )
    return run_tracked(run, job, workdir / "runs" / run.run_id, echo=echo, on_line=on_line)
