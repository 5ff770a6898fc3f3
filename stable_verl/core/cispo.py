"""CISPO as the paper's Appendix A writes it, per token and per group (pure torch; ``verl_ext.cispo_loss``).

CISPO (Appendix A, clipped IS weight as a stop-gradient coefficient). The expectation is over a prompt x and
its group of G responses {y_i}; each group's token sum is divided by that group's own token count:

    J_CISPO = E_x[ (1 / sum_i |y_i|) sum_i sum_t sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_i log pi_theta(y_t) ]

    -> ``group_token_mean(cispo_token_loss(...), mask, group_token_totals(uids, mask), num_groups)``

    (verl's "token-mean", ``core.reference.token_mean``, divides by the token count of the whole batch instead:
    the two agree only when every group has the same total length.)

Here r_t = pi_theta(y_t) / pi_old(y_t). All tensors are (B, T); padding positions contribute nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


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


def group_token_totals(group_ids: Sequence[Hashable], response_mask: torch.Tensor) -> torch.Tensor:
    """(B,) for each response i, the response tokens of its whole group: sum_{j: group_j = group_i} |y_j|.

    group_ids: B hashable ids (verl's ``uid``: one per prompt, shared by its G responses); response_mask: (B, T).
    """
    if len(group_ids) != response_mask.shape[0]:
        raise ValueError(f"{len(group_ids)} group ids for {response_mask.shape[0]} responses")
    lengths = response_mask.bool().sum(dim=-1)  # (B,) |y_i|
    totals: dict[Hashable, int] = {}
    for gid, n in zip(group_ids, lengths.tolist(), strict=True):
        totals[gid] = totals.get(gid, 0) + n
    return torch.tensor([totals[gid] for gid in group_ids], dtype=torch.float64)  # (B,)


def group_token_mean(
    loss_mat: torch.Tensor, response_mask: torch.Tensor, group_tokens: torch.Tensor, num_groups: float
) -> torch.Tensor:
    """Scalar: (1 / num_groups) sum_i sum_t loss_mat[i, t] / group_tokens[i], over response tokens.

    With ``group_tokens`` from ``group_token_totals`` this is the mean over groups of each group's token mean
    (Appendix A CISPO). group_tokens: (B,) or (B, T) (the per-row value broadcast over tokens, as verl stores
    per-token fields); loss_mat, response_mask: (B, T).
    """
    mask = response_mask.bool()  # (B, T)
    if group_tokens.dim() == 1:
        group_tokens = group_tokens[:, None].expand_as(loss_mat)  # (B, T)
    denom = group_tokens.to(loss_mat.dtype).clamp_min(1.0)  # (B, T) padding rows/positions may hold 0
    per_token = torch.where(mask, loss_mat / denom, torch.zeros_like(loss_mat))  # (B, T)
    return per_token.sum() / num_groups
