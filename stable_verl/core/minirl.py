"""MiniRL: the token-level surrogate of "Stabilizing Reinforcement Learning with LLMs" (Qwen, arXiv 2512.01374).

Three policies appear:

* mu_old   - the inference engine (vLLM) that sampled the response tokens;
* pi_old   - the same weights as mu_old, evaluated by the training engine;
* pi_theta - the policy being optimized.

The token IS weight factors as pi_theta/mu_old = (pi_old/mu_old) * (pi_theta/pi_old), i.e. a training-inference
*discrepancy* term times a policy *staleness* term r_t. MiniRL (paper Eq. 7, §4) maximizes

    J(theta) = E_{y~mu_old}[ sum_t M_t * sg(w_t) * A(x, y) * log pi_theta(y_t | x, y_<t) ]

    w_t = min(pi_theta(y_t) / mu_old(y_t), C)                                  (TIS, §4.2, C = 5)
    M_t = 0 if (A > 0 and r_t > 1 + eps_high) or (A < 0 and r_t < 1 - eps_low), else 1,   r_t = pi_theta/pi_old
    A(x, y) = R(x, y) - mean of R over the responses to x                      (no std division, §4.1)

Tokens are summed per response (no 1/|y|) and the sum is divided by a constant (the number of responses).
There is no KL and no entropy term.
"""

from __future__ import annotations

import torch

from stable_verl.core.options import TRUNCATIONS, MiniRLConfig, MiniRLOptions

__all__ = ["TRUNCATIONS", "MiniRLConfig", "MiniRLOptions"]


def minirl_token_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    cfg: MiniRLConfig,
    is_ratio: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token MiniRL loss (negated objective of paper Eq. 7) and its statistics.

        loss_mat[b, t] = -M_t * sg(w_t) * A_t * log pi_theta(y_t) * mask_t,   so  d loss_mat / d log_prob = -M_t w_t A_t

    with r_t = pi_theta/pi_old, f_t = pi_old/mu_old (``is_ratio``; 1 if unavailable or ``cfg.train_infer_is`` is
    False), w_t = min(f_t r_t, C) (``truncation='full'``) or min(f_t, C) r_t (``'decoupled'``), r_t taken as 1
    in w_t if ``cfg.staleness_is`` is False, and M_t the staleness mask (all ones if ``cfg.clipping`` is False).
    verl aggregates it (``seq-mean-token-sum``; written out by hand in ``core.reference.aggregate_sequences``).

    Args:
        log_prob: (B, T) log pi_theta(y_t), with grad.
        old_log_prob: (B, T) log pi_old(y_t) from the training engine.
        advantages: (B, T) A(x, y) broadcast over each response's tokens.
        response_mask: (B, T) bool or 0/1; padding positions contribute nothing (values there are never used).
        cfg: the MiniRL hyper-parameters.
        is_ratio: (B, T) pi_old/mu_old per token, detached and *not* truncated; None means unavailable (taken as 1).

    Returns:
        (loss_mat (B, T), stats) where stats are 0-dim detached tensors over the response tokens: is_weight_mean,
        is_weight_max, is_truncated_frac (cap binds), clip_frac (M_t = 0), clip_frac_pos_adv / clip_frac_neg_adv
        (share of A > 0 / A < 0 tokens that are masked; 0 if there are none), staleness_log_ratio_abs_mean /
        _max (|log r_t|), staleness_kl_k3 (k3 estimate of KL(pi_old || pi_theta): mean of r - 1 - log r).
    """
    mask = response_mask.bool()  # (B, T)
    with torch.no_grad():
        log_ratio = torch.where(mask, log_prob.detach() - old_log_prob, 0.0)  # (B, T) log r_t, 0 on padding
        ratio = log_ratio.exp()  # (B, T) r_t = pi_theta / pi_old
        adv = advantages.detach().to(log_prob.dtype)  # (B, T)
        stale = ratio if cfg.staleness_is else torch.ones_like(ratio)  # (B, T) r_t in the weight, or 1

        if cfg.clipping:
            clipped = ((adv > 0) & (ratio > 1 + cfg.eps_high)) | ((adv < 0) & (ratio < 1 - cfg.eps_low))  # (B, T)
        else:
            clipped = torch.zeros_like(mask)  # (B, T)

        if cfg.train_infer_is and is_ratio is not None:
            factor = torch.where(mask, is_ratio.detach().to(log_prob.dtype), 1.0)  # (B, T) pi_old / mu_old
        else:
            factor = None  # the discrepancy factor is 1

        if cfg.truncation == "full":
            raw = stale if factor is None else factor * stale  # (B, T) pi_theta / mu_old
            weight = raw.clamp(max=cfg.tis_cap)  # (B, T) w_t = min(pi_theta / mu_old, C)
            truncated = raw > cfg.tis_cap  # (B, T)
        else:
            capped = 1.0 if factor is None else factor.clamp(max=cfg.tis_cap)  # min(pi_old / mu_old, C)
            weight = stale * capped  # (B, T) w_t = min(pi_old / mu_old, C) * r_t
            truncated = torch.zeros_like(mask) if factor is None else factor > cfg.tis_cap  # (B, T)

        coef = torch.where(mask & ~clipped, weight * adv, 0.0)  # (B, T) M_t * sg(w_t) * A_t, 0 on padding

    loss_mat = torch.where(mask, -coef * log_prob, 0.0)  # (B, T)

    with torch.no_grad():
        stats = _token_stats(mask, adv, clipped, weight, truncated, log_ratio, ratio)
    return loss_mat, stats


def _token_stats(
    mask: torch.Tensor,  # (B, T) bool
    adv: torch.Tensor,  # (B, T)
    clipped: torch.Tensor,  # (B, T) bool, M_t == 0
    weight: torch.Tensor,  # (B, T) w_t
    truncated: torch.Tensor,  # (B, T) bool, the cap binds
    log_ratio: torch.Tensor,  # (B, T) log r_t, 0 on padding
    ratio: torch.Tensor,  # (B, T) r_t
) -> dict[str, torch.Tensor]:
    """The loss's diagnostics over response tokens; each mean is one dot product with the mask (no temporaries
    per statistic), since they run on every micro-batch of training."""
    dtype = weight.dtype
    m = mask.reshape(-1).to(dtype)  # (N,)
    pos = (adv > 0).reshape(-1).to(dtype) * m  # (N,)
    neg = (adv < 0).reshape(-1).to(dtype) * m  # (N,)
    clip = clipped.reshape(-1).to(dtype)  # (N,)
    abs_log_ratio = log_ratio.abs()  # (B, T), 0 on padding

    n_tokens = m.sum().clamp_min(1)  # each count once, not once per statistic

    def mean(x: torch.Tensor, over: torch.Tensor = m, count: torch.Tensor = n_tokens) -> torch.Tensor:
        return torch.dot(x.reshape(-1), over) / count

    # Both maxima are of values >= 0, so a masked-out token counts as 0 (and an empty mask gives 0).
    return {
        "is_weight_mean": mean(weight),
        "is_weight_max": (weight.reshape(-1) * m).max(),  # w_t >= 0
        "is_truncated_frac": mean(truncated.to(dtype)),
        "clip_frac": mean(clip),
        "clip_frac_pos_adv": mean(clip, pos, pos.sum().clamp_min(1)),
        "clip_frac_neg_adv": mean(clip, neg, neg.sum().clamp_min(1)),
        "staleness_log_ratio_abs_mean": mean(abs_log_ratio),
        "staleness_log_ratio_abs_max": abs_log_ratio.max(),  # 0 on padding
        "staleness_kl_k3": mean(ratio - 1 - log_ratio),
    }
