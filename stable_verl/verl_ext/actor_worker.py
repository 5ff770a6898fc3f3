"""stable-verl's actor worker: verl's hybrid ``ActorRolloutRefWorker`` with three additions, each through verl's
own worker API. The ``stable_sync`` trainer (:mod:`stable_verl.verl_ext.trainer.worker`) maps the actor roles to it.

* Routing replay: verl's ``enable_routing_replay`` flag turned on for ``strategy=fsdp*`` (verl hard-codes it to
  Megatron / VeOmni), so that the routing-replay engine (:mod:`stable_verl.verl_ext.routing_engine`) records or
  replays the batch's routes.
* CISPO: under ``loss_mode=cispo_group`` verl's ``ppo_loss`` is wrapped so that the policy loss sees each response's
  group token count (:mod:`stable_verl.verl_ext.cispo_loss`).
* Store sync: with a store to sync to (:mod:`stable_verl.verl_ext.store_sync`), each rank saves to and loads from
  its own node's checkpoint root, uploads the files it saved and restores its own shards from the store.
"""

from __future__ import annotations

import os
from functools import partial

from verl.single_controller.base.decorator import Dispatch, register
from verl.workers.engine_workers import ActorRolloutRefWorker

from stable_verl.verl_ext import cispo_loss
from stable_verl.verl_ext.routing_engine import check_replay_config, replay_mode
from stable_verl.verl_ext.store_sync import StoreSync


class RoutingActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's hybrid worker with ``enable_routing_replay`` honoured for ``strategy=fsdp*``, CISPO's group token
    counts handed to the loss, and each rank's checkpoint files synced with the store (see the module docstring)."""

    _sync: StoreSync | None | bool = False  # False: not looked up yet

    def __init__(self, config, role: str, **kwargs):
        super().__init__(config, role, **kwargs)
        actor = self.config.actor
        if actor.strategy in ("fsdp", "fsdp2"):
            mode = replay_mode(actor.fsdp_config)
            rollout_routes = bool(self.config.rollout.get("enable_rollout_routing_replay", False))
            sp = int(actor.get("ulysses_sequence_parallel_size", 1) or 1)
            check_replay_config(mode, rollout_routes, actor.strategy, sp)
            # Replay, or (vLLM routes present) diagnostics only: the engine then records and compares.
            self.enable_routing_replay = mode != "disabled" or rollout_routes

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        super().init_model()
        if "actor" in self.role and self.config.actor.policy_loss.get("loss_mode") == cispo_loss.LOSS_MODE:
            self.loss_fn = partial(cispo_loss.with_group_tokens, inner=self.loss_fn)  # verl's ppo_loss, wrapped
            self.actor.set_loss_fn(self.loss_fn)

    def _store_sync(self) -> StoreSync | None:
        if self._sync is False:
            self._sync = StoreSync.from_env()
        return self._sync

    def _first_on_node(self) -> bool:
        return int(os.environ.get("LOCAL_RANK", "0")) == 0

    def _local(self, path: str) -> str:
        sync = self._store_sync()
        return path if sync is None else sync.local(path)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        super().save_checkpoint(self._local(local_path), hdfs_path, global_step, max_ckpt_to_keep)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
        super().load_checkpoint(self._local(local_path), hdfs_path, del_local_after_load)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL, blocking=False)
    def upload_checkpoint_files(self, local_path: str, step: int) -> list[dict]:
        """Upload the files this rank saved into ``local_path`` (``global_step_N/actor``); their manifest entries.
        Non-blocking: the trainer uploads its own files meanwhile."""
        sync = self._store_sync()
        assert sync is not None, "upload_checkpoint_files needs the store settings (store_sync.sync_env)"
        return sync.upload_rank_files(step, self._local(local_path), self.rank, self._first_on_node())

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def restore_checkpoint_files(self, local_path: str, step: int) -> None:
        """Download this rank's files of checkpoint ``step`` into ``local_path`` on this node."""
        sync = self._store_sync()
        assert sync is not None, "restore_checkpoint_files needs the store settings (store_sync.sync_env)"
        sync.restore_rank_files(step, self._local(local_path), self.rank, self._first_on_node())
