"""Evaluate flow: avg@k of selected checkpoints of runs in the store, in one vLLM process.

python -m flows.evaluate 'runs=[<run id>, ...]' eval.k=32 eval.steps=all [key=value ...]
"""

from __future__ import annotations

if __name__ == "__main__":  # bad input fails in about a second: checked before Prefect, torch and verl are imported
    from flows._main import check_or_exit

    check_or_exit("flows.evaluate")

import sys

from prefect import flow

from flows.tasks import evaluate_runs, kill_verl, preflight
from stable_verl.config.params import EvaluateFlowParams


@flow(name="evaluate", on_cancellation=[kill_verl], on_crashed=[kill_verl])
def evaluate_flow(params: EvaluateFlowParams) -> dict:
    """Checkpoint evaluation: results and samples under each run's eval/; returns flat score rows."""
    preflight(params)
    return evaluate_runs(params)


if __name__ == "__main__":
    from flows._main import run_flow_main

    sys.exit(run_flow_main("flows.evaluate"))
