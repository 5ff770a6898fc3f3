"""configs/gpu/: the GPU starting points plan to verl commands whose Hydra config verl's own schema accepts.

Nothing here runs on a GPU. Each config is planned as ``stable-verl plan coldstart`` plans it (Ray Jobs on a GPU
cluster, driven from this machine without one); verl's ``ppo_trainer`` / ``sft_trainer_engine`` configs are composed
from each stage's exact arguments with verl's config module, then checked as verl checks them before it starts:
``validate_config`` for main_ppo, the engine/optimizer/checkpoint dataclasses for sft_trainer.

The configs name the user's model and data (``model.path``, ``task.sft`` / ``rl_train`` / ``benchmarks``). Until those
parameters exist, the settings are checked with the built-in tiny model and task standing in for them, and the
config-as-written test skips, naming what is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from stable_verl.pipeline.params import ColdstartParams
from stable_verl.pipeline.plan import PlannedStage, plan_coldstart
from stable_verl.pipeline.yaml_config import load_yaml

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "gpu").glob("*.yaml"))
USER_INPUTS = ("model", "task", "teachers")  # the user's model and data (HFModel, TaskData: issue 25 points 1-2)
VERL_CONFIG = {"verl.trainer.main_ppo": "ppo_trainer", "verl.trainer.sft_trainer": "sft_trainer_engine"}


@pytest.fixture(autouse=True)
def _node_dir(monkeypatch, tmp_path):
    """The nodes' scratch folder, which the stages' node paths interpolate (``${oc.env:STABLE_VERL_NODE_DIR}``)."""
    monkeypatch.setenv("STABLE_VERL_NODE_DIR", str(tmp_path / "node"))


def _cluster(tmp_path: Path) -> list[str]:
    return ["launcher.ray_address=http://head:8265", f"store.root={tmp_path / 'store'}", f"workdir={tmp_path / 'w'}"]


def _verl_config(stage: PlannedStage) -> tuple[str, DictConfig]:
    """verl's Hydra config composed from the stage's command line: the verl module after its ``-m``, its overrides."""
    from hydra import compose, initialize_config_module

    at = next(i for i, a in enumerate(stage.argv) if a == "-m" and stage.argv[i + 1] in VERL_CONFIG)
    module, overrides = stage.argv[at + 1], stage.argv[at + 2 :]
    with initialize_config_module("verl.trainer.config", version_base=None):
        return module, compose(VERL_CONFIG[module], overrides=overrides)


def _check_against_verl(p: ColdstartParams) -> None:
    """The first SFT and RL stage of the plan (the others differ only in data and seed) pass verl's own checks."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    stages = plan_coldstart(p)
    assert [s.kind for s in stages] == ["sft", "rl"] * len(p.teachers) * len(p.seeds)
    assert all(s.argv[:3] == ["ray", "job", "submit"] for s in stages)  # Ray Jobs on the cluster
    sft_module, sft = _verl_config(stages[0])
    rl_module, rl = _verl_config(stages[1])
    assert (sft_module, rl_module) == ("verl.trainer.sft_trainer", "verl.trainer.main_ppo")

    validate_config(rl, use_reference_policy=need_reference_policy(rl), use_critic=need_critic(rl))  # as main_ppo
    rollout = omega_conf_to_dataclass(rl.actor_rollout_ref.rollout)
    for section in (sft.engine, sft.optim, sft.checkpoint, sft.profiler):  # as SFTTrainer.__init__
        omega_conf_to_dataclass(section)

    # What the GPU path relies on, as verl will read it (no CPU setting leaked in: the nodes have GPUs).
    assert rl.trainer.device == "cuda" and sft.trainer.device == "cuda" and rl.ray_kwargs.ray_init.num_cpus is None
    assert (rl.trainer.nnodes, rl.trainer.n_gpus_per_node) == (p.rl.nnodes, p.rl.n_gpus_per_node)
    assert sft.trainer.n_gpus_per_node == p.sft.n_gpus_per_node and sft.engine.strategy == "fsdp"
    assert rollout.dtype == "bfloat16" and rl.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "bf16"
    assert (p.rl.n_gpus_per_node * p.rl.nnodes) % rollout.tensor_model_parallel_size == 0
    assert rollout.tensor_model_parallel_size > 1 and rl.actor_rollout_ref.actor.strategy == "fsdp2"
    assert rl.actor_rollout_ref.actor.fsdp_config.router_replay.mode == p.rl.recipe_config.routing_replay != "disabled"
    assert rollout.enable_rollout_routing_replay  # vLLM returns its routes (R3's input; R2's mismatch metric)
    assert rl.actor_rollout_ref.actor.use_dynamic_bsz
    longest = rl.data.max_prompt_length + rl.data.max_response_length
    assert rl.actor_rollout_ref.actor.ppo_max_token_len_per_gpu >= longest  # one whole sequence fits a micro batch
    assert rl.actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu >= longest
    assert rl.data.filter_overlong_prompts  # else one long prompt ends the run (truncation: error)
    loggers = ["console", "file", *p.logging.backends]
    assert list(rl.trainer.logger) == loggers and list(sft.trainer.logger) == loggers


@pytest.mark.parametrize("path", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_gpu_settings_compose_against_verls_schema(path, tmp_path):
    """The config's settings with the built-in model and task standing in for the user's model and data."""
    raw = load_yaml(str(path), _cluster(tmp_path))
    assert set(USER_INPUTS) <= set(raw), f"{path.name} names the user's model and data"
    raw = {k: v for k, v in raw.items() if k not in USER_INPUTS}
    raw["eval"] = {k: v for k, v in raw["eval"].items() if k != "benchmarks"}  # the user's benchmark names
    p = ColdstartParams.model_validate({**raw, "model": {"kind": "moe"}})  # built-in teachers, task, benchmarks
    _check_against_verl(p)


@pytest.mark.parametrize("path", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_gpu_config_as_written_plans_and_composes(path, tmp_path):
    try:
        p = ColdstartParams.from_config(str(path), _cluster(tmp_path))
    except ValueError as e:
        if any(f" at {key}" in str(e) for key in USER_INPUTS):
            pytest.skip(
                f"{path.name}: the user's model and data parameters (model.path, task data) are not here yet: {e}"
            )
        raise
    _check_against_verl(p)


def test_there_are_the_two_gpu_starting_points():
    assert {c.stem for c in CONFIGS} == {"qwen3_30b_a3b", "olmoe_1b_7b"}
