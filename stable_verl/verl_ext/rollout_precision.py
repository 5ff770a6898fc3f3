"""``vllm.general_plugins`` entry point: round the rollout engine's weights (``STABLE_VERL_ROLLOUT_PRECISION``).

With ``STABLE_VERL_ROLLOUT_PRECISION=bf16|fp8|int4`` in vLLM's environment, every weight load (the initial one
and each of verl's syncs, which both end in ``process_weights_after_loading``) first rounds the model's
weights with ``stable_verl.core.precision``. Only the inference side changes, so mu_old moves away from
pi_old by exactly the chosen precision. Unset or ``native``: nothing is patched.
"""

from __future__ import annotations

import functools

from stable_verl.env import ROLLOUT_PRECISION, rollout_precision

ENV = ROLLOUT_PRECISION.name


def register() -> None:
    precision = rollout_precision()
    if precision == "native":
        return
    from vllm.model_executor.model_loader import base_loader, utils

    from stable_verl.core.precision import PRECISIONS, round_model_weights

    if precision not in PRECISIONS:
        raise ValueError(f"{ENV} must be one of {PRECISIONS}, got {precision!r}")
    original = utils.process_weights_after_loading
    if getattr(original, "_stable_verl_precision", None) == precision:
        return

    @functools.wraps(original)
    def rounded_then_processed(model, model_config, target_device):
        round_model_weights(model, precision)  # before any repacking into kernel layouts
        return original(model, model_config, target_device)

    rounded_then_processed._stable_verl_precision = precision  # type: ignore[attr-defined]
    utils.process_weights_after_loading = rounded_then_processed  # verl's sync imports it from here
    base_loader.process_weights_after_loading = rounded_then_processed  # the initial load
