"""``python -m flows.<module> [--config path.yaml] [key=value ...]``: parameters from YAML + overrides, run, report.

The flow, its parameters and its default config come from :data:`flows.registry.FLOWS`.

Bad input exits 2 with one line on stderr; a failed stage exits 1 with its (one-line) error. Each flow module calls
:func:`check_or_exit` first when it runs as ``__main__``, before it imports Prefect (and through it torch and verl),
so bad input fails in about a second: this module and the parameters import neither.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from flows.registry import by_module
from stable_verl.artifacts import ArtifactStoreError
from stable_verl.launch.runner import VerlRunError
from stable_verl.train.preflight import check_inputs


def _server_hint(exc: BaseException) -> str | None:
    """One line for Prefect's temporary server not starting in time (a busy machine), naming both ways out."""
    if "ephemeral Prefect API server" not in str(exc):
        return None
    limit = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "?")
    return (
        f"Prefect's temporary server did not start within {limit} s (a busy machine?): raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one (prefect server start) and point "
        "PREFECT_API_URL at it (http://127.0.0.1:4200/api)"
    )


_CHECKED: dict[tuple[str, tuple[str, ...]], Any] = {}  # (module, argv) -> its checked parameters


def checked_params(module: str, argv: list[str] | None = None) -> Any:
    """The flow's parameters from ``argv`` (default: the command line), validated and preflighted (the store, the
    workdir, a cluster's address, the input runs), once per process; None after printing one line on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    key = (module, tuple(argv))
    if key not in _CHECKED:
        name, spec = by_module(module)
        prog = f"python -m {module}"
        parser = argparse.ArgumentParser(prog=prog, description=f"Run the {name!r} flow (flows/registry.py).")
        parser.add_argument("--config", default=str(spec.config) if spec.config else None, help="YAML config")
        parser.add_argument("overrides", nargs="*", help="config overrides, e.g. rl.total_steps=5")
        args = parser.parse_args(argv)
        try:
            params = spec.params_class(name).from_config(args.config, args.overrides)
            check_inputs(params)  # before the flow and its server
        except ValueError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return None
        _CHECKED[key] = params
    return _CHECKED[key]


def check_or_exit(module: str) -> None:
    """Exit 2 unless the command line's parameters are good (one line on stderr); the flow module's first call."""
    if checked_params(module) is None:
        sys.exit(2)


def run_flow_main(module: str, argv: list[str] | None = None, summary: Callable[[dict], str] | None = None) -> int:
    """Parse ``argv``, build the flow's parameters with ``from_config``, run it, print its result (or ``summary``).

    ``module`` is the flow's module (``flows.sft``), which ``python -m`` runs as ``__main__``.
    """
    params = checked_params(module, argv)
    if params is None:
        return 2
    name, spec = by_module(module)
    flow_fn, prog = spec.flow(name), f"python -m {module}"
    try:
        result = flow_fn(params)
    except (VerlRunError, ArtifactStoreError, ValueError, RuntimeError) as e:
        print(f"{prog}: failed: {_server_hint(e) or e}", file=sys.stderr)
        return 1
    print(summary(result) if summary else json.dumps(result, indent=1, default=str))
    return 0
