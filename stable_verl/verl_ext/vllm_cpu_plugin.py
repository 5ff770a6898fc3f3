"""The ``vllm.general_plugins`` entry point of the CPU shims (pyproject.toml names this module).

vLLM calls :func:`register` in each of its processes (engine core, workers) before models load. Off CPU it
does nothing; on CPU it keeps weights reloadable in place (:mod:`.cpu.vllm_weights`) and returns the routed
experts as vLLM does on GPU (:mod:`.cpu.vllm_routes`, needed by R3).
"""

from __future__ import annotations


def register() -> None:
    """Called by vLLM in each of its processes; idempotent."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from stable_verl.verl_ext.cpu import vllm_routes, vllm_weights

    vllm_weights.register()
    vllm_routes.register()
