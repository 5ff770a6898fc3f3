"""The paper's Appendix A baselines as per-token losses (pure torch).

GRPO (Appendix A, length-normalized PPO surrogate with group-normalized advantages A = (R - mean) / std):

    J_GRPO = (1/G) sum_i (1/|y_i|) sum_t min(r_t A_i, clip(r_t, 1 - eps_low, 1 + eps_high) A_i)

    -> ``aggregate_sequences(grpo_token_loss(...), mask, length_norm=True)``

CISPO (Appendix A, clipped IS weight as a stop-gradient coefficient, token-mean over the batch):

    J_CISPO = (1 / sum_i |y_i|) sum_i sum_t sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_i log pi_theta(y_t)

    -> ``token_mean(cispo_token_loss(...), mask)``

Here r_t = pi_theta(y_t) / pi_old(y_t). All tensors are (B, T); padding positions contribute nothing.
"""

from __future__ import annotations

import torch

from stable_verl.core.stats import masked_mean


def grpo_token_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
) -> torch.Tensor:
    """(B, T) loss_mat = -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) * mask; gradient flows through r."""
    mask = response_mask.bool()  # (B, T)
    zeros = torch.zeros_like(log_prob)  # (B, T)
    ratio = torch.where(mask, log_prob - old_log_prob, zeros).exp()  # (B, T) r_t, with grad
    adv = torch.where(mask, advantages.to(log_prob.dtype), zeros)  # (B, T)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv)  # (B, T)
    return torch.where(mask, -surrogate, zeros)


def cispo_token_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
) -> torch.Tensor:
    """(B, T) loss_mat = -sg(clip(r, 1 - eps_low, 1 + eps_high)) A log pi_theta * mask; gradient flows via log_prob."""
    mask = response_mask.bool()  # (B, T)
    zeros = torch.zeros_like(log_prob)  # (B, T)
    with torch.no_grad():
        ratio = torch.where(mask, log_prob - old_log_prob, zeros).exp()  # (B, T) r_t
        coef = torch.where(mask, ratio.clamp(1 - eps_low, 1 + eps_high) * advantages.to(log_prob.dtype), zeros)
    return torch.where(mask, -coef * log_prob, zeros)  # (B, T)


def token_mean(loss_mat: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Scalar: sum of loss_mat over response tokens / number of response tokens (verl's "token-mean")."""
    return masked_mean(loss_mat, response_mask)
