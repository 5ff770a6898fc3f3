"""Weight rounding that emulates low-precision inference: the rollout-precision stress knob.

The paper's hardest discrepancy setting is FP8 inference against BF16 training. Rounding the weights the
inference engine samples with (not the trained ones) through bf16 or float8_e4m3 makes that train-inference
gap, and the MoE routing flips it causes, real and adjustable on any hardware.

* ``bf16``: round to bfloat16 and back.
* ``fp8``: float8_e4m3fn with one scale per output channel (row): scale = row amax / 448, the e4m3 max,
  as per-channel FP8 weight quantization does. Per-row scales make the result independent of how an
  engine fuses matrices (vLLM stacks q/k/v and gate/up rows into one tensor), and re-rounding a rounded
  tensor is a no-op, so repeated syncs do not drift.
* ``int4``: symmetric per-row integer rounding, scale = row amax / 7, q = clamp(round(w / scale), -8, 7) (round half
  to even), w' = q x scale: 15 levels per row, a far coarser gap than fp8 (notes/grid-science.md §3.4: the stress
  regime's option when fp8's train-inference KL stays below ~3e-3). With the scale at amax / 7 no value reaches -8;
  the clamp is the int4 range. Per-row and idempotent as fp8 is.
"""

from __future__ import annotations

import torch
from torch import nn

from stable_verl.core.options import PRECISIONS

FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT4_MIN, INT4_MAX = -8, 7
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
    if precision == "int4":
        scale = weight.detach().abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-12) / INT4_MAX  # per row
        q = torch.round(weight.float() / scale).clamp(INT4_MIN, INT4_MAX)  # (rows, cols) integers in [-8, 7]
        return (q * scale).to(weight.dtype)
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
