"""Tiny Qwen3-MoE / dense Qwen3 models built locally and saved as ordinary HF directories.

Sizes are chosen for the CPU stack, not for quality:
* hidden 128 with 2 heads of head_dim 64 (vLLM's CPU attention kernel rejects head_dim 16);
* 8 experts, top-2, softmax router with renormalised top-k (Qwen3-MoE semantics);
* a dense counterpart with the same attention and a comparable MLP width.
Everything is deterministic given the seed (weights are drawn after ``torch.manual_seed``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

from stable_verl.models.spec import TinyModelSpec

__all__ = ["TinyModelSpec", "build_config"]


def build_config(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase) -> Qwen3Config | Qwen3MoeConfig:
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        dtype="float32",
    )
    if spec.kind == "dense":
        return Qwen3Config(intermediate_size=spec.dense_intermediate_size, **common)
    return Qwen3MoeConfig(
        intermediate_size=spec.dense_intermediate_size,
        moe_intermediate_size=spec.moe_intermediate_size,
        num_experts=spec.num_experts,
        num_experts_per_tok=spec.top_k,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        router_aux_loss_coef=0.0,
        **common,
    )


def build_model(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> torch.nn.Module:
    """Instantiate a randomly initialised tiny model; identical weights for identical (spec, seed)."""
    config = build_config(spec, tokenizer)
    torch.manual_seed(seed)
    cls = Qwen3MoeForCausalLM if spec.kind == "moe" else Qwen3ForCausalLM
    model = cls(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_tiny_model(
    out_dir: str | Path, spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int = 0
) -> Path:
    """Build the model and write it, with its tokenizer, as a HF directory (safetensors)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(spec, tokenizer, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
