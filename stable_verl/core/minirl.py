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

from stable_verl.core.diagnostics import train_infer_kl_terms
from stable_verl.core.options import TRUNCATIONS, MiniRLConfig, MiniRLOptions
from stable_verl.core.stats import PackedStats

__all__ = ["TRUNCATIONS", "MiniRLConfig", "MiniRLOptions", "PackedStats"]


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
        :func:`minirl_token_loss_packed` gives the same values in one tensor (one host transfer for all).
    """
    loss_mat, stats = minirl_token_loss_packed(log_prob, old_log_prob, advantages, response_mask, cfg, is_ratio)
    return loss_mat, stats.tensors()


def minirl_token_loss_packed(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    cfg: MiniRLConfig,
    is_ratio: torch.Tensor | None = None,
    train_infer_kl: bool = False,
) -> tuple[torch.Tensor, PackedStats]:
    """:func:`minirl_token_loss` with its statistics packed in one tensor; ``train_infer_kl`` adds
    ``train_infer_kl_k1`` / ``_k3`` (:func:`~stable_verl.core.diagnostics.train_infer_kl_from_ratio` of
    ``is_ratio``, whatever ``cfg.train_infer_is`` says; needs ``is_ratio``).

    The statistics cost a fixed, small number of device ops whatever their count (:func:`_token_stats`) and no host
    sync: the loss runs on every micro-batch, and at LLM sizes it is bound by kernel launches, not by arithmetic.
    """
    if train_infer_kl and is_ratio is None:
        raise ValueError("train_infer_kl needs is_ratio (pi_old / mu_old)")
    mask = response_mask.bool()  # (B, T)
    with torch.no_grad():
        log_ratio = torch.where(mask, log_prob.detach() - old_log_prob, 0.0)  # (B, T) log r_t, 0 on padding
        ratio = log_ratio.exp()  # (B, T) r_t = pi_theta / pi_old
        adv = advantages.detach().to(log_prob.dtype)  # (B, T)
        stale = ratio if cfg.staleness_is else torch.ones_like(ratio)  # (B, T) r_t in the weight, or 1
        pos, neg = adv > 0, adv < 0  # (B, T)

        if cfg.clipping:
            clipped_pos = pos & (ratio > 1 + cfg.eps_high)  # (B, T)
            clipped_neg = neg & (ratio < 1 - cfg.eps_low)  # (B, T)
            clipped = clipped_pos | clipped_neg  # (B, T) M_t == 0
        else:
            clipped = clipped_pos = clipped_neg = torch.zeros_like(mask)  # (B, T)

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
        stats = _token_stats(mask, pos, neg, clipped, clipped_pos, clipped_neg, weight, truncated, log_ratio, ratio,
                             is_ratio if train_infer_kl else None)  # fmt: skip
    return loss_mat, stats


_MEAN_KEYS = ("is_weight_mean", "staleness_log_ratio_abs_mean", "staleness_kl_k3")
_KL_KEYS = ("train_infer_kl_k1", "train_infer_kl_k3")
_FRAC_KEYS = ("is_truncated_frac", "clip_frac", "clip_frac_pos_adv", "clip_frac_neg_adv")
_MAX_KEYS = ("is_weight_max", "staleness_log_ratio_abs_max")


def _token_stats(
    mask: torch.Tensor,  # (B, T) bool
    pos: torch.Tensor,  # (B, T) bool, A > 0
    neg: torch.Tensor,  # (B, T) bool, A < 0
    clipped: torch.Tensor,  # (B, T) bool, M_t == 0 (never on padding: r_t = 1 there)
    clipped_pos: torch.Tensor,  # (B, T) bool, M_t == 0 and A > 0
    clipped_neg: torch.Tensor,  # (B, T) bool, M_t == 0 and A < 0
    weight: torch.Tensor,  # (B, T) w_t
    truncated: torch.Tensor,  # (B, T) bool, the cap binds
    log_ratio: torch.Tensor,  # (B, T) log r_t, 0 on padding
    ratio: torch.Tensor,  # (B, T) r_t
    rho: torch.Tensor | None,  # (B, T) pi_old / mu_old for the train-inference KL, or None for no KL
) -> PackedStats:
    """The loss's diagnostics over response tokens in a fixed handful of ops: the per-token values are written
    straight into the rows of one (rows, B, T) buffer, whose product with the 0/1 mask gives every masked sum and
    whose first two rows (>= 0, and 0 on padding) give the maxima; the token flags are stacked, masked and counted
    in one sum. Each statistic equals its own masked mean (up to the summation order), in ``weight``'s dtype
    (promoted with ``rho``'s), with token counts rounded to that dtype as a masked sum in it would be."""
    dtype = weight.dtype if rho is None else torch.promote_types(weight.dtype, rho.dtype)
    values = torch.empty((3 if rho is None else 5, *mask.shape), dtype=dtype, device=weight.device)  # (rows, B, T)
    torch.mul(weight, mask, out=values[0])  # w_t, 0 on padding
    torch.abs(log_ratio, out=values[1])  # |log r_t|, 0 on padding
    torch.sub(ratio, 1, out=values[2]).sub_(log_ratio)  # r_t - 1 - log r_t (k3 of the staleness KL)
    if rho is not None:
        train_infer_kl_terms(rho, mask, out=(values[3], values[4]))  # -log rho_t, rho_t - 1 - log rho_t
    sums = values.view(values.shape[0], -1) @ mask.reshape(-1).to(dtype)  # (rows,) masked sums
    flags = torch.stack([mask, pos, neg, truncated, clipped, clipped_pos, clipped_neg]) & mask  # (7, B, T)
    counts = flags.view(torch.uint8).view(7, -1).sum(dim=1, dtype=torch.int32).to(dtype)  # (7,) exact, then rounded
    per = counts[:3].clamp_min(1)  # (3,) denominators; an empty set gives 0
    stats = torch.cat(
        [
            torch.cat([sums, counts[3:5]]) / per[0],  # masked means, then the truncated and clipped fractions
            counts[5:7] / per[1:],  # clipped share of the A > 0 and of the A < 0 tokens
            values[:2].view(2, -1).amax(dim=1),  # maxima of values >= 0 that are 0 on padding (0 if no token)
        ]
    )
    return PackedStats(_MEAN_KEYS + (() if rho is None else _KL_KEYS) + _FRAC_KEYS + _MAX_KEYS, stats)
