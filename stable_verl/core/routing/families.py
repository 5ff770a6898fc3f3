"""MoE families routing replay knows: where their routers live and how each turns logits into gate weights.

In transformers 5.x every supported sparse-MoE block calls ``self.gate(hidden_states)``, a router module whose
forward returns ``(router_logits, top_k_weights, top_k_indices)``; the experts consume
``experts(hidden_states, top_k_indices, top_k_weights)``. Replay swaps only the *selection*: the indices come from
the recorded tensor while the weights are recomputed live from the router exactly as the native forward would
(same scoring function, same renormalisation, same scaling, same dtype), gathered at the replayed indices. So the
router weight keeps receiving gradient through the gate weights.

Each family supplies a ``replay_gate(router, hidden_states, indices) -> (logits, weights, indices)`` function that
mirrors the native ``router.forward`` line for line, minus the top-k.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

RouterOutput = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor
]  # logits (tokens, E), weights (tokens, k), ids (tokens, k)
ReplayGate = Callable[[nn.Module, torch.Tensor, torch.Tensor], RouterOutput]


def _softmax_gate(router: nn.Module, hidden_states: torch.Tensor, indices: torch.Tensor) -> RouterOutput:
    """Qwen2-MoE / Qwen3-MoE / OLMoE: softmax (fp32) -> gather -> renorm iff ``norm_topk_prob`` -> logits dtype."""
    hidden_states = hidden_states.reshape(-1, router.hidden_dim)  # (tokens, H)
    logits = F.linear(hidden_states, router.weight)  # (tokens, E)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float)  # (tokens, E)
    weights = probs.gather(1, indices)  # (tokens, k)
    if router.norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)  # (tokens, k)
    return logits, weights.to(logits.dtype), indices


def _mixtral_gate(router: nn.Module, hidden_states: torch.Tensor, indices: torch.Tensor) -> RouterOutput:
    """Mixtral: softmax of fp32 logits -> gather -> always renormalised; weights stay fp32 (as natively)."""
    hidden_states = hidden_states.reshape(-1, router.hidden_dim)  # (tokens, H)
    logits = F.linear(hidden_states, router.weight)  # (tokens, E)
    probs = torch.softmax(logits.float(), dim=-1)  # (tokens, E)
    weights = probs.gather(1, indices)  # (tokens, k)
    weights = weights / weights.sum(dim=-1, keepdim=True)  # (tokens, k)
    return logits, weights, indices


def _deepseek_v3_gate(router: nn.Module, hidden_states: torch.Tensor, indices: torch.Tensor) -> RouterOutput:
    """DeepSeek-V3: fp32 sigmoid scores gathered (the selection bias and group limit only pick, never weigh)."""
    hidden_states = hidden_states.view(-1, router.hidden_dim)  # (tokens, H)
    logits = F.linear(hidden_states.type(torch.float32), router.weight.type(torch.float32))  # (tokens, E)
    weights = logits.sigmoid().gather(1, indices)  # (tokens, k)
    if router.norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)  # (tokens, k)
    return logits, weights * router.routed_scaling_factor, indices


@dataclass(frozen=True)
class RouterFamily:
    """One MoE family: the ``config.model_type`` values, the router class names and the replay gate function."""

    name: str
    model_types: tuple[str, ...]
    router_classes: tuple[str, ...]
    replay_gate: ReplayGate


FAMILIES: tuple[RouterFamily, ...] = (
    RouterFamily("qwen3_moe", ("qwen3_moe",), ("Qwen3MoeTopKRouter",), _softmax_gate),
    RouterFamily("qwen2_moe", ("qwen2_moe",), ("Qwen2MoeTopKRouter",), _softmax_gate),
    RouterFamily("olmoe", ("olmoe",), ("OlmoeTopKRouter",), _softmax_gate),
    RouterFamily("mixtral", ("mixtral",), ("MixtralTopKRouter",), _mixtral_gate),
    RouterFamily("deepseek_v3", ("deepseek_v3",), ("DeepseekV3TopkRouter",), _deepseek_v3_gate),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for fam in FAMILIES for t in fam.model_types)

_BY_MODEL_TYPE = {t: fam for fam in FAMILIES for t in fam.model_types}
_BY_ROUTER_CLASS = {c: fam for fam in FAMILIES for c in fam.router_classes}
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")
_MOE_CONFIG_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


def _supported() -> str:
    return ", ".join(SUPPORTED_MODEL_TYPES)


def _no_routers_error(what: str) -> ValueError:
    return ValueError(f"{what}: model has no MoE routers; routing replay needs a MoE model (supported: {_supported()})")


def config_is_moe(config: dict) -> bool:
    """Whether a ``config.json`` (as a dict) declares more than one expert."""
    return any((config.get(key) or 0) > 1 for key in _MOE_CONFIG_KEYS)


def _looks_like_moe(model: nn.Module) -> bool:
    """Heuristic for the error message only: does an unsupported model look like a MoE at all?"""
    config = getattr(model, "config", None)
    if any((getattr(config, key, 0) or 0) > 1 for key in _MOE_CONFIG_KEYS):
        return True
    return any("router" in type(m).__name__.lower() or "moe" in type(m).__name__.lower() for m in model.modules())


def resolve_family(model: nn.Module) -> RouterFamily:
    """The family of ``model``: by ``model.config.model_type``, else (a bare MoE block) by its router class."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is not None:
        family = _BY_MODEL_TYPE.get(model_type)
        if family is not None:
            return family
        if _looks_like_moe(model):
            raise ValueError(
                f"routing replay does not support MoE model_type {model_type!r}; supported model types: {_supported()}"
            )
        raise _no_routers_error(f"model_type {model_type!r}")
    for module in model.modules():
        family = _BY_ROUTER_CLASS.get(type(module).__name__)
        if family is not None:
            return family
    raise _no_routers_error(type(model).__name__)


def find_routers(model: nn.Module, family: RouterFamily) -> list[tuple[int, str, nn.Module]]:
    """``(absolute decoder-layer index, module name, router)`` for every router of ``family``, in layer order.

    The index is parsed from the module path (``...layers.<i>.mlp.gate``); routers outside a ``layers`` list
    (a bare block) are numbered in module order.
    """
    found: list[tuple[int, str, nn.Module]] = []
    for name, module in model.named_modules():
        if type(module).__name__ in family.router_classes:
            match = _LAYER_RE.search(name)
            found.append((int(match.group(1)) if match else len(found), name, module))
    if not found:
        raise _no_routers_error(f"{type(model).__name__} ({family.name})")
    found.sort(key=lambda item: item[0])
    layers = [layer for layer, _, _ in found]
    if len(set(layers)) != len(layers):
        raise ValueError(f"routing replay: two routers share a decoder layer index: {layers}")
    return found
