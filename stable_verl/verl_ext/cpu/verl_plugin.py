"""A verl plugin that loads only the CPU platform: verl's own trainer, engine, worker and losses stay as they are.

stable-verl's ``verl.plugins`` entry point (``stable_verl.verl_ext.verl_plugin``) registers the method pieces too
(the ``stable_sync`` trainer, the routing engine in verl's ``EngineRegistry``, the MiniRL/CISPO losses). A run that
must be verl's built-ins on this machine (``tests/benchmarks/bench_plugin_price.py``'s baseline) turns verl's
entry-point discovery off and imports this module instead, through verl's ``VERL_USE_EXTERNAL_MODULES``
(:data:`PLATFORM_ONLY_ENV`), in every verl process.
"""

from __future__ import annotations

from stable_verl.verl_ext.cpu import platform as cpu_platform

PLATFORM_ONLY_ENV: dict[str, str] = {
    "VERL_USE_EXTERNAL_PLUGINS": "none",  # no entry points: stable-verl's method plugin stays out
    "VERL_USE_EXTERNAL_MODULES": __name__,  # imported by ``import verl`` (verl/__init__.py) instead
}

cpu_platform.register()
