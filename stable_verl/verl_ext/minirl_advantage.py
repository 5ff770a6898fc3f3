"""MiniRL's advantage as a verl estimator: ``algorithm.adv_estimator=minirl``.

    A(x, y_i) = R(x, y_i) - mean_{j in group(x)} R(x, y_j)        (paper §4.1: group mean, no std division)

The same value as verl's ``grpo`` with ``norm_adv_by_std_in_grpo=False``; registered under its own name
so a recipe states the paper's estimator explicitly and cannot be flipped by that flag.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stable_verl.core.advantages import group_mean_advantage
from stable_verl.verl_ext.registry import register_adv_estimator


@register_adv_estimator("minirl")
def compute_minirl_advantage(
    token_level_rewards: torch.Tensor,  # (bs, T), the outcome reward on the last response token
    response_mask: torch.Tensor,  # (bs, T)
    index: np.ndarray,  # (bs,) prompt uid: responses to the same prompt form a group
    config: Any = None,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (advantages, returns), both (bs, T) and zero outside the response."""
    scores = token_level_rewards.sum(dim=-1)  # (bs,)
    with torch.no_grad():
        adv = group_mean_advantage(scores, list(index), std_normalize=False)  # (bs,)
        advantages = adv.unsqueeze(-1) * response_mask  # (bs, T)
    return advantages, advantages
