"""SFT flow: verl SFT of the base model on one teacher's solutions, tracked in the artifact store.

python -m flows.sft [--config path.yaml] sft.teacher=terse sft_seed=1 [key=value ...]
"""

from __future__ import annotations

if __name__ == "__main__":  # bad input fails in about a second: checked before Prefect, torch and verl are imported
    from flows._main import check_or_exit

    check_or_exit("flows.sft")

import sys

from prefect import flow

from flows.tasks import kill_verl, preflight, sft_stage
from stable_verl.config.params import SFTFlowParams


@flow(name="sft", on_cancellation=[kill_verl], on_crashed=[kill_verl])
def sft_flow(params: SFTFlowParams) -> dict:
    """verl SFT (cold start): skipped if complete in the store, resumed from its last checkpoint if killed."""
    preflight(params)
    return sft_stage(params)


if __name__ == "__main__":
    from flows._main import run_flow_main

    sys.exit(run_flow_main("flows.sft"))
