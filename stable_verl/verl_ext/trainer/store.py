"""Checkpoints and metrics in the run's store, from the nodes that save them (:mod:`stable_verl.verl_ext.store_sync`).

With the store settings in its environment, the trainer uploads each checkpoint right after verl saves it (its own
files here, each rank's shards from that rank's node, the step's metrics row once verl has logged it, then the
manifest, last) and, before verl loads a checkpoint, restores the store's latest complete one onto the nodes that
load it. Without them it is verl's trainer, call for call.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import ray
from omegaconf import open_dict
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.verl_ext.store_sync import StepMetrics, StoreSync, node_run_dir, restored_line, to_row

logger = logging.getLogger(__name__)


class _LoggedTo:
    """verl's ``Tracking`` logger, calling ``after(data, step)`` once each ``log`` call has logged."""

    def __init__(self, tracking: Any, after: Callable[[dict, int], None]) -> None:
        self._tracking, self._after = tracking, after

    def log(self, data: dict, step: int, *args, **kwargs) -> None:
        self._tracking.log(data, step, *args, **kwargs)
        self._after(data, step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracking, name)


class StoreCheckpoints(PPOTrainerSync):
    """verl's checkpoints and metrics rows uploaded to the run's store, and restored from it on resume (see the
    module docstring); the actor worker (:mod:`stable_verl.verl_ext.actor_worker`) moves each rank's shards."""

    _logger: Any = None  # verl's Tracking, once fit() has made it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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

    def _save_checkpoint(self):
        step = self.global_steps
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{step}")
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
