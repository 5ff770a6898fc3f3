"""``stable_sync``: verl's synchronous v1 trainer plus stability metrics on every step.

Registered through verl's own ``register_trainer`` and selected with ``trainer.v1.trainer_mode=stable_sync``:
* ``reward/<key>``: the reward function's extra keys (``acc``, ``format``), which verl 0.9.1 logs only
  for validation;
* ``actor/entropy_per_token``: the old policy's full-vocabulary entropy averaged over every valid response
  token of the step's batch. verl's own ``actor/entropy`` (kept) aggregates the same per-token entropies with
  the actor's ``loss_agg_mode``: under ``seq-mean-token-sum`` (MiniRL) it is per-token entropy x length, so it
  is neither comparable across recipes nor a measure of collapse;
* ``stability/collapse_warning``: 1.0 from the first step at which the per-token entropy has dropped and the
  train-inference KL has spiked together (``stable_verl.core.collapse``), else 0.0: an early *warning*, not a
  verdict (it also fires on healthy sharpening plus a noisy KL; the collapse verdict is an outcome, judged after the
  run by ``stable_verl.core.collapse_verdict``). Stores written before December 2026 logged it as
  ``stability/collapse``. It latches; its state is saved beside each checkpoint (``COLLAPSE_STATE``) and loaded on
  resume, so a restarted run keeps its latch and references;
* ``routing/*`` when the batch carries routes (``routing_engine``): ``mismatch_rate`` (vLLM vs the training
  router, old policy), ``mismatch_rate_replayed`` (vLLM vs the experts training used; 0 under R3),
  ``bytes_per_token`` (compact routes) and ``replay_r2`` / ``replay_r3``.

With the store settings in its environment (``store_sync``), it also uploads each checkpoint to the run's store
right after verl saves it (its own files here, each rank's shards from that rank's node, the step's metrics row
once verl has logged it, then the manifest, last) and, before verl loads a checkpoint, restores the store's latest
complete one onto the nodes that load it.

It also builds stable-verl's actor worker (``RoutingActorRolloutRefWorker``), which is verl's with routing replay
honoured for the FSDP engine, and, under ``loss_mode=cispo_group``, writes each response's group token count into
the batch (``cispo_loss``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch
import transfer_queue as tq
from omegaconf import open_dict
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.core.collapse import CollapseDetector
from stable_verl.core.metric_keys import COLLAPSE_WARNING, ENTROPY_PER_TOKEN, KL_K3_KEYS
from stable_verl.verl_ext import cispo_loss
from stable_verl.verl_ext import routing_engine as re_
from stable_verl.verl_ext.actor_worker import RoutingActorRolloutRefWorker
from stable_verl.verl_ext.store_sync import StepMetrics, StoreSync, node_run_dir, restored_line, to_row

logger = logging.getLogger(__name__)

TRAINER_NAME = "stable_sync"
#: How often the sync replay buffer checks whether the step's rollouts are all in (verl's default: 2 s). Every step
#: waits for its last rollout plus up to one interval: at 2 s that quantised ``timing_s/gen`` to 4, 6, 8 ... s on CPU.
#: ``+trainer.v1.sampler.poll_interval_s=<s>`` sets another (``bench_plugin_price`` runs ours at verl's 2 s).
REPLAY_POLL_S = 0.2
COLLAPSE_STATE = "stable_verl_collapse.json"  # in verl's global_step_N folder, beside data.pt


def reward_extra_metrics(extra_fields: list, padding: np.ndarray) -> dict[str, float]:
    """Mean of each numeric key of ``extra_fields[i]["reward_extra_info"]`` over non-padding rows; a boolean (a
    scorer's ``acc: True``, as verl's math scorers return) counts as 0/1, as evaluation counts it."""
    values: dict[str, list[float]] = {}
    for fields, is_padding in zip(extra_fields, padding, strict=True):
        info = fields.get("reward_extra_info", {}) if isinstance(fields, dict) and not is_padding else {}
        for key, value in info.items():
            if isinstance(value, (bool, int, float, np.number, np.bool_)):
                values.setdefault(key, []).append(float(value))
    return {f"reward/{key}": float(np.mean(v)) for key, v in values.items()}


def _padded(values: torch.Tensor) -> torch.Tensor:
    return torch.nested.to_padded_tensor(values, 0.0) if values.is_nested else values


def entropy_per_token(entropy: torch.Tensor, response_mask: torch.Tensor, padding: np.ndarray) -> dict[str, float]:
    """``{ENTROPY_PER_TOKEN: mean of H_t over the valid response tokens of the non-padding rows}`` (empty if none).

    entropy: (B, T) per-token full-vocabulary entropy of the old policy, padded or nested (as verl stores it);
    response_mask: (B, T) the same layout; padding: (B,) bool, verl's ``is_padding`` rows (synthetic, excluded).
    """
    ent, mask = _padded(entropy).double(), _padded(response_mask).bool()  # (B, T)
    mask = mask & torch.as_tensor(~np.asarray(padding, dtype=bool))[:, None]  # (B, T) real rows only
    count = int(mask.sum())
    if count == 0:
        return {}
    return {ENTROPY_PER_TOKEN: float(torch.where(mask, ent, torch.zeros_like(ent)).sum() / count)}


def collapse_metric(detector: CollapseDetector, metrics: dict) -> dict[str, float]:
    """Feed one step's per-token entropy and train-inference KL to the early warning; empty if either is missing."""
    kl = next((metrics[k] for k in KL_K3_KEYS if k in metrics), None)
    if ENTROPY_PER_TOKEN not in metrics or kl is None:
        return {}
    detector.update(float(metrics[ENTROPY_PER_TOKEN]), float(kl))
    return {COLLAPSE_WARNING: float(detector.collapsed)}


