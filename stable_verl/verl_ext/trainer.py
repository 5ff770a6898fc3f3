"""``stable_sync``: verl's synchronous v1 trainer plus per-step metrics from the reward function.

verl 0.9.1 logs a reward function's extra keys (``acc``, ``format``) only for validation. This
subclass, registered through verl's own ``register_trainer`` and selected with
``trainer.v1.trainer_mode=stable_sync``, adds them to every training step as ``reward/<key>``.
"""

from __future__ import annotations

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

TRAINER_NAME = "stable_sync"


def reward_extra_metrics(extra_fields: list, padding: np.ndarray) -> dict[str, float]:
    """Mean of each numeric key of ``extra_fields[i]["reward_extra_info"]`` over non-padding rows."""
    values: dict[str, list[float]] = {}
    for fields, is_padding in zip(extra_fields, padding, strict=True):
        info = fields.get("reward_extra_info", {}) if isinstance(fields, dict) and not is_padding else {}
        for key, value in info.items():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                values.setdefault(key, []).append(float(value))
    return {f"reward/{key}": float(np.mean(v)) for key, v in values.items()}


class StableTrainerSync(PPOTrainerSync):
    """verl's sync trainer with reward-function metrics on every step."""

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        padding = np.array([tag.get("is_padding", False) for tag in batch.tags], dtype=bool)
        metrics.update(reward_extra_metrics(data.pop("extra_fields").tolist(), padding))


def register() -> None:
    if TRAINER_REGISTRY.get(TRAINER_NAME) is not StableTrainerSync:
        register_trainer(TRAINER_NAME)(StableTrainerSync)
