"""Routing Replay (R2 / R3) seen from the trainer: the step's ``routing/*`` metrics from the routes the old-log-prob
pass wrote into the batch (:mod:`stable_verl.verl_ext.routing_engine` records and replays them):

* ``routing/mismatch_rate``: vLLM vs the training router, old policy;
* ``routing/mismatch_rate_replayed``: vLLM vs the experts training used (0 under R3);
* ``routing/routed_tokens``, ``routing/bytes_per_token`` (compact routes), ``routing/replay_r2`` / ``replay_r3``.
"""

from __future__ import annotations

import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.verl_ext import routing_engine as re_


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


class RouteMetrics(PPOTrainerSync):
    """``routing/*`` metrics after the old-log-prob pass, when replay is on or vLLM returns routes."""

    def _routing_enabled(self) -> tuple[bool, str]:
        actor_rollout = self.config.actor_rollout_ref
        replay = re_.replay_mode(actor_rollout.actor.get("fsdp_config", {}))
        routes = bool(actor_rollout.rollout.get("enable_rollout_routing_replay", False))
        return replay != "disabled" or routes, replay

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
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
