"""The shape of a tiny model (:mod:`stable_verl.models.tiny` builds it), free of torch and transformers: flow
parameters hold it and are validated before those heavy imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TinyModelSpec:
    """Shape of a tiny model; the defaults are the smallest that vLLM-CPU accepts."""

    kind: str = "moe"
    """'moe' (Qwen3-MoE) or 'dense' (Qwen3)."""
    num_layers: int = 2
    """Decoder layers (2-4 keeps a CPU step around a second)."""
    hidden_size: int = 128
    """Model width."""
    num_heads: int = 2
    """Attention heads; hidden_size == num_heads * head_dim."""
    num_kv_heads: int = 1
    """Grouped-query KV heads."""
    head_dim: int = 64
    """64 is the smallest head_dim the vLLM CPU attention kernel supports."""
    num_experts: int = 8
    """Routed experts per MoE layer."""
    top_k: int = 2
    """Experts per token."""
    moe_intermediate_size: int = 64
    """Width of each expert MLP."""
    dense_intermediate_size: int = 256
    """MLP width of the dense model."""
    max_position_embeddings: int = 512
    """Longest prompt + response the model is built for."""

    def __post_init__(self) -> None:
        if self.kind not in ("moe", "dense"):
            raise ValueError(f"model kind must be 'moe' or 'dense', got {self.kind!r}")
        if self.num_heads * self.head_dim != self.hidden_size:
            raise ValueError(f"num_heads*head_dim must equal hidden_size ({self.num_heads}*{self.head_dim})")
        if not 0 < self.top_k <= self.num_experts:
            raise ValueError(f"top_k must be in 1..num_experts, got {self.top_k}")
