"""Training-inference mismatch and entropy diagnostics (pure torch)."""

from __future__ import annotations

import torch

from stable_verl.core.stats import masked_mean

RHO_FLOOR = 1e-30
"""pi_old / mu_old below this is taken as this in the KL estimates (a 0 weight would give log 0 = -inf)."""


def train_infer_kl(
    old_log_prob: torch.Tensor, rollout_log_prob: torch.Tensor, response_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Estimates of KL(mu_old || pi_old) from tokens sampled by mu_old (the inference engine).

    With rho_t = pi_old(y_t) / mu_old(y_t):

        k1 = mean_t(log mu_old - log pi_old) = mean_t(-log rho_t)        (unbiased, can be negative)
        k3 = mean_t(rho_t - 1 - log rho_t)                                (unbiased, >= 0 per token)

    Args:
        old_log_prob: (B, T) log pi_old(y_t), training engine.
        rollout_log_prob: (B, T) log mu_old(y_t), inference engine.
        response_mask: (B, T) bool or 0/1; padding is ignored.

    Returns:
        {"k1": 0-dim tensor, "k3": 0-dim tensor}, masked means over the response tokens.
    """
    mask = response_mask.bool()  # (B, T)
    log_rho = torch.where(mask, old_log_prob - rollout_log_prob, torch.zeros_like(old_log_prob))  # (B, T)
    return {
        "k1": masked_mean(-log_rho, mask),
        "k3": masked_mean(log_rho.exp() - 1 - log_rho, mask),
    }


def train_infer_kl_from_ratio(rho: torch.Tensor, response_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`train_infer_kl` from rho_t = pi_old / mu_old itself (verl's token IS weights, untruncated), in two
    masked dot products: no log-probs rebuilt, no ``exp(log rho)``; it runs on every training micro-batch.

    Args:
        rho: (B, T) pi_old(y_t) / mu_old(y_t), > 0 on response tokens (padding values are never used; a 0 counts as
            1e-30, as :func:`train_infer_kl_terms` does).
        response_mask: (B, T) bool or 0/1.

    Returns:
        {"k1": 0-dim tensor, "k3": 0-dim tensor}, masked means over the response tokens.
    """
    mask = response_mask.bool()  # (B, T)
    k1_terms, k3_terms = train_infer_kl_terms(rho, mask)  # (B, T) each
    m = mask.reshape(-1).to(k1_terms.dtype)  # (N,)
    n = m.sum().clamp_min(1)
    return {"k1": torch.dot(k1_terms.reshape(-1), m) / n, "k3": torch.dot(k3_terms.reshape(-1), m) / n}


def train_infer_kl_terms(
    rho: torch.Tensor, mask: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token terms of the k1 and k3 estimates of KL(mu_old || pi_old): ``-log rho`` and ``rho - 1 - log rho``,
    (B, T) each, 0 on padding (``mask`` (B, T) bool), written into ``out`` if given; rho is taken as at least 1e-30
    (no -inf from a 0 weight). Their masked means are the estimates (:func:`train_infer_kl_from_ratio`; MiniRL's
    packed statistics)."""
    k1_out, k3_out = (None, None) if out is None else out
    rho = torch.where(mask, rho, 1.0).clamp_min_(RHO_FLOOR)  # (B, T) 1 on padding: no NaN/inf leaks from there
    k1_terms = torch.log(rho, out=k1_out).neg_()  # (B, T) -log rho
    k3_terms = torch.sub(rho, 1, out=k3_out).add_(k1_terms)  # (B, T) (rho - 1) - log rho
    return k1_terms, k3_terms


def entropy_from_logits(logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of the full-vocabulary entropy H_t = -sum_v p_t(v) log p_t(v).

    logits: (B, T, V); response_mask: (B, T). Returns a 0-dim tensor. -inf logits (banned tokens) contribute 0.
    """
    log_p = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    finite_log_p = torch.where(log_p > -torch.inf, log_p, torch.zeros_like(log_p))  # (B, T, V) keeps grads finite
    entropy = -(log_p.exp() * finite_log_p).sum(dim=-1)  # (B, T)
    return masked_mean(entropy, response_mask)
