"""Stability diagnostics on every step, beside verl's own metrics:

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
  resume, so a restarted run keeps its latch and references.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.core.collapse import CollapseDetector
from stable_verl.core.metric_keys import COLLAPSE_WARNING, ENTROPY_PER_TOKEN, KL_K3_KEYS

logger = logging.getLogger(__name__)

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


def _padding_rows(batch: KVBatchMeta) -> np.ndarray:
    """(B,) bool: verl's synthetic ``is_padding`` rows of the batch."""
    return np.array([tag.get("is_padding", False) for tag in batch.tags], dtype=bool)


class StepDiagnostics(PPOTrainerSync):
    """Reward extra keys, per-token entropy and the collapse warning on every step; the warning's state saved with
    each checkpoint and loaded on resume (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._collapse = CollapseDetector()

    def step(self, metrics: dict, timing_raw: dict) -> KVBatchMeta:
        # Per-token entropy and the collapse warning here, not in _compute_metrics: verl saves the step's checkpoint
        # between the two, and the detector state saved with it must include this step.
        batch = super().step(metrics, timing_raw)
        rollout_corr = self.config.algorithm.get("rollout_correction", None)
        if not (rollout_corr and rollout_corr.get("bypass_mode", False)):  # bypass: verl computes no entropy
            data = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["entropy", "response_mask"]
            )
            metrics.update(entropy_per_token(data["entropy"], data["response_mask"], _padding_rows(batch)))
        metrics.update(collapse_metric(self._collapse, metrics))
        return batch

    def _compute_metrics(self, batch: KVBatchMeta, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        metrics.update(reward_extra_metrics(data.pop("extra_fields").tolist(), _padding_rows(batch)))

    def _save_checkpoint(self):
        # Written before verl's own files (and, with a store, before the upload: ``StoreCheckpoints`` comes later
        # in StableTrainerSync's MRO), so it is in the folder before verl marks the checkpoint complete.
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        save_collapse_state(self._collapse, folder)
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()  # with a store, ``StoreCheckpoints`` restores the checkpoint first
        if self.global_steps > 0:  # resumed from a checkpoint
            folder = resumed_step_folder(self.config.trainer, self.global_steps)
            if not load_collapse_state(self._collapse, folder):
                logger.warning("no %s in %s: the collapse detector starts afresh", COLLAPSE_STATE, folder)
