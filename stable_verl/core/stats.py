"""Masked reductions shared by the losses and diagnostics (one place, so every statistic masks the same way)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true; 0 when the mask is empty.

    values, mask: same shape (any); mask is bool or 0/1. Masked-out entries are never read into the sum,
    so inf/NaN in padding does not leak. Returns a 0-dim tensor (differentiable w.r.t. ``values``).
    """
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1).to(total.dtype)


@dataclass(frozen=True)
class PackedStats:
    """Named 0-dim statistics held in one tensor, so moving them all to the host is one copy (one sync)."""

    keys: tuple[str, ...]
    values: torch.Tensor
    """(len(keys),) detached; ``values[i]`` is the statistic ``keys[i]``."""

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.keys),):
            raise ValueError(f"{len(self.keys)} keys for values shaped {tuple(self.values.shape)}")

    def tensors(self) -> dict[str, torch.Tensor]:
        """``{key: 0-dim tensor}``, views into ``values`` (no copy, no sync)."""
        return dict(zip(self.keys, self.values.unbind(0), strict=True))

    def floats(self) -> dict[str, float]:
        """``{key: float}`` in one device-to-host transfer."""
        return dict(zip(self.keys, self.values.tolist(), strict=True))
