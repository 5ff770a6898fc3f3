"""Tiny Hugging Face MoE models of each router family routing replay supports (random weights, float32, CPU)."""

from __future__ import annotations

import torch
import transformers as tf
from torch import nn

VOCAB = 64
COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=2, num_experts_per_tok=2, intermediate_size=32)

MOE = dict(num_experts=8, decoder_sparse_step=1, mlp_only_layers=[], num_key_value_heads=1, num_hidden_layers=2)
CONFIGS: dict[str, tuple[type[tf.PreTrainedConfig], dict]] = {
    "qwen3_moe": (tf.Qwen3MoeConfig, {**MOE, "head_dim": 32, "moe_intermediate_size": 32, "norm_topk_prob": True}),
    # shared expert + sigmoid shared gate; norm_topk_prob defaults to False
    "qwen2_moe": (tf.Qwen2MoeConfig, {**MOE, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32}),
    "olmoe": (tf.OlmoeConfig, {"num_experts": 8, "num_key_value_heads": 1, "num_hidden_layers": 2}),
    "mixtral": (tf.MixtralConfig, {"num_local_experts": 8, "num_key_value_heads": 1, "num_hidden_layers": 2}),
    # layer 0 dense (first_k_dense_replace=1): the MoE layers are decoder layers 1 and 2
    "deepseek_v3": (
        tf.DeepseekV3Config,
        {
            "num_hidden_layers": 3, "num_key_value_heads": 2, "n_routed_experts": 8, "n_group": 2, "topk_group": 1,
            "first_k_dense_replace": 1, "moe_intermediate_size": 32, "kv_lora_rank": 16, "q_lora_rank": None,
            "qk_rope_head_dim": 8, "qk_nope_head_dim": 16, "v_head_dim": 16, "n_shared_experts": 1,
        },
    ),
}  # fmt: skip
FAMILIES = list(CONFIGS)


def config(family: str, **overrides) -> tf.PreTrainedConfig:
    cls, kwargs = CONFIGS[family]
    return cls(**{**COMMON, **kwargs, **overrides})


def build(family: str, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config(family, **overrides)).float().eval()
    if family == "deepseek_v3":  # a selection-only bias, so picking and weighing differ as in the real model
        for router in routers(model):
            router.e_score_correction_bias.copy_(0.1 * torch.randn_like(router.e_score_correction_bias))
    return model


def routers(model: nn.Module) -> list[nn.Module]:
    return [layer.mlp.gate for layer in model.model.layers if hasattr(layer.mlp, "experts")]


def perturb_routers(model: nn.Module, scale: float = 1.0) -> None:
    with torch.no_grad():
        for router in routers(model):
            router.weight.add_(scale * torch.randn_like(router.weight))
