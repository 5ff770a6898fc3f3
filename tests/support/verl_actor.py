"""verl's actor config for calling its policy losses directly (tests and benchmarks)."""

from __future__ import annotations

from verl.workers.config import FSDPActorConfig


def actor_config(loss_agg_mode: str, policy_loss=None, rollout_n: int = 1, **kw) -> FSDPActorConfig:
    """verl's FSDP actor config as a policy loss sees it on one rank (PPO clip 0.2 / 0.27)."""
    cfg = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=rollout_n,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode=loss_agg_mode,
        clip_ratio_low=0.2,
        clip_ratio_high=0.27,
        **({"policy_loss": policy_loss} if policy_loss is not None else {}),
        **kw,
    )
    cfg.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    return cfg
