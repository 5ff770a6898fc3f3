"""RL flow: verl main_ppo with a stable-verl recipe and vLLM rollouts, from an SFT run's checkpoint.

python -m flows.rl init_run=<sft run id> rl.recipe=minirl rl.total_steps=3 [key=value ...]
"""

from __future__ import annotations

if __name__ == "__main__":  # bad input fails in about a second: checked before Prefect, torch and verl are imported
    from flows._main import check_or_exit

    check_or_exit("flows.rl")

import sys

from prefect import flow

from flows.tasks import kill_verl, preflight, rl_stage
from stable_verl.config.params import RLFlowParams


@flow(name="rl", on_cancellation=[kill_verl], on_crashed=[kill_verl])
def rl_flow(params: RLFlowParams) -> dict:
    """verl RL: checkpoints synced to the store as saved; a killed run resumes from the last one when rerun."""
    preflight(params)
    return rl_stage(params)


if __name__ == "__main__":
    from flows._main import run_flow_main

    sys.exit(run_flow_main("flows.rl"))
