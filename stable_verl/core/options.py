"""The option vocabularies of core's math, free of torch: recipes and flow parameters name them and are validated
before the heavy imports. :mod:`.minirl` and :mod:`.precision` use them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PRECISIONS = ("native", "bf16", "fp8", "int4")
"""Rollout weight precisions of the stress knob (:mod:`.precision`)."""

TRUNCATIONS = ("full", "decoupled")


@dataclass
class MiniRLOptions:
    """MiniRL's own switches (paper §4.1-4.2 and the ablations of §5), declared once: a recipe's ``minirl:`` block,
    and the fields verl's policy-loss config gains for ``loss_mode=minirl`` (``verl_ext.minirl_loss``)."""

    tis_cap: float = 5.0
    """C, the truncation of the token IS weight (paper §4.2, TIS). Recommended: 5. Must be > 0."""
    truncation: str = "full"
    """'full': w = min(pi_theta/mu_old, C), as written in paper Eq. 7 (recommended);
    'decoupled': w = min(pi_old/mu_old, C) * r_t (only the train-inference factor is truncated)."""
    train_infer_is: bool = True
    """Correct the training-inference discrepancy pi_old/mu_old. False is the paper's 'w/o train-infer-IS'
    ablation (the factor is taken as 1). Recommended: True."""
    clipping: bool = True
    """Apply the staleness mask M_t. False is the paper's 'no clipping' ablation (M_t = 1). Recommended: True."""
    staleness_is: bool = True
    """Weight each token by the staleness ratio r_t = pi_theta/pi_old (part of w_t). False takes r_t as 1 in the
    weight: with ``train_infer_is`` and ``clipping`` also False, w_t = 1 and the loss is plain REINFORCE on stale
    samples (the ``pg_stale`` stress baseline, no protection at all). Recommended: True."""

    def __post_init__(self) -> None:
        if not self.tis_cap > 0:
            raise ValueError(f"tis_cap must be > 0 (paper: 5), got {self.tis_cap}")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS} (paper: 'full'), got {self.truncation!r}")
        for name in ("train_infer_is", "clipping", "staleness_is"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool (paper: True), got {value!r}")

    def options(self) -> dict[str, Any]:
        """The switches by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(MiniRLOptions)}

    def with_clip(self, eps_low: float, eps_high: float) -> MiniRLConfig:
        """The loss's full config: these switches and the clip range (a recipe's / verl's eps_low, eps_high)."""
        return MiniRLConfig(**self.options(), eps_low=eps_low, eps_high=eps_high)


@dataclass
class MiniRLConfig(MiniRLOptions):
    """Hyper-parameters of the MiniRL loss (defaults are the paper's recommended values): the switches and the
    clipping range of the staleness mask."""

    eps_low: float = 0.2
    """Lower clipping range: tokens with A < 0 and r_t < 1 - eps_low are masked (paper §4). Recommended: 0.2."""
    eps_high: float = 0.27
    """Upper clipping range: tokens with A > 0 and r_t > 1 + eps_high are masked (paper §4). Recommended: 0.27."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.eps_low < 1:
            raise ValueError(f"eps_low must be in (0, 1) (paper: 0.2), got {self.eps_low}")
        if not self.eps_high > 0:
            raise ValueError(f"eps_high must be > 0 (paper: 0.27), got {self.eps_high}")
