"""Typed configs of the two verl stages (SFT, RL), validated before anything starts.

The flows' parameters (:mod:`.params`) hold them; each dataclass's ``__post_init__`` checks the values, so bad
input never reaches Ray or vLLM.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from stable_verl.config.recipes import Recipe, load_recipe
from stable_verl.core.options import PRECISIONS
from stable_verl.launch import tracking
from stable_verl.launch.stall import DEFAULT_STALL_S


@dataclass
class SFTStage:
    """verl SFT (``verl.trainer.sft_trainer``) of the tiny model on one teacher's solutions."""

    teacher: str = "stepwise"
    """SFT data: a teacher style of the built-in task (stable_verl.tasks.teachers) or an init of your ``task.sft``
    (checked by the flow's parameters, which know the task)."""
    steps: int = 40
    """Optimizer steps."""
    batch_size: int = 16
    """Global batch size (conversations)."""
    micro_batch_size: int = 8
    """Per-device micro batch."""
    lr: float = 1e-3
    """AdamW learning rate (tiny models from scratch take large steps)."""
    lr_schedule: str = "cosine"
    """verl's lr_scheduler_type after the 10% warm-up: 'cosine' (decays to 0; on the tiny MoE, 600 steps reach
    avg@8 0.15 where a constant lr reaches 0.06) or 'constant'."""
    max_length: int = 128
    """Longest conversation in tokens."""
    nnodes: int = 1
    """Nodes of the SFT run; verl's ``sft_trainer`` under ``torchrun --standalone`` runs on one."""
    n_gpus_per_node: int = 1
    """Trainer processes (GPUs) on that node: ``torchrun --nproc_per_node``."""
    save_freq: int = -1
    """Also save a resumable checkpoint every N steps (-1: at the last step only). A killed or crashed SFT resumes
    from the latest one in the store when its stage is rerun. Not part of the run id: it changes no weights."""
    stall_s: int = DEFAULT_STALL_S
    """verl is killed and the stage fails when for this long it reaches no new step, prints no new line and its
    processes use no CPU (stable_verl/launch/stall.py)."""
    timeout_s: int | None = None
    """Optional total wall-clock limit (None: none; a slow machine is not a hung run)."""
    overrides: list[str] = field(default_factory=list)
    """Extra raw Hydra overrides for verl.trainer.sft_trainer, applied last (as ``rl.overrides`` for main_ppo)."""

    def __post_init__(self) -> None:
        if self.save_freq == 0 or self.save_freq < -1:
            raise ValueError(f"sft.save_freq must be > 0, or -1 (the last step only), got {self.save_freq}")
        _positive(self, "steps", "batch_size", "micro_batch_size", "max_length", "stall_s", "n_gpus_per_node")
        _positive_or_none(self, "timeout_s")
        if self.nnodes != 1:
            raise ValueError(f"sft.nnodes must be 1 (torchrun --standalone runs on one node), got {self.nnodes}")
        _learning_rate("SFTStage", self.lr, allow_zero=False)
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"sft.batch_size {self.batch_size} must be a multiple of micro_batch_size")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"sft.lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")


@dataclass
class Logging:
    """Experiment trackers verl's SFT and RL trainers also log to, beside the console and file loggers the pipeline
    reads. Operational: never part of a run id. Credentials come from the environment (docs/how-to/loggers.md)."""

    backends: list[str] = field(default_factory=list)
    """Added to verl's ``trainer.logger=[console,file]``: wandb, mlflow, tensorboard, swanlab, clearml, trackio."""
    project: str = "stable-verl"
    """verl's ``trainer.project_name``: the W&B project, MLflow experiment, TensorBoard folder."""

    def __post_init__(self) -> None:
        bad = [b for b in self.backends if b not in tracking.BACKENDS]
        if bad:
            always = " (console and file are always on)" if set(bad) & set(tracking.ALWAYS) else ""
            raise ValueError(f"logging.backends: no tracker {bad}{always}; choose from {', '.join(tracking.BACKENDS)}")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"logging.backends must be distinct, got {self.backends}")
        if not self.project or any(c in self.project for c in "/\\ ,[]=:"):
            raise ValueError(f"logging.project must be a plain name (no '/', spaces, commas), got {self.project!r}")


