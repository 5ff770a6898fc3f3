"""CISPO normalised per prompt group, as Appendix A writes it: ``actor.policy_loss.loss_mode=cispo_group``.

    J = E_x[ (1 / sum_i |y_i|) sum_i sum_t sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_i log pi_theta(y_{i,t}) ]

The expectation is over prompts x, each with its group of G responses {y_i}: every group's token sum is divided
by that group's own token count, then the groups are averaged. verl's built-in ``cispo`` with ``token-mean``
divides by the token count of the whole mini-batch instead, which weights a group by its length.

**How the group token count reaches the loss.** verl hands a policy loss seven per-token tensors and no group
ids, and a group's responses may sit in different micro-batches. So the count is computed once per step, where
the whole batch and verl's ``uid`` are at hand, and carried to the loss as a per-token field:

1. the ``stable_sync`` trainer (``trainer/cispo.py``) writes ``GROUP_TOKENS`` (sum_{j in group(i)} |y_j|, broadcast
   over response i's tokens) into the batch after the advantages;
2. stable-verl's actor worker (``actor_worker.RoutingActorRolloutRefWorker``) wraps verl's ``ppo_loss`` in
   ``with_group_tokens``, which pads the micro-batch's field exactly as ``ppo_loss`` pads ``response_mask`` and
   exposes it while ``ppo_loss`` runs;
3. this registered policy loss reads it (and refuses to run without it).

Aggregation over dp ranks follows verl's ``agg_loss`` convention: each rank returns its local sum times
``dp_size`` divided by the global number of groups in the mini-batch (``global_batch_size / rollout_n``), and
FSDP averages the gradients over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from tensordict import TensorDict
from verl.workers.utils.padding import response_to_nested

from stable_verl.core.cispo import cispo_token_loss, group_token_mean, group_token_totals
from stable_verl.verl_ext.registry import register_policy_loss

LOSS_MODE = "cispo_group"
GROUP_TOKENS = "group_response_tokens"  # batch field: (bs, T) nested, sum of |y_j| over response i's group
LOSS_AGG_MODE = "token-mean"  # the verl mode the recipe must name; verl applies it to entropy/KL terms only

_group_tokens: ContextVar[torch.Tensor | None] = ContextVar("cispo_group_tokens", default=None)


def group_tokens_field(uids: list, response_mask: torch.Tensor) -> torch.Tensor:
    """The ``GROUP_TOKENS`` batch field: (bs, T) nested like ``response_mask``, row i = sum_{j ~ i} |y_j|.

    uids: verl's per-response prompt id (the responses to one prompt share it); response_mask: nested (bs, T).
    """
    mask = torch.nested.to_padded_tensor(response_mask, 0)  # (bs, T_max)
    totals = group_token_totals(uids, mask).float()  # (bs,)
    return response_to_nested(totals[:, None].expand(mask.shape).contiguous(), response_mask)  # (bs, T) nested


def group_tokens_batch(data: TensorDict) -> TensorDict:
    """``{GROUP_TOKENS: ...}`` for the trainer to put into the batch, from the fields it read from TransferQueue:
    ``uid`` (verl's non-tensor prompt ids) and ``response_mask`` (nested). ``uid`` is popped from ``data``."""
    uids = data.pop("uid").tolist()  # a NonTensorStack; data["uid"] would be tensordict's LinkedList
    return TensorDict({GROUP_TOKENS: group_tokens_field(uids, data["response_mask"])}, batch_size=len(uids))


@contextmanager
def group_tokens(tokens: torch.Tensor) -> Iterator[None]:
    """Expose the micro-batch's padded (bs, T) group token counts to ``cispo_group_policy_loss``."""
    reset = _group_tokens.set(tokens)
    try:
        yield
    finally:
        _group_tokens.reset(reset)


def with_group_tokens(model_output: dict, data: TensorDict, dp_group=None, *, inner: Callable) -> Any:
    """verl loss-function signature: run ``inner`` (verl's ``ppo_loss``) with ``GROUP_TOKENS`` exposed."""
    if GROUP_TOKENS not in data.keys():
        raise ValueError(
            f"loss_mode={LOSS_MODE} needs the batch field {GROUP_TOKENS!r}, which the stable_sync trainer writes "
            "(set trainer.v1.trainer_mode=stable_sync, as stable-verl's launcher does)"
        )
    padded = data.select("response_mask", GROUP_TOKENS).to_padded_tensor()  # as ppo_loss pads response_mask
    with group_tokens(padded[GROUP_TOKENS]):
        return inner(model_output=model_output, data=data, dp_group=dp_group)


@register_policy_loss(LOSS_MODE)
def cispo_group_policy_loss(
    old_log_prob: torch.Tensor,  # (bs, T) pi_old
    log_prob: torch.Tensor,  # (bs, T) pi_theta, with grad
    advantages: torch.Tensor,  # (bs, T) A_i = (R_i - mean) / std broadcast over tokens
    response_mask: torch.Tensor,  # (bs, T) bool
    loss_agg_mode: str = LOSS_AGG_MODE,
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,  # (bs, T) verl's rollout-correction weights, if enabled
) -> tuple[torch.Tensor, dict[str, float]]:
    tokens = _group_tokens.get()
    if tokens is None:
        raise ValueError(
            f"loss_mode={LOSS_MODE} found no group token counts: it runs inside stable-verl's actor worker "
            "(trainer.v1.trainer_mode=stable_sync), which provides them"
        )
    if tokens.shape != response_mask.shape:
        raise ValueError(f"group token counts {tuple(tokens.shape)} != the batch's {tuple(response_mask.shape)}")
    if loss_agg_mode != LOSS_AGG_MODE:
        raise ValueError(
            f"loss_mode={LOSS_MODE} normalises per prompt group itself; set loss_agg_mode={LOSS_AGG_MODE} "
            f"(got {loss_agg_mode!r})"
        )
    eps_low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    eps_high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    loss_mat = cispo_token_loss(log_prob, old_log_prob, advantages, response_mask, eps_low, eps_high)  # (bs, T)
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights  # (bs, T), as verl's built-in losses do

    # ---- aggregation: per-group token mean, averaged over the groups of the global mini-batch ----
    info = config.global_batch_info
    dp_size = info.get("dp_size") or 1
    rows = info.get("global_batch_size")  # rows of the global mini-batch (all dp ranks)
    if rows is None:
        if dp_size > 1:
            raise ValueError("global_batch_size is required when dp_size > 1")  # as verl's agg_loss
        rows = response_mask.shape[0]
    num_groups = rows / config.rollout_n
    pg_loss = group_token_mean(loss_mat, response_mask, tokens, num_groups) * dp_size

    with torch.no_grad():
        mask = response_mask.bool()
        log_ratio = torch.where(mask, log_prob - old_log_prob, torch.zeros_like(log_prob))  # (bs, T)
        ratio = log_ratio.exp()
        n = mask.sum().clamp_min(1)
        metrics = {
            "actor/ppo_kl": float(-(log_ratio.sum()) / n),
            # tokens whose IS weight was clipped (either side; CISPO keeps their gradient), and below the range
            "actor/pg_clipfrac": float((((ratio > 1 + eps_high) | (ratio < 1 - eps_low)) & mask).sum() / n),
            "actor/pg_clipfrac_lower": float(((ratio < 1 - eps_low) & mask).sum() / n),
        }
    return pg_loss, metrics
