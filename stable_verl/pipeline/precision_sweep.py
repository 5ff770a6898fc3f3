"""Measure the train-inference gap under each rollout precision (native, bf16, fp8) with real verl runs.

    python -m stable_verl.pipeline.precision_sweep [smoke overrides ...]

Reuses a finished smoke run's SFT model and data (``workdir``), runs the RL stage once per precision and
prints a markdown table of verl's own mismatch metrics (mean over steps), also written to
``<workdir>/precision_sweep.md``.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

from stable_verl.core.precision import PRECISIONS
from stable_verl.pipeline import stages
from stable_verl.pipeline.config import SmokeConfig, load_config

COLUMNS = {
    "rollout_corr/kl": "KL(mu_old||pi_old) k1",
    "rollout_corr/k3_kl": "KL k3",
    "training/rollout_probs_diff_max": "max |p_vllm - p_fsdp|",
    "training/rollout_probs_diff_mean": "mean |p_vllm - p_fsdp|",
}


def sweep(cfg: SmokeConfig, precisions: tuple[str, ...] = PRECISIONS) -> str:
    work = Path(cfg.workdir).resolve()
    sft_model = stages.latest_checkpoint(work / "sft" / "checkpoints")
    if sft_model is None:
        raise FileNotFoundError(f"no SFT checkpoint under {work / 'sft'}; run `stable-verl smoke` first")
    data = {p.stem: p for p in (work / "data").glob("*.parquet")}
    lines = ["| rollout precision | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for precision in precisions:
        rl = dataclasses.replace(cfg.rl, rollout_precision=precision)
        metrics, _ = stages.run_rl(
            rl,
            sft_model / "huggingface",
            data,
            work / f"precision_{precision}",
            on_line=stages.progress_printer(f"rl {precision}", rl.total_steps),
        )
        rows = stages.read_metrics(metrics)
        cells = [f"{statistics.fmean(abs(r[key]) for r in rows):.2e}" for key in COLUMNS]
        lines.append(f"| {precision} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (work / "precision_sweep.md").write_text(table + "\n")
    return table


def main(argv: list[str]) -> int:
    config = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    try:
        print(sweep(load_config(SmokeConfig, config, argv)))
    except (ValueError, FileNotFoundError) as e:
        print(f"precision_sweep: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
