"""``stable_sync``: verl's synchronous v1 trainer plus stability metrics on every step.

Registered through verl's own ``register_trainer`` and selected with ``trainer.v1.trainer_mode=stable_sync``:
* ``reward/<key>``: the reward function's extra keys (``acc``, ``format``), which verl 0.9.1 logs only
  for validation;
* ``stability/collapse``: 1.0 from the first step at which entropy has dropped and the train-inference
  KL has spiked together (``stable_verl.core.collapse``), else 0.0. It latches, so a plot or a query
  over ``metrics.jsonl`` shows when a run collapsed;
* ``routing/*`` when the batch carries routes (``routing_engine``): ``mismatch_rate`` (vLLM vs the training
  router, old policy), ``mismatch_rate_replayed`` (vLLM vs the experts training used; 0 under R3),
  ``bytes_per_token`` (compact routes) and ``replay_r2`` / ``replay_r3``.

It also builds stable-verl's actor worker (``RoutingActorRolloutRefWorker``), which is verl's with routing replay
honoured for the FSDP engine.
"""

from __future__ import annotations

import numpy as np
import ray
import torch
import transfer_queue as tq
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.core.collapse import CollapseDetector
from stable_verl.verl_ext import routing_engine as re_

TRAINER_NAME = "stable_sync"
# Train-inference KL, first key present: MiniRL's own estimator, else verl's rollout-correction one.
KL_KEYS = ("actor/train_infer_kl_k3", "rollout_corr/k3_kl")


def reward_extra_metrics(extra_fields: list, padding: np.ndarray) -> dict[str, float]:
    """Mean of each numeric key of ``extra_fields[i]["reward_extra_info"]`` over non-padding rows."""
    values: dict[str, list[float]] = {}
    for fields, is_padding in zip(extra_fields, padding, strict=True):
        info = fields.get("reward_extra_info", {}) if isinstance(fields, dict) and not is_padding else {}
        for key, value in info.items():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                values.setdefault(key, []).append(float(value))
    return {f"reward/{key}": float(np.mean(v)) for key, v in values.items()}


def collapse_metric(detector: CollapseDetector, metrics: dict) -> dict[str, float]:
    """Feed one step's entropy and train-inference KL to the detector; empty if either is missing."""
    kl = next((metrics[k] for k in KL_KEYS if k in metrics), None)
    if "actor/entropy" not in metrics or kl is None:
        return {}
    detector.update(float(metrics["actor/entropy"]), float(kl))
    return {"stability/collapse": float(detector.collapsed)}


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


class StableTrainerSync(PPOTrainerSync):
    """verl's sync trainer with reward-function, collapse and routing metrics on every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._collapse = CollapseDetector()

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        for role in list(self.role_worker_mapping):  # verl maps these roles to ray.remote(ActorRolloutRefWorker)
            if role in (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor, Role.RefPolicy):
                self.role_worker_mapping[role] = ray.remote(re_.RoutingActorRolloutRefWorker)

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

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        padding = np.array([tag.get("is_padding", False) for tag in batch.tags], dtype=bool)
        metrics.update(reward_extra_metrics(data.pop("extra_fields").tolist(), padding))
        metrics.update(collapse_metric(self._collapse, metrics))


def register() -> None:
    if TRAINER_REGISTRY.get(TRAINER_NAME) is not StableTrainerSync:
        register_trainer(TRAINER_NAME)(StableTrainerSync)
