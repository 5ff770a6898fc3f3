"""The actor roles run stable-verl's actor worker (:mod:`stable_verl.verl_ext.actor_worker`: routing replay in the
FSDP engine, CISPO's loss wrapping, each rank's checkpoint files synced with the store)."""

from __future__ import annotations

import ray
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from stable_verl.verl_ext.actor_worker import RoutingActorRolloutRefWorker

ACTOR_ROLES = (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor, Role.RefPolicy)


class ActorWorker(PPOTrainerSync):
    """Maps the actor roles to :class:`RoutingActorRolloutRefWorker` where verl maps them to its own worker."""

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        for role in list(self.role_worker_mapping):  # verl maps these roles to ray.remote(ActorRolloutRefWorker)
            if role in ACTOR_ROLES:
                self.role_worker_mapping[role] = ray.remote(RoutingActorRolloutRefWorker)
