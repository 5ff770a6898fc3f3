"""The MiniRL loss as it computed its statistics before issue 28 (stable-verl 3c945f3), frozen to measure against:
one masked dot product, division and host float per statistic, and the train-inference KL in two more.

Pure torch (the GPU checks run it where verl is not installed). Same loss and same statistics as
``stable_verl.core.minirl.minirl_token_loss_packed(..., train_infer_kl=True)`` (tests/unit/core/test_minirl.py checks
the statistics against their formulas); only the way the statistics are reduced and read differs.
"""

from __future__ import annotations

import torch

from stable_verl.core.minirl import MiniRLConfig


def minirl_token_loss_unpacked(
    log_prob: torch.Tensor,  # (B, T)
    old_log_prob: torch.Tensor,  # (B, T)
    advantages: torch.Tensor,  # (B, T)
    response_mask: torch.Tensor,  # (B, T)
    cfg: MiniRLConfig,
    is_ratio: torch.Tensor | None = None,  # (B, T) pi_old / mu_old
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss_mat (B, T), stats)``: 0-dim statistics, the train-inference KL (``is_ratio`` given) included."""
    mask = response_mask.bool()
    with torch.no_grad():
        log_ratio = torch.where(mask, log_prob.detach() - old_log_prob, 0.0)
        ratio = log_ratio.exp()
        adv = advantages.detach().to(log_prob.dtype)
        stale = ratio if cfg.staleness_is else torch.ones_like(ratio)
        if cfg.clipping:
            clipped = ((adv > 0) & (ratio > 1 + cfg.eps_high)) | ((adv < 0) & (ratio < 1 - cfg.eps_low))
        else:
            clipped = torch.zeros_like(mask)
        if cfg.train_infer_is and is_ratio is not None:
            factor = torch.where(mask, is_ratio.detach().to(log_prob.dtype), 1.0)
        else:
            factor = None
        if cfg.truncation == "full":
            raw = stale if factor is None else factor * stale
            weight = raw.clamp(max=cfg.tis_cap)
            truncated = raw > cfg.tis_cap
        else:
            capped = 1.0 if factor is None else factor.clamp(max=cfg.tis_cap)
            weight = stale * capped
            truncated = torch.zeros_like(mask) if factor is None else factor > cfg.tis_cap
        coef = torch.where(mask & ~clipped, weight * adv, 0.0)

    loss_mat = torch.where(mask, -coef * log_prob, 0.0)

    with torch.no_grad():
        dtype = weight.dtype
        m = mask.reshape(-1).to(dtype)
        pos = (adv > 0).reshape(-1).to(dtype) * m
        neg = (adv < 0).reshape(-1).to(dtype) * m
        clip = clipped.reshape(-1).to(dtype)
        abs_log_ratio = log_ratio.abs()
        n_tokens = m.sum().clamp_min(1)

        def mean(x: torch.Tensor, over: torch.Tensor = m, count: torch.Tensor = n_tokens) -> torch.Tensor:
            return torch.dot(x.reshape(-1), over) / count

        stats = {
            "is_weight_mean": mean(weight),
            "is_weight_max": (weight.reshape(-1) * m).max(),
            "is_truncated_frac": mean(truncated.to(dtype)),
            "clip_frac": mean(clip),
            "clip_frac_pos_adv": mean(clip, pos, pos.sum().clamp_min(1)),
            "clip_frac_neg_adv": mean(clip, neg, neg.sum().clamp_min(1)),
            "staleness_log_ratio_abs_mean": mean(abs_log_ratio),
            "staleness_log_ratio_abs_max": abs_log_ratio.max(),
            "staleness_kl_k3": mean(ratio - 1 - log_ratio),
        }
        if is_ratio is not None:
            rho = torch.where(mask, is_ratio.clamp_min(1e-30), 1.0)
            log_rho = rho.log()
            m = mask.reshape(-1).to(rho.dtype)
            n = m.sum().clamp_min(1)
            stats["train_infer_kl_k1"] = -torch.dot(log_rho.reshape(-1), m) / n
            stats["train_infer_kl_k3"] = torch.dot((rho - 1 - log_rho).reshape(-1), m) / n
    return loss_mat, stats


def host_floats(stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """The statistics on the host as the plugin read them then: one ``float()`` (one sync) each."""
    return {key: float(value) for key, value in stats.items()}
