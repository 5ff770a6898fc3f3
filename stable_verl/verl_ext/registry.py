"""Strict registration into verl's registries: a name taken by a different function raises.

verl's ``register_policy_loss`` silently overwrites an existing name; a typo'd or shadowed loss would
then train with the wrong objective without a trace. These wrappers refuse that, and lookups list the
names that exist. A policy loss must be declared in :data:`stable_verl.core.loss_specs.LOSS_SPECS` (the verl-free
table recipes compile with), with the config class it registers here, so the table and verl cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable

from verl.trainer.ppo import core_algos

from stable_verl.core.loss_specs import LOSS_SPECS

LOSS_CONFIG_CLASSES: dict[str, type | None] = {}
"""The policy losses registered through :func:`register_policy_loss`, with their config class."""


def _dotted(cls: type | None) -> str | None:
    return None if cls is None else f"{cls.__module__}.{cls.__qualname__}"


def _same(a: Callable, b: Callable) -> bool:
    # The same function re-imported (e.g. a plugin loaded twice) is not a conflict.
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_policy_loss(name: str, config_class: type | None = None) -> Callable[[Callable], Callable]:
    """Register ``fn`` as policy loss ``name``, whose own settings (if any) are ``config_class``'s extra fields; both
    must be as :data:`~stable_verl.core.loss_specs.LOSS_SPECS` declares them."""

    def decorator(fn: Callable) -> Callable:
        existing = core_algos.POLICY_LOSS_REGISTRY.get(name)
        if existing is not None and not _same(existing, fn):
            raise ValueError(f"policy loss {name!r} is already registered to {existing.__module__}.{existing.__name__}")
        spec = LOSS_SPECS.get(name)
        if spec is None:
            raise ValueError(f"policy loss {name!r} is not declared in stable_verl.core.loss_specs.LOSS_SPECS")
        if spec.config_class != _dotted(config_class):
            raise ValueError(
                f"policy loss {name!r} registers config class {_dotted(config_class)}, "
                f"but stable_verl.core.loss_specs declares {spec.config_class}"
            )
        LOSS_CONFIG_CLASSES[name] = config_class
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
