"""Weight rounding that emulates low-precision inference: the rollout-precision stress knob.

The paper's hardest discrepancy setting is FP8 inference against BF16 training. Rounding the weights the
inference engine samples with (not the trained ones) through bf16 or float8_e4m3 makes that train-inference
gap, and the MoE routing flips it causes, real and adjustable on any hardware.

* ``bf16``: round to bfloat16 and back.
* ``fp8``: float8_e4m3fn with one scale per output channel (row): scale = row amax / 448, the e4m3 max,
  as per-channel FP8 weight quantization does. Per-row scales make the result independent of how an
  engine fuses matrices (vLLM stacks q/k/v and gate/up rows into one tensor), and re-rounding a rounded
  tensor is a no-op, so repeated syncs do not drift.
"""

from __future__ import annotations

import torch
from torch import nn

PRECISIONS = ("native", "bf16", "fp8")
FP8_MAX = 448.0  # largest finite float8_e4m3fn
# Kept in the engine's precision, as FP8 inference recipes do.
SKIPPED = ("embed_tokens", "lm_head")


def round_weight(weight: torch.Tensor, precision: str) -> torch.Tensor:
    """``weight`` as the given inference precision would store it, in ``weight``'s dtype."""
    if precision == "native":
        return weight
    if precision == "bf16":
        return weight.to(torch.bfloat16).to(weight.dtype)
    if precision == "fp8":
        scale = weight.detach().abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-12) / FP8_MAX  # per row
        return ((weight.float() / scale).to(torch.float8_e4m3fn).float() * scale).to(weight.dtype)
    raise ValueError(f"rollout precision must be one of {PRECISIONS}, got {precision!r}")


@torch.no_grad()
def round_model_weights(model: nn.Module, precision: str) -> int:
    """Round every matrix/expert weight of ``model`` in place (not embeddings, lm_head, norms); returns the count."""
    if precision not in PRECISIONS:
        raise ValueError(f"rollout precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "native":
        return 0
    count = 0
    for name, param in model.named_parameters():
        if param.dim() >= 2 and param.is_floating_point() and not any(s in name for s in SKIPPED):
            param.copy_(round_weight(param, precision))
            count += 1
    return count
