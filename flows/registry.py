"""Every flow, declared once: its name, where its function is, its parameters, default config and plan.

``stable-verl run|plan <name>``, ``python -m flows.<module>`` and the deployments in prefect.yaml (checked against
this table by tests/unit/flows/test_prefect_yaml.py) all derive from :data:`FLOWS`. Entries name modules and classes
instead of importing them, so that a bad config fails before Prefect and the flow module load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_verl.config.shipped import config_dir

CONFIG_DIR = config_dir()
PARAMS_MODULE = "stable_verl.config.params"
PLAN_MODULE = "stable_verl.train.plan"


class FlowImportError(RuntimeError):
    """A flow module or its parameter model could not be imported."""


@dataclass(frozen=True)
class FlowSpec:
    """One flow: where its function is, the pydantic model of its parameters, its default config and plan."""

    module: str
    """Module of the flow (``flows.sft``); ``python -m`` runs it."""
    function: str
    """The ``@flow`` function in ``module``."""
    params: str
    """Class name in :mod:`stable_verl.config.params` with ``from_config(path, overrides)``."""
    config: Path | None = None
    """Config file used when none is given (None: the parameters' own defaults)."""
    plan: str | None = None
    """Function in :mod:`stable_verl.train.plan` listing the flow's verl stages (None: it runs no verl stage)."""

    @property
    def entrypoint(self) -> str:
        """The deployment entrypoint (``flows/sft.py:sft_flow``), as prefect.yaml writes it."""
        return f"{self.module.replace('.', '/')}.py:{self.function}"

    def params_class(self, name: str) -> Any:
        return import_attr(PARAMS_MODULE, self.params, f"the parameters of flow {name!r}")

    def flow(self, name: str) -> Callable[[Any], Any]:
        return import_attr(self.module, self.function, f"flow {name!r}")

    def planner(self, name: str) -> Callable[[Any], list]:
        if self.plan is None:
            raise ValueError(f"flow {name!r} runs no verl stage; plan one of {', '.join(plannable())}")
        return import_attr(PLAN_MODULE, self.plan, f"the plan of flow {name!r}")


FLOWS: dict[str, FlowSpec] = {
    "sft": FlowSpec("flows.sft", "sft_flow", "SFTFlowParams", plan="plan_sft_flow"),
    "rl": FlowSpec("flows.rl", "rl_flow", "RLFlowParams", plan="plan_rl_flow"),
    "evaluate": FlowSpec("flows.evaluate", "evaluate_flow", "EvaluateFlowParams"),
    "coldstart": FlowSpec(
        "flows.coldstart",
        "coldstart_comparison_flow",
        "ColdstartParams",
        config=CONFIG_DIR / "coldstart.yaml",
        plan="plan_coldstart",
    ),
    "stability-grid": FlowSpec(
        "flows.stability_grid",
        "stability_grid_flow",
        "StabilityGridParams",
        config=CONFIG_DIR / "stability_grid.yaml",
        plan="plan_stability_grid",
    ),
}


def plannable() -> list[str]:
    """Flows with verl stages to plan."""
    return [name for name, spec in FLOWS.items() if spec.plan is not None]


def by_module(module: str) -> tuple[str, FlowSpec]:
    """The registry entry of the flow defined in ``module`` (``flows.sft``)."""
    return next((name, spec) for name, spec in FLOWS.items() if spec.module == module)


def import_attr(module: str, name: str, what: str) -> Any:
    """``module.name``, or a :class:`FlowImportError` that says what could not be imported."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise FlowImportError(f"cannot import {what} ({module}:{name}): {type(exc).__name__}: {exc}") from exc
    except AttributeError:
        raise FlowImportError(f"cannot import {what}: module {module} has no {name!r}") from None
