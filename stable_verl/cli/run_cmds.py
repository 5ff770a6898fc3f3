"""``stable-verl run`` and ``stable-verl plan``: a flow of :data:`flows.registry.FLOWS`, run or printed."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from flows.registry import FLOWS
from stable_verl.artifacts.redact import env_secrets, redact
from stable_verl.cli.tables import console, fmt, frame_table, kv_table
from stable_verl.tasks.user_task import TaskData, describe
from stable_verl.train.preflight import check_inputs


def _params(args: argparse.Namespace) -> Any:
    """The flow's parameters from ``--config`` (default: the flow's own config) and the overrides."""
    spec = FLOWS[args.flow]
    config = args.config or spec.config
    return spec.params_class(args.flow).from_config(str(config) if config else None, list(args.overrides))


def cmd_run(args: argparse.Namespace) -> int:
    # Parameters first: a bad config fails in milliseconds, before Prefect and the flow module load.
    params = _params(args)
    check_inputs(params)  # the store, the workdir and the input runs: exit 2 before any flow or server starts
    result = FLOWS[args.flow].flow(args.flow)(params)
    _print_result(args.flow, result)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the exact verl command line of every stage the flow would run; builds, runs and reads nothing."""
    planner = FLOWS[args.flow].planner(args.flow)
    params = _params(args)
    if isinstance(getattr(params, "task", None), TaskData):
        console.print(Text("\n".join(describe(params.task)), style="bold"))
    for stage in planner(params):
        console.print(Text(f"# {stage.kind.upper()} {stage.run_id}", style="bold"))
        console.print(Text(" \\\n  ".join(shlex.quote(a) for a in stage.argv)), soft_wrap=True)
    return 0


def _print_result(name: str, result: Any) -> None:
    if result is None:
        return
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    elif hasattr(result, "as_dict"):
        result = result.as_dict()
    result = redact(result, secrets=env_secrets())
    if not isinstance(result, Mapping):
        console.print(Text(fmt(result)))
        return
    import pandas as pd

    def is_rows(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(r, Mapping) for r in v)

    console.print(kv_table({k: v for k, v in result.items() if not is_rows(v)}, title=f"{name} flow"))
    for key, value in result.items():
        if is_rows(value):  # e.g. evaluate's score rows: a table of their own
            console.print(frame_table(pd.DataFrame.from_records(value), title=key))
