"""The ``verl.plugins`` entry point: imported by ``import verl`` in every verl process.

Order matters: the CPU platform is registered before anything that asks verl for its platform
(verl caches the answer), so the trainer module is imported only afterwards. verl swallows plugin
import errors at debug level; this module logs them at ERROR before re-raising.
"""

import logging

try:
    from stable_verl.verl_ext import cpu_platform

    cpu_platform.register()

    from stable_verl.verl_ext import trainer  # imports verl modules that query the platform

    trainer.register()
except Exception:
    logging.getLogger("stable_verl").exception("stable-verl: the verl plugin failed to load")
    raise
