"""The sampling settings of an evaluation (:mod:`.eval.worker` samples with them), free of pandas and torch: flow
parameters hold them and are validated before the heavy imports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
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

    def resolved(self, run_configs: Iterable[dict | None]) -> EvalSettings:
        """These settings with dtype 'auto' made concrete for the runs of ``run_configs`` (their config.yaml, None
        where absent): float32 when every run trained the built-in tiny model (its ``model`` has no ``path``),
        bfloat16 when one trained your own model (one engine: the larger model's)."""
        if self.dtype != "auto":
            return self
        models = [(config or {}).get("model") for config in run_configs]
        own = any(isinstance(model, dict) and bool(model.get("path")) for model in models)
        return dataclasses.replace(self, dtype="bfloat16" if own else "float32")

    def recorded_in(self, results: dict) -> bool:
        """Whether a checkpoint's results.json was sampled with these settings (results from before ``eval.dtype``
        record none: they were float32)."""
        return {"dtype": "float32", **(results.get("settings") or {})} == dataclasses.asdict(self)


def score_row(run_id: str, step: int, benchmark: str, results: dict, metric: str) -> dict:
    """One flat score row (what the evaluate flow returns and the reports read) from a checkpoint's results.json:
    the score ``metric`` (``avg@k``), its standard error ``<metric>_stderr``, the format rate."""
    stderr = f"{metric}_stderr"
    return {
        "run_id": run_id,
        "step": step,
        "benchmark": benchmark,
        metric: results[metric],
        stderr: results[stderr],
        "format_rate": results["format_rate"],
    }


@dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class EvalEngine:
    """How the evaluation's vLLM engine is laid out: operational (no run id, no stored result depends on it)."""

    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs the model is sharded over (vLLM ``tensor_parallel_size``)."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """Share of each GPU's memory vLLM may take (None: 0.2, the tiny model's; a real model wants ~0.85)."""
    max_model_len: int | None = Field(None, ge=1)
    """Longest prompt + response in tokens (None: the model's own limit)."""
