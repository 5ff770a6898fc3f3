"""Masked reductions shared by the losses and diagnostics (one place, so every statistic masks the same way)."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true; 0 when the mask is empty.

    values, mask: same shape (any); mask is bool or 0/1. Masked-out entries are never read into the sum,
    so inf/NaN in padding does not leak. Returns a 0-dim tensor (differentiable w.r.t. ``values``).
    """
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1).to(total.dtype)
