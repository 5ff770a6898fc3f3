"""The ``verl.plugins`` entry point: imported by ``import verl`` in every verl process.

Order matters: the CPU platform is registered before anything that asks verl for its platform
(verl caches the answer), so the trainer and loss modules are imported only afterwards. verl swallows
plugin import errors at debug level; this module logs them at ERROR before re-raising.
"""

import logging
import warnings

# verl's engine package warns once per optional backend it cannot import (megatron, veomni, ...): noise here.
warnings.filterwarnings("ignore", message=r".* engine is not available", category=UserWarning)

try:
    from stable_verl.verl_ext.cpu import platform as cpu_platform

    cpu_platform.register()

    # Imported for their registrations (verl's trainer, policy-loss, advantage and engine registries).
    from stable_verl.verl_ext import cispo_loss, minirl_advantage, minirl_loss, routing_engine, trainer  # noqa: F401

    trainer.register()
    routing_engine.register()
except Exception:
    logging.getLogger("stable_verl").exception("stable-verl: the verl plugin failed to load")
    raise
