"""The sampling settings of an evaluation (:mod:`.eval.worker` samples with them), free of pandas and torch: flow
parameters hold them and are validated before the heavy imports."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass


@dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class EvalSettings:
    """Sampling settings of an evaluation: what results.json records and what a stored result must match.

    The flows' ``eval`` parameters (``params.EvalParams``) are these plus what to evaluate."""

    k: int = Field(32, ge=1)
    """Samples per prompt (the paper reports avg@32)."""
    temperature: float = Field(1.0, ge=0)
    """Sampling temperature."""
    max_tokens: int = Field(48, ge=1)
    """Response budget in tokens."""
    seed: int = 0
    """Evaluation seed; each sample's own vLLM seed is derived from it (:func:`sample_seed`)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """vLLM's weights/activations dtype. 'auto': float32 for the built-in tiny model, bfloat16 for your own model
    (resolved before evaluating: results.json records the dtype used, and a stored result is reused only at it)."""


@dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class EvalEngine:
    """How the evaluation's vLLM engine is laid out: operational (no run id, no stored result depends on it)."""

    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs the model is sharded over (vLLM ``tensor_parallel_size``)."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """Share of each GPU's memory vLLM may take (None: 0.2, the tiny model's; a real model wants ~0.85)."""
    max_model_len: int | None = Field(None, ge=1)
    """Longest prompt + response in tokens (None: the model's own limit)."""
