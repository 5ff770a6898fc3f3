"""MiniRL loss vs verl's vanilla PPO loss: forward + backward on the same (64 x 4096) tensors.

Both receive the same rollout IS weights and aggregate with the same mode; ours also computes its
diagnostics (under no_grad), as it does in training.
"""

from __future__ import annotations

import torch
import verl  # noqa: F401  (registers minirl)
from verl.trainer.ppo import core_algos
from verl.workers.config import FSDPActorConfig

from stable_verl.verl_ext.minirl_loss import MiniRLLossConfig
from tests.benchmarks.common import Figure, block_ratio

BS, T = 64, 4096


def _config(policy_loss=None) -> FSDPActorConfig:
    cfg = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode="seq-mean-token-sum",
        clip_ratio_low=0.2,
        clip_ratio_high=0.27,
        **({"policy_loss": policy_loss} if policy_loss else {}),
    )
    cfg.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    return cfg


def run() -> list[Figure]:
    torch.manual_seed(0)
    old = -torch.rand(BS, T) * 3
    new = (old + 0.05 * torch.randn(BS, T)).requires_grad_()
    adv = torch.randn(BS, 1).expand(BS, T)
    mask = torch.rand(BS, T) < 0.9
    is_ratio = torch.exp(0.1 * torch.randn(BS, T)) * mask
    ours_cfg, vanilla_cfg = _config(MiniRLLossConfig(loss_mode="minirl")), _config()
    minirl, vanilla = core_algos.get_policy_loss_fn("minirl"), core_algos.get_policy_loss_fn("vanilla")
    tis = is_ratio.clamp(max=5.0)

    def ours() -> None:
        loss, _ = minirl(
            old_log_prob=old,
            log_prob=new,
            advantages=adv,
            response_mask=mask,
            loss_agg_mode="seq-mean-token-sum",
            config=ours_cfg,
            rollout_is_weights=is_ratio,
        )
        loss.backward()
        new.grad = None

    def theirs() -> None:
        loss, _ = vanilla(
            old_log_prob=old,
            log_prob=new,
            advantages=adv,
            response_mask=mask,
            loss_agg_mode="seq-mean-token-sum",
            config=vanilla_cfg,
            rollout_is_weights=tis,
        )
        loss.backward()
        new.grad = None

    ratio, spread = block_ratio(ours, theirs, blocks=7, repeats=10)
    return [Figure("minirl_loss_vs_verl_vanilla", ratio, "<=", 1.10, spread)]
