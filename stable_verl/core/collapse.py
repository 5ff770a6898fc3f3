"""An early collapse WARNING: entropy has fallen and the training-inference KL has spiked at the same step.

Unstable RL runs on LLMs often collapse with the policy entropy falling sharply while the training-inference
mismatch grows; this detector raises one latched warning when both happen together. It is not a verdict: entropy
also halves as a healthy policy learns, and a noisy KL makes a 10x excursion over its running minimum near-certain
in a long run (notes/grid-science.md §1.2; the synthetic suite of tests/unit/core/test_collapse_verdict.py shows it
firing on every healthy 150-step run). Whether a run collapsed is an outcome: ``collapse_verdict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class CollapseDetector:
    """Feed one (entropy, train-inference KL) pair per step to ``update``; ``collapsed`` latches True.

    At a step after the first ``warmup_steps`` updates, collapse is flagged when both

        entropy < (1 - entropy_drop) * (max entropy over all steps so far)
        kl      > kl_spike * max(min KL over the steps after warmup so far, kl_floor)

    The entropy reference includes the warmup steps (the start of training is the reference for a drop); the KL
    reference only uses post-warmup steps, so the first post-warmup step sets it and cannot itself flag a spike.
    The floor keeps a reference of (exactly) 0, which an on-policy fp32 run can log, from turning any later
    positive KL into a "spike". Non-finite values are ignored (they update no reference and flag nothing).

    The state (``state_dict``) is small and JSON-safe: the trainer saves it beside each checkpoint and loads it
    on resume, so neither the latch nor the references reset when a run is restarted.
    """

    entropy_drop: float = 0.5
    """Flag when entropy falls below (1 - entropy_drop) of its maximum so far; in (0, 1)."""
    kl_spike: float = 10.0
    """Flag when the train-inference KL exceeds kl_spike times its post-warmup minimum; > 1."""
    warmup_steps: int = 3
    """Updates before anything can be flagged; >= 0."""
    kl_floor: float = 1e-6
    """Lower bound of the KL reference; a KL below it is float noise (fp32 engines agree to ~1e-12); > 0."""

    _step: int = field(default=0, init=False, repr=False)
    _max_entropy: float = field(default=-math.inf, init=False, repr=False)
    _min_kl: float = field(default=math.inf, init=False, repr=False)
    _collapsed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.entropy_drop < 1:
            raise ValueError(f"entropy_drop must be in (0, 1) (default 0.5), got {self.entropy_drop}")
        if not self.kl_spike > 1:
            raise ValueError(f"kl_spike must be > 1 (default 10), got {self.kl_spike}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0 (default 3), got {self.warmup_steps!r}")
        if not self.kl_floor > 0:
            raise ValueError(f"kl_floor must be > 0 (default 1e-6), got {self.kl_floor}")

    @property
    def collapsed(self) -> bool:
        """True from the first step at which collapse was flagged onwards."""
        return self._collapsed

    def update(self, entropy: float, kl: float) -> bool:
        """Record one step; returns ``collapsed`` (True at the flagging step and every step after)."""
        self._step += 1
        after_warmup = self._step > self.warmup_steps
        entropy_dropped = kl_spiked = False
        if math.isfinite(entropy):
            self._max_entropy = max(self._max_entropy, entropy)
            entropy_dropped = entropy < (1 - self.entropy_drop) * self._max_entropy
        if math.isfinite(kl) and after_warmup:
            # inf reference on the first post-warmup step -> False
            kl_spiked = kl > self.kl_spike * max(self._min_kl, self.kl_floor)
            self._min_kl = min(self._min_kl, kl)
        if after_warmup and entropy_dropped and kl_spiked:
            self._collapsed = True
        return self._collapsed

    def state_dict(self) -> dict[str, int | float | bool | None]:
        """The running state (steps seen, references, latch) as JSON-safe values (an unset reference is None)."""
        return {
            "step": self._step,
            "max_entropy": self._max_entropy if math.isfinite(self._max_entropy) else None,
            "min_kl": self._min_kl if math.isfinite(self._min_kl) else None,
            "collapsed": self._collapsed,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (e.g. on resume from a checkpoint)."""
        missing = {"step", "max_entropy", "min_kl", "collapsed"} - set(state)
        if missing:
            raise ValueError(f"collapse detector state lacks {sorted(missing)}; got {sorted(state)}")
        self._step = int(state["step"])
        self._max_entropy = -math.inf if state["max_entropy"] is None else float(state["max_entropy"])
        self._min_kl = math.inf if state["min_kl"] is None else float(state["min_kl"])
        self._collapsed = bool(state["collapsed"])
