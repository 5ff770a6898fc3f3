"""The sampling settings of an evaluation (:mod:`.eval_worker` samples with them), free of pandas and torch: flow
parameters hold them and are validated before the heavy imports."""

from __future__ import annotations

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
