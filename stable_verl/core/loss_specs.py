"""The policy losses stable-verl registers with verl, as data: each one's name and what its own settings become in
verl's config. Free of verl and torch, so a recipe compiles to verl overrides without importing them.

:mod:`stable_verl.config.recipes` compiles a recipe with :data:`LOSS_SPECS`; ``stable_verl.verl_ext.registry``
refuses to register a loss whose name or config class this table does not declare, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stable_verl.core.options import MiniRLOptions

UNTRUNCATED = 1.0e9
"""Above verl's SAFETY_BOUND (exp(20) ~ 4.9e8): verl's token TIS then never binds and passes pi_old/mu_old as is
(``verl_ext.minirl_loss``)."""


def _no_needs(block: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class LossSpec:
    """One policy loss: ``actor.policy_loss.loss_mode=<name>``. A loss with settings of its own names the recipe
    field that holds them (``block``, a dataclass) and the verl ``PolicyLossConfig`` subclass that gains its fields
    (``config_class``, selected with ``policy_loss._target_``)."""

    name: str
    """The loss_mode it is registered under."""
    block: str | None = None
    """The recipe field holding the loss's own settings (None: it has none beyond verl's config)."""
    config_class: str | None = None
    """Dotted path of the ``PolicyLossConfig`` subclass whose extra fields are the block's fields."""
    needs: Callable[[Any], list[str]] = _no_needs
    """Other verl overrides the loss needs, given its block."""


def _minirl_needs(options: MiniRLOptions) -> list[str]:
    """verl hands the loss pi_old/mu_old, untruncated (``verl_ext.minirl_loss``), unless the ablation drops it."""
    if not options.train_infer_is:
        return []
    return [
        "algorithm.rollout_correction.rollout_is=token",
        f"algorithm.rollout_correction.rollout_is_threshold={UNTRUNCATED:g}",
    ]


LOSS_SPECS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec("minirl", "minirl", "stable_verl.verl_ext.minirl_loss.MiniRLLossConfig", _minirl_needs),
        LossSpec("cispo_group"),
    )
}
"""Every policy loss stable-verl registers, by name."""
