"""Group-relative advantages (paper §4.1; Appendix A for GRPO's std-normalized variant)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch


def group_mean_advantage(
    scores: torch.Tensor,
    group_ids: Sequence[Hashable] | np.ndarray,
    std_normalize: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """A_i = R_i - mean_{j in group(i)} R_j, optionally divided by (std_{j in group(i)} R_j + eps).

    MiniRL (paper §4.1) uses no std division; ``std_normalize=True`` gives GRPO's advantage (Appendix A), with the
    unbiased std (torch.std's default). A group of one response gets A = 0.

    Args:
        scores: (N,) sequence-level rewards R_i.
        group_ids: (N,) hashable group key per response (e.g. the prompt uid); responses sharing a key form a group.
        std_normalize: divide by the group std.
        eps: added to the std before dividing.

    Returns:
        (N,) advantages, floating point, on the device of ``scores``.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (N,), got shape {tuple(scores.shape)}")
    if len(group_ids) != scores.shape[0]:
        raise ValueError(f"group_ids must have one entry per score: {len(group_ids)} ids for {scores.shape[0]} scores")
    scores = scores if scores.is_floating_point() else scores.float()  # (N,)
    keys: dict[Hashable, int] = {}
    index = torch.tensor([keys.setdefault(g, len(keys)) for g in group_ids], dtype=torch.long, device=scores.device)
    num_groups = len(keys)
    counts = torch.bincount(index, minlength=num_groups).to(scores.dtype)  # (G,)
    sums = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add(0, index, scores)  # (G,)
    centered = scores - (sums / counts)[index]  # (N,)
    singleton = (counts == 1)[index]  # (N,)
    if std_normalize:
        sq = torch.zeros_like(sums).index_add(0, index, centered**2)  # (G,)
        std = (sq / (counts - 1).clamp_min(1)).sqrt()  # (G,) unbiased
        centered = centered / (std[index] + eps)  # (N,)
    return torch.where(singleton, torch.zeros_like(centered), centered)
