"""Strict registration into verl's registries: a name taken by a different function raises.

verl's ``register_policy_loss`` silently overwrites an existing name; a typo'd or shadowed loss would
then train with the wrong objective without a trace. These wrappers refuse that, and lookups list the
names that exist. A loss with settings of its own registers with them (:class:`LossSettings`): what a recipe's
block for it becomes in verl's config, so the recipe compiler knows no loss by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verl.trainer.ppo import core_algos

ACTOR = "actor_rollout_ref.actor"


@dataclass(frozen=True)
class LossSettings:
    """How a policy loss's own settings reach verl: a recipe's block ``block`` fills the fields of ``config_class``
    (a ``PolicyLossConfig`` subclass selected with ``policy_loss._target_``); ``needs(block)`` lists any other verl
    settings the loss needs."""

    block: str
    """The recipe field holding the loss's settings (a dataclass)."""
    config_class: type
    needs: Callable[[Any], list[str]] = lambda block: []

    def overrides(self, block: Any) -> list[str]:
        """The Hydra overrides of ``block``: the config class, then each field in declaration order, then the needs."""
        cls = self.config_class
        out = [f"{ACTOR}.policy_loss._target_={cls.__module__}.{cls.__qualname__}"]
        out += [f"+{ACTOR}.policy_loss.{f.name}={getattr(block, f.name)}" for f in dataclasses.fields(block)]
        return out + self.needs(block)


LOSS_SETTINGS: dict[str, LossSettings] = {}


def loss_settings(name: str) -> LossSettings | None:
    """The settings registered with policy loss ``name`` (None: it has none beyond verl's own config)."""
    return LOSS_SETTINGS.get(name)


def _same(a: Callable, b: Callable) -> bool:
    # The same function re-imported (e.g. a plugin loaded twice) is not a conflict.
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_policy_loss(name: str, settings: LossSettings | None = None) -> Callable[[Callable], Callable]:
    def decorator(fn: Callable) -> Callable:
        existing = core_algos.POLICY_LOSS_REGISTRY.get(name)
        if existing is not None and not _same(existing, fn):
            raise ValueError(f"policy loss {name!r} is already registered to {existing.__module__}.{existing.__name__}")
        if settings is not None:
            LOSS_SETTINGS[name] = settings
        return core_algos.register_policy_loss(name)(fn)

    return decorator


def register_adv_estimator(name: str) -> Callable[[Callable], Callable]:
    def decorator(fn: Callable) -> Callable:
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if existing is not None and not _same(existing, fn):
            raise ValueError(f"advantage estimator {name!r} is already registered to {existing.__module__}")
        core_algos.ADV_ESTIMATOR_REGISTRY[name] = fn
        return fn

    return decorator


def check_policy_loss(name: str) -> None:
    if name not in core_algos.POLICY_LOSS_REGISTRY:
        raise ValueError(f"unknown policy loss {name!r}; registered: {sorted(core_algos.POLICY_LOSS_REGISTRY)}")


def check_adv_estimator(name: str) -> None:
    if name not in core_algos.ADV_ESTIMATOR_REGISTRY:
        raise ValueError(
            f"unknown advantage estimator {name!r}; registered: {sorted(core_algos.ADV_ESTIMATOR_REGISTRY)}"
        )
