"""``stable_sync``: verl's synchronous v1 trainer plus stability metrics on every step, checkpoints in the run's store,
CISPO's group counts and Routing Replay's metrics.

Registered through verl's own ``register_trainer`` and selected with ``trainer.v1.trainer_mode=stable_sync``.
:class:`StableTrainerSync` is composed of one piece per concern, each a subclass of verl's ``PPOTrainerSync`` that
overrides only its own methods and calls ``super()``:

* :mod:`.metrics` (``StepDiagnostics``): ``reward/<key>``, ``actor/entropy_per_token`` and the latching
  ``stability/collapse_warning``, whose state is saved with each checkpoint and loaded on resume;
* :mod:`.store` (``StoreCheckpoints``): with the store settings in its environment, each checkpoint and the
  metrics rows uploaded to the run's store, and the latest complete checkpoint restored from it on resume;
* :mod:`.cispo` (``CispoGroupTokens``): under ``loss_mode=cispo_group``, each response's group token count in the
  batch;
* :mod:`.routing` (``RouteMetrics``): ``routing/*`` metrics when the batch carries routes;
* :mod:`.worker` (``ActorWorker``): the actor roles run stable-verl's actor worker
  (:mod:`stable_verl.verl_ext.actor_worker`);
* :mod:`.sync_paths` (``SyncPaths``): verl's synchronous code paths under this name, a shorter replay-buffer poll.

The order of the bases is the order of the ``super()`` chain: ``StepDiagnostics`` writes the collapse state into a
checkpoint's folder before ``StoreCheckpoints`` uploads it, and reads it after ``StoreCheckpoints`` restored it.
"""

from __future__ import annotations

from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer

from stable_verl.verl_ext.trainer.cispo import CispoGroupTokens
from stable_verl.verl_ext.trainer.metrics import StepDiagnostics
from stable_verl.verl_ext.trainer.routing import RouteMetrics
from stable_verl.verl_ext.trainer.store import StoreCheckpoints
from stable_verl.verl_ext.trainer.sync_paths import SyncPaths
from stable_verl.verl_ext.trainer.worker import ActorWorker

__all__ = ["TRAINER_NAME", "StableTrainerSync", "register"]

TRAINER_NAME = "stable_sync"


class StableTrainerSync(StepDiagnostics, StoreCheckpoints, CispoGroupTokens, RouteMetrics, ActorWorker, SyncPaths):
    """verl's sync trainer with stable-verl's per-step metrics, store checkpoints, CISPO group counts and routing
    metrics (see the package docstring)."""


def register() -> None:
    if TRAINER_REGISTRY.get(TRAINER_NAME) is not StableTrainerSync:
        register_trainer(TRAINER_NAME)(StableTrainerSync)
