"""The ``verl.plugins`` entry point: imported by ``import verl`` in every verl process.

Order matters: the CPU platform is registered before anything that asks verl for its platform
(verl caches the answer), so the trainer and loss modules are imported only afterwards. verl swallows
plugin import errors at debug level; this module logs them at ERROR before re-raising. It also scopes verl's
TransferQueue to the process's Ray job (:mod:`.tq_scope`): two verl runs on one Ray cluster share none; and verl's
weight-sync socket to the process's Ray cluster (:mod:`.weight_sync_scope`): two local runs on one machine share none.

Then, in a Ray worker of a job whose environment lists stage inputs (``STABLE_VERL_INPUTS``, a Ray Job without a
shared filesystem), the inputs are materialised on this node from the store (:mod:`.inputs`): every verl actor
(the TaskRunner, which reads the tokenizer and the parquet files, the FSDP workers, vLLM's server, the agent-loop
and reward workers) imports verl before it reads them. The job's driver (not a Ray worker yet when it imports verl)
reads none of them, so the head node downloads nothing; SFT's job entrypoint materialises them before torchrun.
"""

import logging
import warnings

from stable_verl.env import INPUTS

# verl's engine package warns once per optional backend it cannot import (megatron, veomni, ...): noise here.
warnings.filterwarnings("ignore", message=r".* engine is not available", category=UserWarning)

try:
    from stable_verl.verl_ext.cpu import platform as cpu_platform

    cpu_platform.register()

    # Imported for their registrations (verl's trainer, policy-loss, advantage and engine registries).
    from stable_verl.verl_ext import cispo_loss, minirl_advantage, minirl_loss, routing_engine, trainer  # noqa: F401

    trainer.register()
    routing_engine.register()

    from stable_verl.verl_ext import tq_scope

    tq_scope.install()  # a TransferQueue per Ray job: two verl jobs on one cluster share none (issue 28)

    from stable_verl.verl_ext import weight_sync_scope

    weight_sync_scope.install()  # a weight-sync socket per local Ray cluster: two local runs share none
except Exception:
    logging.getLogger("stable_verl").exception("stable-verl: the verl plugin failed to load")
    raise

if INPUTS.get():
    try:
        import ray

        if ray.is_initialized():  # a Ray worker (actor) of the job, not its driver
            from stable_verl.verl_ext import inputs

            inputs.materialise_from_env()
    except Exception:
        logging.getLogger("stable_verl").exception("stable-verl: the stage's inputs could not be materialised")
        raise
