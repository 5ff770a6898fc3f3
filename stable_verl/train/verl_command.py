"""Compile stage configs into the exact verl command lines (``torchrun ... sft_trainer``, ``main_ppo``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import PurePath

from stable_verl.config import cpu_env
from stable_verl.config.stages import Logging, RLStage, SFTStage
from stable_verl.env import CHAT_TEMPLATE
from stable_verl.launch import tracking
from stable_verl.models.hf import HFModel
from stable_verl.models.spec import TinyModelSpec
from stable_verl.tasks.reward_fn import RewardFn, builtin_reward, reward_overrides

# verl's SFT dataset, tokenized once per conversation (stable_verl/verl_ext/sft_dataset.py): our SFT sets are small
# and visited many times, and re-tokenizing them was 11% of a CPU SFT step. Named, not imported: it imports verl.
SFT_DATASET = ("pkg://stable_verl.verl_ext.sft_dataset", "CachedMultiTurnSFTDataset")
CHAT_TEMPLATE_ENV = CHAT_TEMPLATE.name


def sft_argv(
    sft: SFTStage,
    model_path: PurePath,
    train_file: PurePath,
    val_file: PurePath,
    out_dir: PurePath,
    seed: int = 0,
    cpu: bool | None = None,
    log: Logging | None = None,
    model_args: Sequence[str] = (),
) -> list[str]:
    """``torchrun -m verl.trainer.sft_trainer`` on ``sft.n_gpus_per_node`` processes, saving HF weights at the end.

    ``cpu``: where it runs has no GPU, so the CPU settings apply (None: as this machine). ``log``: the trackers
    verl logs to beside console and file (default: none), and their project. The paths are this
    machine's files (a local run) or node paths (a Ray Job: ``node_inputs``). ``model_args``: the user model's
    settings (:func:`model_overrides` with ``model``). ``sft.overrides`` come last."""
    overrides = [
        f"model.path={model_path}",
        f"data.train_files={train_file}",
        f"data.val_files={val_file}",
        f"data.train_batch_size={sft.batch_size}",
        f"data.micro_batch_size_per_gpu={sft.micro_batch_size}",
        f"data.max_length={sft.max_length}",
        f"data.max_token_len_per_gpu={sft.max_length * sft.micro_batch_size}",
        f"optim.lr={sft.lr}",
        "optim.lr_warmup_steps_ratio=0.1",
        f"optim.lr_scheduler_type={sft.lr_schedule}",
        "checkpoint.save_contents=[model,optimizer,extra,hf_model]",
        f"trainer.total_training_steps={sft.steps}",
        "trainer.total_epochs=1000",
        f"trainer.default_local_dir={out_dir}",
        *logger_overrides(log, out_dir),
        f"trainer.n_gpus_per_node={sft.n_gpus_per_node}",
        "trainer.nnodes=1",
        f"trainer.seed={seed}",
        f"trainer.save_freq={sft.save_freq}",
        "trainer.test_freq=-1",
        f"data.custom_cls.path={SFT_DATASET[0]}",
        f"data.custom_cls.name={SFT_DATASET[1]}",
        *model_args,
    ]
    if cpu_env.on_cpu() if cpu is None else cpu:
        overrides += cpu_env.sft_cpu_overrides()
    overrides += sft.overrides
    nproc = f"--nproc_per_node={sft.n_gpus_per_node}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", nproc]
    return [*launcher, "-m", "verl.trainer.sft_trainer", *overrides]


def logger_overrides(log: Logging | None, out_dir: PurePath) -> list[str]:
    """verl's loggers (console and file, which the pipeline reads, plus ``log.backends``), the project and the
    experiment: the run id. The file logger writes ``$VERL_FILE_LOGGER_PATH`` (set per attempt by the lifecycle)."""
    log = log or Logging()
    return [
        tracking.logger_override(log.backends),
        f"trainer.project_name={log.project}",
        f"trainer.experiment_name={out_dir.parent.name}",
    ]


def model_overrides(model: TinyModelSpec | HFModel, key: str) -> list[str]:
    """verl's settings for a user's model under the config node ``key`` (``model`` in SFT,
    ``actor_rollout_ref.model`` in RL); none for the tiny model. The chat template travels in the environment
    (:func:`model_env`), which OmegaConf reads where verl resolves its config: Jinja text is no Hydra value."""
    if not isinstance(model, HFModel):
        return []
    out = [f"{key}.trust_remote_code=True"] if model.trust_remote_code else []
    if model.chat_template is not None:
        out.append(f"{key}.custom_chat_template=${{oc.env:{CHAT_TEMPLATE_ENV}}}")
    return out


def ppo_model_overrides(model: TinyModelSpec | HFModel) -> list[str]:
    """:func:`model_overrides` of main_ppo's actor/rollout/ref model, and its RL dataset's tokenizer."""
    trust = ["data.trust_remote_code=True"] if isinstance(model, HFModel) and model.trust_remote_code else []
    return [*model_overrides(model, "actor_rollout_ref.model"), *trust]


def model_env(model: TinyModelSpec | HFModel) -> dict[str, str]:
    """The environment :func:`model_overrides` refers to: the chat template's text, if one is given."""
    template = model.chat_template_text() if isinstance(model, HFModel) else None
    return {CHAT_TEMPLATE_ENV: template} if template is not None else {}


