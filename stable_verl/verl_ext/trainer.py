"""``stable_sync``: verl's synchronous v1 trainer plus stability metrics on every step.

Registered through verl's own ``register_trainer`` and selected with ``trainer.v1.trainer_mode=stable_sync``:
* ``reward/<key>``: the reward function's extra keys (``acc``, ``format``), which verl 0.9.1 logs only
  for validation;
* ``stability/collapse``: 1.0 from the first step at which entropy has dropped and the train-inference
  KL has spiked together (``stable_verl.core.collapse``), else 0.0. It latches, so a plot or a query
  over ``metrics.jsonl`` shows when a run collapsed.
"""

from __future__ import annotations

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.core.collapse import CollapseDetector

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


class StableTrainerSync(PPOTrainerSync):
    """verl's sync trainer with reward-function metrics and a collapse flag on every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._collapse = CollapseDetector()

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        padding = np.array([tag.get("is_padding", False) for tag in batch.tags], dtype=bool)
        metrics.update(reward_extra_metrics(data.pop("extra_fields").tolist(), padding))
        metrics.update(collapse_metric(self._collapse, metrics))


def register() -> None:
    if TRAINER_REGISTRY.get(TRAINER_NAME) is not StableTrainerSync:
        register_trainer(TRAINER_NAME)(StableTrainerSync)