def save_collapse_state(detector: CollapseDetector, step_folder: str) -> str:
    """Write the detector's state into verl's ``global_step_N`` folder; returns the file's path."""
    os.makedirs(step_folder, exist_ok=True)
    path = os.path.join(step_folder, COLLAPSE_STATE)
    with open(path, "w") as f:
        json.dump(detector.state_dict(), f)
    return path


def load_collapse_state(detector: CollapseDetector, step_folder: str) -> bool:
    """Restore the detector from ``step_folder`` if that checkpoint has a state file; True when restored."""
    path = os.path.join(step_folder, COLLAPSE_STATE)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        detector.load_state_dict(json.load(f))
    return True


def resumed_step_folder(trainer_config, global_steps: int) -> str:
    """The ``global_step_N`` folder verl's ``_load_checkpoint`` resumed from (same resolution as verl's)."""
    if trainer_config.resume_mode == "resume_path":
        folder = trainer_config.resume_from_path
    else:  # "auto": verl's find_latest_ckpt_path -> default_local_dir/global_step_<latest>
        folder = os.path.join(trainer_config.default_local_dir, f"global_step_{global_steps}")
    return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


def routing_metrics(fields: dict, replay: str) -> dict[str, float]:
    """Step metrics from the per-token routing fields the old-log-prob pass wrote (nested tensors)."""
    out: dict[str, float] = {}
    for key, name in ((re_.MISMATCH, "mismatch_rate"), (re_.MISMATCH_REPLAYED, "mismatch_rate_replayed")):
        if key in fields:
            values = fields[key].values() if fields[key].is_nested else fields[key].flatten()
            valid = values[values >= 0]
            if valid.numel():
                out[f"routing/{name}"] = float(valid.mean())
                out["routing/routed_tokens"] = float(valid.numel())
    if re_.TRAIN_ROUTES in fields:
        routes = fields[re_.TRAIN_ROUTES]
        routes = routes.values() if routes.is_nested else routes
        out["routing/bytes_per_token"] = float(routes.shape[1] * routes.shape[2] * routes.element_size())
    if out:
        out["routing/replay_r2"] = float(replay == "R2")
        out["routing/replay_r3"] = float(replay == "R3")
    return out