def ppo_overrides(
    rl: RLStage,
    model_path: PurePath,
    train_file: PurePath,
    val_file: PurePath,
    out_dir: PurePath,
    seed: int | None = None,
    cluster: bool = False,
    cpu: bool | None = None,
    log: Logging | None = None,
    model_args: Sequence[str] = (),
    reward: RewardFn | None = None,
    reward_file: PurePath | None = None,
) -> list[str]:
    """Every Hydra override of one RL stage (CPU settings included when there is no GPU).

    ``reward``: the task's reward (:mod:`.reward_fn`); None: the built-in task's, with ``rl.format_bonus``.
    ``reward_file``: where the job's processes find a reward file (a cluster node's copy); None: this machine's.

    ``seed`` (if given) seeds the data order and vLLM's sampling; ``rl.overrides`` still come last. ``cluster``:
    verl joins an existing Ray cluster (a Ray Job), so it starts no Ray of its own and asks for no resources.
    ``cpu``: where it runs has no GPU (None: as this machine). ``log``: trackers beside console and file.
    ``model_args``: the user model's settings (:func:`model_overrides` with ``actor_rollout_ref.model``).
    A bf16 rollout on a CPU without native bf16 runs in fp32 (:func:`~.config.cpu_env.rollout_numerics`; the job's
    environment rounds its weights to bf16).
    """
    rollout_dtype, _ = cpu_env.rollout_numerics(rl.rollout_dtype, rl.rollout_precision, cpu)
    overrides = [
        *rl.recipe_config.overrides(),
        "algorithm.use_kl_in_reward=False",
        f"data.train_files={train_file}",
        f"data.val_files={val_file}",
        f"data.train_batch_size={rl.train_batch_size}",
        f"data.max_prompt_length={rl.max_prompt_length}",
        f"data.max_response_length={rl.max_response_length}",
        f"actor_rollout_ref.model.path={model_path}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={rl.ppo_mini_batch_size}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={rl.micro_batch_size}",
        f"actor_rollout_ref.actor.optim.lr={rl.lr}",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.entropy_coeff=0",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={rl.rollout_n}",
        f"actor_rollout_ref.rollout.temperature={rl.temperature}",
        f"actor_rollout_ref.rollout.dtype={rollout_dtype}",
        *train_precision_overrides(rl.train_dtype),
        "actor_rollout_ref.rollout.calculate_log_probs=True",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={rl.micro_batch_size}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={rl.micro_batch_size}",
        *reward_overrides(reward or builtin_reward(rl.format_bonus), reward_file),
        "reward.num_workers=1",
        "trainer.v1.trainer_mode=stable_sync",  # verl's sync trainer + reward/acc, reward/format per step
        f"trainer.n_gpus_per_node={rl.n_gpus_per_node}",
        f"trainer.nnodes={rl.nnodes}",
        "trainer.total_epochs=1000",
        f"trainer.total_training_steps={rl.total_steps}",
        f"trainer.save_freq={rl.save_freq}",
        "trainer.test_freq=-1",
        "trainer.val_before_train=False",
        "trainer.resume_mode=auto",
        f"trainer.default_local_dir={out_dir}",
        *logger_overrides(log, out_dir),
        *model_args,
    ]
    if seed is not None:
        overrides += [f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}"]
    if cluster:
        overrides += cluster_overrides()
    if cpu_env.on_cpu() if cpu is None else cpu:
        overrides += cpu_env.ppo_cpu_overrides(num_gpus=rl.n_gpus_per_node * rl.nnodes, cluster=cluster)
    return overrides + list(rl.overrides)


def cluster_overrides() -> list[str]:
    """What verl needs on an existing Ray cluster whose head declares no CPUs (KubeRay's advice, our test cluster).

    TransferQueue pins its storage units to alive nodes in node-id order with a hard node affinity, the head
    included; on a head without CPUs they never start and the run fails (ActorUnschedulableError), depending on
    how the node ids happen to sort. Its ``required_node_resource`` limits them to the nodes with GPUs (logical
    ones on CPU nodes), where verl's workers run anyway.
    """
    return ["+transfer_queue.backend.SimpleStorage.required_node_resource=GPU"]


_SHORT_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def train_precision_overrides(dtype: str) -> list[str]:
    """FSDP compute dtype of actor and ref. Without ``mixed_precision`` verl's FSDP engine autocasts to bf16."""
    policy = f"{{param_dtype:{_SHORT_DTYPE[dtype]},reduce_dtype:fp32,buffer_dtype:fp32}}"
    overrides = []
    for role in ("actor", "ref"):
        overrides += [
            f"+actor_rollout_ref.{role}.fsdp_config.mixed_precision={policy}",
            f"actor_rollout_ref.{role}.fsdp_config.dtype={dtype}",
        ]
    return overrides


def ppo_argv(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "verl.trainer.main_ppo", *overrides]
