"""Strict registration into verl's registries: a name taken by a different function raises.

verl's ``register_policy_loss`` silently overwrites an existing name; a typo'd or shadowed loss would
then train with the wrong objective without a trace. These wrappers refuse that, and lookups list the
names that exist.
"""

from __future__ import annotations

from collections.abc import Callable

from verl.trainer.ppo import core_algos


def _same(a: Callable, b: Callable) -> bool:
    # The same function re-imported (e.g. a plugin loaded twice) is not a conflict.
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_policy_loss(name: str) -> Callable[[Callable], Callable]:
    def decorator(fn: Callable) -> Callable:
        existing = core_algos.POLICY_LOSS_REGISTRY.get(name)
        if existing is not None and not _same(existing, fn):
            raise ValueError(f"policy loss {name!r} is already registered to {existing.__module__}.{existing.__name__}")
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