@dataclass
class RLStage:
    """verl ``main_ppo`` with the vLLM rollout."""

    recipe: str = "grpo"
    """RL objective: a file stem of configs/recipes/ (minirl, minirl_no_is, grpo, cispo, ...)."""
    recipe_overrides: list[str] = field(default_factory=list)
    """``key=value`` overrides of the recipe, e.g. ``[minibatches=4, minirl.truncation=decoupled]``."""
    total_steps: int = 3
    """Training steps (rollout batches)."""
    train_batch_size: int = 8
    """Prompts per rollout batch; split into the recipe's N mini-batches (one optimizer step each)."""
    rollout_n: int = 4
    """Responses per prompt (the group size G)."""
    micro_batch_size: int = 16
    """Responses per forward/backward micro batch."""
    lr: float = 1e-4
    """Actor learning rate."""
    max_prompt_length: int = 48
    """Prompt budget in tokens."""
    max_response_length: int = 48
    """Response budget in tokens."""
    temperature: float = 1.0
    """Rollout sampling temperature."""
    rollout_dtype: str = "float32"
    """vLLM weights/activations dtype (mu_old's numerics)."""
    train_dtype: str = "float32"
    """FSDP compute dtype of the actor (pi_old/pi_theta's numerics); bf16 vs fp32 is a real train-infer gap."""
    rollout_precision: str = "native"
    """Stress knob: round the weights vLLM samples with through 'bf16', 'fp8' (e4m3, per channel) or 'int4'
    (symmetric per row, amax/7) on every load and sync, a real and adjustable train-inference gap (paper: FP8
    inference vs BF16 training; int4 when fp8's gap is too small to stress a tiny model)."""
    format_bonus: float = 0.0
    """Partial credit for a well-formed answer (reward shaping; 0 = exact-match 1/0 only)."""
    save_freq: int = -1
    """Checkpoint every N steps and at the last step (-1: never)."""
    nnodes: int = 1
    """Nodes verl places its workers on (``trainer.nnodes``); more than 1 needs ``launcher.kind=ray_job``."""
    n_gpus_per_node: int = 1
    """GPUs per node verl uses (``trainer.n_gpus_per_node``); on CPU, logical GPUs of the Ray nodes."""
    stall_s: int = DEFAULT_STALL_S
    """verl is killed and the stage fails when for this long it reaches no new step, prints no new line and its
    processes use no CPU (stable_verl/launch/stall.py)."""
    timeout_s: int | None = None
    """Optional total wall-clock limit (None: none; a slow machine is not a hung run)."""
    overrides: list[str] = field(default_factory=list)
    """Extra raw Hydra overrides for main_ppo, applied last."""

    def __post_init__(self) -> None:
        _positive(self, "total_steps", "train_batch_size", "rollout_n", "micro_batch_size")
        _learning_rate("RLStage", self.lr, allow_zero=True)  # lr 0: the no-update control of a calibration
        _positive(self, "max_prompt_length", "max_response_length", "stall_s", "nnodes", "n_gpus_per_node")
        _positive_or_none(self, "timeout_s")
        n = self.recipe_config.minibatches
        if self.train_batch_size % n:
            raise ValueError(
                f"rl.train_batch_size {self.train_batch_size} must be a multiple of the recipe's "
                f"minibatches ({n}, recipe {self.recipe!r})"
            )
        per_update = self.train_batch_size // n * self.rollout_n  # responses per mini-batch
        if per_update % self.micro_batch_size:
            raise ValueError(
                f"rl.micro_batch_size {self.micro_batch_size} must divide the {per_update} responses of a mini-batch "
                f"(train_batch_size {self.train_batch_size} / minibatches {n} x rollout_n {self.rollout_n})"
            )
        if self.rollout_precision not in PRECISIONS:
            raise ValueError(f"rl.rollout_precision must be one of {PRECISIONS}, got {self.rollout_precision!r}")
        for name in ("rollout_dtype", "train_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"rl.{name} must be float32, bfloat16 or float16, got {getattr(self, name)!r}")
        _check_sampling_filters(self)

    @functools.cached_property
    def recipe_config(self) -> Recipe:
        """The named recipe with its overrides, loaded and validated once per stage config."""
        return load_recipe(self.recipe, self.recipe_overrides)

    @property
    def ppo_mini_batch_size(self) -> int:
        """Prompts per optimizer step: train_batch_size / N."""
        return self.train_batch_size // self.recipe_config.minibatches


# vLLM sampling filters (verl's rollout keys, settable through rl.overrides) and their neutral values.
_FILTERS = {"top_p": lambda v: v >= 1, "top_k": lambda v: v <= 0, "min_p": lambda v: v <= 0}


def _check_sampling_filters(rl: RLStage) -> None:
    """Refuse top_p / top_k / min_p filters with a recipe that IS-corrects by vLLM's log-probs (MiniRL's
    train-infer IS): vLLM returns the log-probs of the unfiltered distribution while it samples from the filtered
    one, and the trainer recomputes pi_old unfiltered, so mu_old is not the sampling policy and the IS ratio
    pi_old/mu_old is biased on every filtered step."""
    recipe = rl.recipe_config
    if recipe.loss_mode != "minirl" or not recipe.minirl.train_infer_is:
        return
    for override in rl.overrides:
        key, _, value = override.lstrip("+~").partition("=")
        name = key.removeprefix("actor_rollout_ref.rollout.")
        if name in _FILTERS and key != name:
            try:
                neutral = _FILTERS[name](float(value))
            except ValueError:
                continue  # not a number: verl reports it
            if not neutral:
                raise ValueError(
                    f"rl.overrides sets {name}={value} with recipe {rl.recipe!r}, which corrects the train-inference "
                    "gap by vLLM's log-probs: those are of the unfiltered distribution, so the IS ratio would be "
                    f"biased; drop the {name} override or use a recipe without train-infer IS (e.g. minirl_no_is)"
                )


def _learning_rate(owner: str, lr: float, allow_zero: bool) -> None:
    if not (math.isfinite(lr) and (lr >= 0 if allow_zero else lr > 0)):
        raise ValueError(f"{owner}.lr must be {'>= 0' if allow_zero else '> 0'} and finite, got {lr}")


def _positive_or_none(obj: object, *names: str) -> None:
    _positive(obj, *(n for n in names if getattr(obj, n) is not None))


def _positive(obj: object, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {getattr(obj, name)}")