class _LoggedTo:
    """verl's ``Tracking`` logger, calling ``after(data, step)`` once each ``log`` call has logged."""

    def __init__(self, tracking: Any, after: Callable[[dict, int], None]) -> None:
        self._tracking, self._after = tracking, after

    def log(self, data: dict, step: int, *args, **kwargs) -> None:
        self._tracking.log(data, step, *args, **kwargs)
        self._after(data, step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracking, name)


class StableTrainerSync(PPOTrainerSync):
    """verl's sync trainer with reward-function, per-token entropy, collapse and routing metrics on every step, and
    checkpoints and metrics in the run's store when its environment names one (see the module docstring)."""

    _logger: Any = None  # verl's Tracking, once fit() has made it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._collapse = CollapseDetector()
        self._sync = StoreSync.from_env()
        self._step_metrics = StepMetrics([], 0)
        self._pending: dict[int, tuple[list[dict], float]] = {}  # uploaded checkpoints waiting for their metrics
        if self._sync is not None:
            trainer = self.config.trainer
            with open_dict(self.config):
                trainer.default_local_dir = self._sync.checkpoint_root(trainer.default_local_dir)
            node_dir = node_run_dir(self._sync.run.run_id)
            if node_dir is not None:  # the flow's path for verl's file logger need not exist on this node
                name = os.path.basename(os.environ.get("VERL_FILE_LOGGER_PATH") or "metrics.jsonl")
                os.makedirs(node_dir, exist_ok=True)
                os.environ["VERL_FILE_LOGGER_PATH"] = os.path.join(node_dir, name)

    # verl's v1 trainer chooses its synchronous code paths (the bufferless replay buffer, whole-batch data loading,
    # no TransferQueue checkpoint) by ``trainer_mode == "sync"``. Registered as ``stable_sync``, this subclass of
    # its sync trainer would run the asynchronous ones, so it reports verl's own mode name.
    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, registered_name: str) -> None:  # verl assigns config.trainer.v1.trainer_mode here
        pass

    def _build_replay_buffer(self):
        buffer = super()._build_replay_buffer()
        buffer.poll_interval = float(self.config.trainer.v1.sampler.get("poll_interval_s", REPLAY_POLL_S))
        return buffer

    @property
    def logger(self) -> Any:
        return self._logger

    @logger.setter
    def logger(self, tracking: Any) -> None:  # verl's fit() sets it: each step's row goes to the store too
        self._logger = tracking if self._sync is None else _LoggedTo(tracking, self._logged)

    def _logged(self, data: dict, step: int) -> None:
        """After verl logged ``step``: its row joins the run's metrics; an uploaded checkpoint of it gets its
        metrics, then its manifest."""
        self._step_metrics.add(to_row(step, data))
        if step in self._pending:
            entries, upload_s = self._pending.pop(step)
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{step}")
            manifest = self._sync.finish(step, entries, self._step_metrics.rows(), upload_s, folder)
            logger.info(
                "checkpoint %d in %s: %d files, %d bytes, %.1f s",
                step,
                self._sync.run.uri(self._sync.run.checkpoint(step)),
                len(manifest.files),
                manifest.total_size,
                manifest.metadata["upload_s"],
            )

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        for role in list(self.role_worker_mapping):  # verl maps these roles to ray.remote(ActorRolloutRefWorker)
            if role in (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor, Role.RefPolicy):
                self.role_worker_mapping[role] = ray.remote(RoutingActorRolloutRefWorker)

    def _routing_enabled(self) -> tuple[bool, str]:
        actor_rollout = self.config.actor_rollout_ref
        replay = re_.replay_mode(actor_rollout.actor.get("fsdp_config", {}))
        routes = bool(actor_rollout.rollout.get("enable_rollout_routing_replay", False))
        return replay != "disabled" or routes, replay

    def _compute_old_log_prob(self, batch, metrics: dict):
        batch = super()._compute_old_log_prob(batch, metrics)
        enabled, replay = self._routing_enabled()
        if enabled:
            keys = [re_.TRAIN_ROUTES, re_.MISMATCH, re_.MISMATCH_REPLAYED]
            try:
                fields = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=keys)
            except ValueError:  # no vLLM routes: only the training routes exist
                fields = tq.kv_batch_get(
                    keys=batch.keys, partition_id=batch.partition_id, select_fields=[re_.TRAIN_ROUTES]
                )
            with torch.no_grad():
                metrics.update(routing_metrics(dict(fields.items()), replay))
        return batch

    def _compute_advantage(self, batch, metrics: dict):
        batch = super()._compute_advantage(batch, metrics)
        if self.config.actor_rollout_ref.actor.policy_loss.get("loss_mode") == cispo_loss.LOSS_MODE:
            data = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "response_mask"]
            )
            fields = cispo_loss.group_tokens_batch(data)
            batch = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        return batch

    def step(self, metrics: dict, timing_raw: dict):
        # Per-token entropy and the collapse warning here, not in _compute_metrics: verl saves the step's checkpoint
        # between the two, and the detector state saved with it must include this step.
        batch = super().step(metrics, timing_raw)
        rollout_corr = self.config.algorithm.get("rollout_correction", None)
        if not (rollout_corr and rollout_corr.get("bypass_mode", False)):  # bypass: verl computes no entropy
            data = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["entropy", "response_mask"]
            )
            padding = np.array([tag.get("is_padding", False) for tag in batch.tags], dtype=bool)
            metrics.update(entropy_per_token(data["entropy"], data["response_mask"], padding))
        metrics.update(collapse_metric(self._collapse, metrics))
        return batch

    def _save_checkpoint(self):
        # Written before verl's own files, so it is in the folder before verl marks the checkpoint complete.
        step = self.global_steps
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{step}")
        save_collapse_state(self._collapse, folder)
        if self._sync is not None:
            self._sync.begin(step)
        super()._save_checkpoint()
        if self._sync is not None:
            start = time.monotonic()
            ranks = self.actor_rollout_wg.upload_checkpoint_files(os.path.join(folder, "actor"), step)  # refs
            entries = self._sync.upload_driver_files(step, folder)  # while the ranks upload theirs
            for rank_entries in ray.get(ranks):
                entries += rank_entries
            self._pending[step] = (entries, time.monotonic() - start)

    def _load_checkpoint(self):
        if self._sync is not None and self.config.trainer.resume_mode == "auto":
            if self.use_critic or self.config.actor_rollout_ref.actor.get("checkpoint", {}).get("async_save", False):
                raise ValueError("stable-verl's store sync uploads actor checkpoints saved synchronously only")
            start = time.monotonic()
            step, previous = self._sync.restore(
                self.config.trainer.default_local_dir, self.actor_rollout_wg.restore_checkpoint_files
            )
            self._step_metrics = StepMetrics(previous, step)
            if step:
                print(restored_line(step, time.monotonic() - start), flush=True)
        super()._load_checkpoint()
        if self.global_steps > 0:  # resumed from a checkpoint
            folder = resumed_step_folder(self.config.trainer, self.global_steps)
            if not load_collapse_state(self._collapse, folder):
                logger.warning("no %s in %s: the collapse detector starts afresh", COLLAPSE_STATE, folder)

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        padding = np.array([tag.get("is_padding", False) for tag in batch.tags], dtype=bool)
        metrics.update(reward_extra_metrics(data.pop("extra_fields").tolist(), padding))


def register() -> None:
    if TRAINER_REGISTRY.get(TRAINER_NAME) is not StableTrainerSync:
        register_trainer(TRAINER_NAME)(StableTrainerSync)
