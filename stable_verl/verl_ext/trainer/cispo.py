"""CISPO normalised per prompt group (``loss_mode=cispo_group``): each response's group token count, written into the
batch after the advantages, where the whole batch and verl's ``uid`` are at hand. The actor worker hands the field
to the loss (:mod:`stable_verl.verl_ext.cispo_loss`)."""

from __future__ import annotations

import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.verl_ext import cispo_loss


class CispoGroupTokens(PPOTrainerSync):
    """Writes ``cispo_loss.GROUP_TOKENS`` into the batch after the advantages under ``loss_mode=cispo_group``."""

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        if self.config.actor_rollout_ref.actor.policy_loss.get("loss_mode") == cispo_loss.LOSS_MODE:
            data = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "response_mask"]
            )
            fields = cispo_loss.group_tokens_batch(data)
            batch = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        return batch
