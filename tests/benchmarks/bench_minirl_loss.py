"""MiniRL loss vs verl's vanilla PPO loss: forward + backward on the same (64 x 4096) tensors.

Both receive the same rollout IS weights and aggregate with the same mode; ours also computes its
diagnostics (under no_grad), as it does in training; both return their metrics as host floats, as verl takes them.

* ``minirl_loss_vs_verl_vanilla``: wall time, ours / vanilla, on this CPU (bound by arithmetic and memory here).
* ``minirl_loss_vs_unpacked``: wall time, ours / the loss as it was before its statistics were packed (issue 28;
  ``minirl_unpacked``, with verl's aggregation and one host float per statistic, as the plugin then did): before
  and after side by side, so a change that slows the loss on CPU shows here.
* ``minirl_loss_ops_vs_verl_vanilla`` / ``minirl_loss_ops_vs_unpacked``: device ops per call (forward + backward +
  metrics; ``common.OpCounter``), the kernel launches a GPU would see. On an H200 the losses are launch-bound at
  64 x 8192 (tests/gpu/run_checks.py), so these are the CPU-side figures for that cost. They are guards, not
  predictors: unpacked, the loss made 89 ops to vanilla's 90 here while the H200 measured 1.62x (it also made 11
  host syncs per call to verl's 3, and 9 dot products); only run_checks.py on a GPU measures the time.
"""

from __future__ import annotations

import torch
import verl  # noqa: F401  (registers minirl)
from verl.trainer.ppo import core_algos

from stable_verl.verl_ext.minirl_loss import MiniRLLossConfig, _minirl_config
from tests.benchmarks.common import Figure, OpCounter, block_ratio
from tests.benchmarks.minirl_unpacked import host_floats, minirl_token_loss_unpacked
from tests.support.verl_actor import actor_config

BS, T = 64, 4096
LOSS_AGG = "seq-mean-token-sum"


def run() -> list[Figure]:
    torch.manual_seed(0)
    old = -torch.rand(BS, T) * 3
    new = (old + 0.05 * torch.randn(BS, T)).requires_grad_()
    adv = torch.randn(BS, 1).expand(BS, T)
    mask = torch.rand(BS, T) < 0.9
    is_ratio = torch.exp(0.1 * torch.randn(BS, T)) * mask
    ours_cfg, vanilla_cfg = actor_config(LOSS_AGG, MiniRLLossConfig(loss_mode="minirl")), actor_config(LOSS_AGG)
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

    unpacked_cfg = _minirl_config(ours_cfg)

    def unpacked() -> None:  # the plugin's body before issue 28
        loss_mat, stats = minirl_token_loss_unpacked(new, old, adv, mask, unpacked_cfg, is_ratio)
        loss = core_algos.agg_loss(
            loss_mat=loss_mat, loss_mask=mask, loss_agg_mode="seq-mean-token-sum", **ours_cfg.global_batch_info
        )
        host_floats(stats)
        loss.backward()
        new.grad = None

    ops = {}
    for name, fn in (("ours", ours), ("theirs", theirs), ("unpacked", unpacked)):
        with OpCounter() as counter:
            fn()
        ops[name] = counter.total
    ratio, spread = block_ratio(ours, theirs, blocks=7, repeats=10)
    before, before_spread = block_ratio(ours, unpacked, blocks=7, repeats=10)
    return [
        Figure("minirl_loss_vs_verl_vanilla", ratio, "<=", 1.10, spread),
        Figure("minirl_loss_vs_unpacked", before, "<=", 1.05, before_spread),
        Figure("minirl_loss_ops_vs_verl_vanilla", ops["ours"] / ops["theirs"], "<=", 1.0),
        Figure("minirl_loss_ops_vs_unpacked", ops["ours"] / ops["unpacked"], "<=", 1.0),
    ]
