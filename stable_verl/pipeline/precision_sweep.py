"""Measure the train-inference gap under each rollout precision (native, bf16, fp8) with real verl runs.

    python -m stable_verl.pipeline.precision_sweep [--arms=none,R2,R3] [smoke overrides ...]

Reuses a finished smoke run's SFT model and data (``workdir``), runs the RL stage once per precision and
routing arm, and prints a markdown table of verl's mismatch metrics and the routing mismatch between vLLM and
the training engine (mean over steps), also written to ``<workdir>/precision_sweep.md``. Arms: ``none`` (MiniRL
off-policy, no replay, vLLM routes fetched for the metric), ``R2`` and ``R3`` (recipes minirl_r2 / minirl_r3).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

from stable_verl.core.precision import PRECISIONS
from stable_verl.pipeline import stages
from stable_verl.pipeline.config import SmokeConfig, load_config

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


def sweep(cfg: SmokeConfig, precisions: tuple[str, ...] = PRECISIONS, arms: tuple[str, ...] = ("none",)) -> str:
    work = Path(cfg.workdir).resolve()
    sft_model = stages.latest_checkpoint(work / "sft" / "checkpoints")
    if sft_model is None:
        raise FileNotFoundError(f"no SFT checkpoint under {work / 'sft'}; run `stable-verl smoke` first")
    data = {p.stem: p for p in (work / "data").glob("*.parquet")}
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown routing arm(s) {unknown}; choose from {list(ARMS)}")
    header = "| rollout precision | routing replay | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 2) + "|"]
    for precision in precisions:
        for arm in arms:
            recipe, recipe_overrides = ARMS[arm]
            rl = dataclasses.replace(
                cfg.rl, rollout_precision=precision, recipe=recipe, recipe_overrides=recipe_overrides
            )
            metrics, _ = stages.run_rl(
                rl,
                sft_model / "huggingface",
                data,
                work / f"precision_{precision}_{arm}",
                on_line=stages.progress_printer(f"rl {precision} {arm}", rl.total_steps),
            )
            rows = stages.read_metrics(metrics)
            lines.append(f"| {precision} | {arm} | " + " | ".join(_cell(rows, key) for key in COLUMNS) + " |")
    table = "\n".join(lines)
    (work / "precision_sweep.md").write_text(table + "\n")
    return table


def main(argv: list[str]) -> int:
    config = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    arms = next((a.split("=", 1)[1] for a in argv if a.startswith("--arms=")), "none")
    argv = [a for a in argv if not a.startswith("--arms=")]
    try:
        print(sweep(load_config(SmokeConfig, config, argv), arms=tuple(arms.split(","))))
    except (ValueError, FileNotFoundError) as e:
        print(f"precision_sweep: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
