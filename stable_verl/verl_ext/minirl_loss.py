"""MiniRL as a verl policy loss: ``actor.policy_loss.loss_mode=minirl``.

    J = E_{y~mu_old}[ sum_t M_t * sg(min(w_t, C)) * A(x, y) * log pi_theta(y_t) ]       (paper Eq. 7, §4)

**How mu_old reaches the loss.** verl 0.9.1 passes a policy loss ``rollout_is_weights`` but not the
rollout log-probs. The MiniRL recipes therefore turn on verl's own rollout correction at token level
with a threshold above verl's safety clamp (``algorithm.rollout_correction.rollout_is=token``,
``rollout_is_threshold=UNTRUNCATED``, :mod:`stable_verl.core.loss_specs`): verl computes
``exp(old_log_prob - rollout_log_probs)`` on the driver, i.e. exactly pi_old/mu_old per token, detached and
*not* truncated, and hands it to this loss.
The loss then applies MiniRL's own cap in either reading (``truncation=full``: min(pi_theta/mu_old, C);
``decoupled``: min(pi_old/mu_old, C) * r_t). No trainer or worker code is replaced.

The MiniRL switches are :class:`stable_verl.core.minirl.MiniRLOptions`, declared once; ``MiniRLLossConfig`` adds
them to verl's ``PolicyLossConfig`` (selected with ``actor.policy_loss._target_``); eps_low/eps_high are verl's
``clip_ratio_low``/``clip_ratio_high``. What a recipe's ``minirl:`` block and the rollout-correction pass-through
compile to is declared, free of verl, in :data:`stable_verl.core.loss_specs.LOSS_SPECS`; the registration below
checks that it names this config class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss
from verl.workers.config import PolicyLossConfig

from stable_verl.core.loss_specs import UNTRUNCATED
from stable_verl.core.metric_keys import TRAIN_INFER_KL_K1, TRAIN_INFER_KL_K3
from stable_verl.core.minirl import MiniRLConfig, MiniRLOptions, minirl_token_loss_packed
from stable_verl.verl_ext.registry import register_policy_loss

# Metric keys. verl's reduce_metrics picks the reduction across mini-batches from the key's *name*: a key
# containing "max" is maxed, one containing "min" is minimised (so "actor/minirl/..." would report the
# minimum over mini-batches). These names avoid both substrings except where that reduction is meant.
METRIC_KEYS = {
    "is_weight_mean": "actor/tis/weight_mean",
    "is_weight_max": "actor/tis/weight_max",
    "is_truncated_frac": "actor/tis/truncated_frac",
    "clip_frac": "actor/clip/frac",
    "clip_frac_pos_adv": "actor/clip/frac_pos_adv",
    "clip_frac_neg_adv": "actor/clip/frac_neg_adv",
    "staleness_log_ratio_abs_mean": "actor/staleness/abs_log_ratio_mean",
    "staleness_log_ratio_abs_max": "actor/staleness/abs_log_ratio_max",
    "staleness_kl_k3": "actor/staleness/kl_k3",
    "train_infer_kl_k1": TRAIN_INFER_KL_K1,
    "train_infer_kl_k3": TRAIN_INFER_KL_K3,
}


@dataclass
class MiniRLLossConfig(PolicyLossConfig, MiniRLOptions):
    """verl's policy-loss config (``actor_rollout_ref.actor.policy_loss``) plus the MiniRL switches, validated by
    :class:`~stable_verl.core.minirl.MiniRLOptions`."""


def _minirl_config(config: Any) -> MiniRLConfig:
    if not isinstance(config.policy_loss, MiniRLLossConfig):
        raise ValueError(
            "loss_mode=minirl needs actor_rollout_ref.actor.policy_loss._target_="
            f"{MiniRLLossConfig.__module__}.{MiniRLLossConfig.__name__} (use a stable-verl recipe)"
        )
    return config.policy_loss.with_clip(eps_low=config.clip_ratio_low, eps_high=config.clip_ratio_high)


@register_policy_loss("minirl", MiniRLLossConfig)
def minirl_policy_loss(
    old_log_prob: torch.Tensor,  # (bs, T) pi_old, training engine, before this step's updates
    log_prob: torch.Tensor,  # (bs, T) pi_theta, live forward with grad
    advantages: torch.Tensor,  # (bs, T) A(x, y) broadcast over tokens
    response_mask: torch.Tensor,  # (bs, T) bool
    loss_agg_mode: str = "seq-mean-token-sum",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,  # (bs, T) pi_old/mu_old, untruncated (see module doc)
) -> tuple[torch.Tensor, dict[str, float]]:
    cfg = _minirl_config(config)
    if cfg.train_infer_is and rollout_is_weights is None:
        raise ValueError(
            "MiniRL needs pi_old/mu_old: set algorithm.rollout_correction.rollout_is=token and "
            f"rollout_is_threshold={UNTRUNCATED:g} (stable-verl's MiniRL recipes do), or train_infer_is=False"
        )
    loss_mat, stats = minirl_token_loss_packed(
        log_prob, old_log_prob, advantages, response_mask, cfg, rollout_is_weights,
        train_infer_kl=rollout_is_weights is not None,  # KL(mu_old || pi_old) from w = pi_old / mu_old
    )  # fmt: skip
    pg_loss = agg_loss(
        loss_mat=loss_mat, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )
    return pg_loss, {METRIC_KEYS[key]: value for key, value in stats.floats().items()}  # one host sync
