"""Reference implementations for the tests: not on any training path (nothing in stable_verl imports this module).

The tests check verl's own aggregation and losses, and ours, against these hand-written forms:

GRPO (Appendix A, length-normalized PPO surrogate with group-normalized advantages A = (R - mean) / std):

    J_GRPO = (1/G) sum_i (1/|y_i|) sum_t min(r_t A_i, clip(r_t, 1 - eps_low, 1 + eps_high) A_i)

    -> ``aggregate_sequences(grpo_token_loss(...), mask, length_norm=True)``

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


def token_mean(loss_mat: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Scalar: sum of loss_mat over response tokens / number of response tokens (verl's "token-mean")."""
    return masked_mean(loss_mat, response_mask)


def aggregate_sequences(
    loss_mat: torch.Tensor,
    response_mask: torch.Tensor,
    length_norm: bool = False,
    num_sequences: int | None = None,
) -> torch.Tensor:
    """Scalar loss: sum_i [ sum_t loss_mat[i, t] (/ |y_i| if length_norm) ] / num_sequences.

    loss_mat, response_mask: (B, T). num_sequences defaults to B (pass the global count under data parallelism, or
    the number of non-empty rows to match verl, which excludes fully masked rows). length_norm=False is verl's
    "seq-mean-token-sum" (MiniRL: no 1/|y|); True is "seq-mean-token-mean" (the length-normalized ablation and
    Appendix A GRPO). A response with no tokens contributes 0.
    """
    if num_sequences is None:
        num_sequences = loss_mat.shape[0]
    if num_sequences <= 0:
        raise ValueError(f"num_sequences must be > 0 (the number of responses in the batch), got {num_sequences}")
    mask = response_mask.bool()  # (B, T)
    per_seq = torch.where(mask, loss_mat, torch.zeros_like(loss_mat)).sum(dim=-1)  # (B,)
    if length_norm:
        per_seq = per_seq / mask.sum(dim=-1).clamp_min(1).to(per_seq.dtype)  # (B,)
    return per_seq.sum() / num_sequences
