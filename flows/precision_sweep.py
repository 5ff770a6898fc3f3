"""Measure the train-inference gap under each rollout precision (native, bf16, fp8) with real verl runs.

    python -m flows.precision_sweep init_run=<sft run id> [--arms=none,R2,R3] [RL flow overrides ...]

Runs the RL flow (:func:`flows.rl.rl_flow`) once per precision and routing arm from the SFT run ``init_run``,
over a local store (``store.root``, default ``./artifacts``), and prints a markdown table of verl's mismatch
metrics and the routing mismatch between vLLM and the training engine (mean over steps), read from each run's
metrics in the store, also written to ``<workdir>/precision_sweep.md``. Arms: ``none`` (MiniRL off-policy, no
replay, vLLM routes fetched for the metric), ``R2`` and ``R3`` (recipes minirl_r2 / minirl_r3).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

from flows.rl import rl_flow
from stable_verl.artifacts import RunLayout
from stable_verl.config.params import RLFlowParams
from stable_verl.core.precision import PRECISIONS

ARMS = {  # routing arm -> (recipe, recipe overrides)
    "none": ("minirl_offpolicy", ["rollout_routes=true"]),
    "R2": ("minirl_r2", []),
    "R3": ("minirl_r3", []),
}
COLUMNS = {
    "routing/mismatch_rate": "routing mismatch (vLLM vs train router)",
    "routing/mismatch_rate_replayed": "routes used by training != vLLM",
    "rollout_corr/kl": "KL(mu_old||pi_old) k1",
    "rollout_corr/k3_kl": "KL k3",
    "training/rollout_probs_diff_max": "max |p_vllm - p_fsdp|",
    "training/rollout_probs_diff_mean": "mean |p_vllm - p_fsdp|",
}


def _cell(rows: list[dict], key: str) -> str:
    values = [abs(r[key]) for r in rows if key in r]
    return f"{statistics.fmean(values):.2e}" if values else "-"


def sweep(params: RLFlowParams, precisions: tuple[str, ...] = PRECISIONS, arms: tuple[str, ...] = ("none",)) -> str:
    if params.init_run is None:
        raise ValueError("init_run is required: the SFT run (in store.root) every arm starts from")
    if params.store.root is not None and "://" in params.store.root:
        raise ValueError(f"store.root must be a local folder for the sweep, got {params.store.root}")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown routing arm(s) {unknown}; choose from {list(ARMS)}")
    store = params.store.open()
    header = "| rollout precision | routing replay | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 2) + "|"]
    for precision in precisions:
        for arm in arms:
            recipe, recipe_overrides = ARMS[arm]
            rl = dataclasses.replace(
                params.rl, rollout_precision=precision, recipe=recipe, recipe_overrides=recipe_overrides
            )
            result = rl_flow(RLFlowParams(**{**dict(params), "rl": rl}))
            rows = RunLayout(store, result["run_id"]).read_metrics()
            lines.append(f"| {precision} | {arm} | " + " | ".join(_cell(rows, key) for key in COLUMNS) + " |")
    table = "\n".join(lines)
    work = Path(params.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "precision_sweep.md").write_text(table + "\n")
    return table


def main(argv: list[str]) -> int:
    arms = next((a.split("=", 1)[1] for a in argv if a.startswith("--arms=")), "none")
    argv = [a for a in argv if not a.startswith("--arms=")]
    try:
        print(sweep(RLFlowParams.from_config(None, argv), arms=tuple(arms.split(","))))
    except ValueError as e:
        print(f"precision_sweep: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
