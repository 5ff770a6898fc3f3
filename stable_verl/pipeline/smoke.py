"""The smoke pipeline: tiny MoE -> verl SFT -> verl GRPO (vLLM rollouts), with a summary of what ran."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from stable_verl.pipeline import stages
from stable_verl.pipeline.config import SmokeConfig


@dataclass(frozen=True)
class SmokeReport:
    """What the smoke run measured; every field comes from verl's own outputs."""

    steps: list[int]
    """Steps present in verl's metrics file."""
    grad_norm: list[float]
    """actor/grad_norm per step."""
    rollout_probs_diff_max: list[float]
    """training/rollout_probs_diff_max per step (vLLM vs FSDP token probs at the same weights)."""
    score_mean: list[float]
    """critic/score/mean per step."""
    step_seconds: list[float]
    """timing_s/step per step (step 1 includes the vLLM/Ray warm-up)."""
    sft_seconds: float
    rl_seconds: float
    sft_model: str
    checkpoint: str | None
    metrics_file: str

    @property
    def warm_step_seconds(self) -> float | None:
        """Median step time after the first (warm-up) step."""
        return statistics.median(self.step_seconds[1:]) if len(self.step_seconds) > 1 else None

    def as_dict(self) -> dict:
        return {**asdict(self), "warm_step_seconds": self.warm_step_seconds}


def summarize(metrics_file: Path, ckpt_root: Path, sft_model: Path, sft_s: float, rl_s: float) -> SmokeReport:
    rows = stages.read_metrics(metrics_file)
    ckpt = stages.latest_checkpoint(ckpt_root)
    return SmokeReport(
        steps=[r["step"] for r in rows],
        grad_norm=[r["actor/grad_norm"] for r in rows],
        rollout_probs_diff_max=[r["training/rollout_probs_diff_max"] for r in rows],
        score_mean=[r["critic/score/mean"] for r in rows],
        step_seconds=[r["timing_s/step"] for r in rows],
        sft_seconds=sft_s,
        rl_seconds=rl_s,
        sft_model=str(sft_model),
        checkpoint=str(ckpt) if ckpt else None,
        metrics_file=str(metrics_file),
    )


def run_smoke(cfg: SmokeConfig, echo: Callable[[str], None] = print) -> SmokeReport:
    """Run every stage in ``cfg.workdir`` and return the measured summary; raises on any failure."""
    workdir = Path(cfg.workdir).resolve()
    echo(f"[smoke] building tiny {cfg.model.kind} model, tokenizer and task data in {workdir}")
    assets = stages.build_assets(workdir, cfg.model, cfg.task, cfg.seed)
    echo(f"[smoke] verl SFT ({cfg.sft.steps} steps, teacher={cfg.sft.teacher})")
    sft_model, sft_run = stages.run_sft(
        cfg.sft,
        assets.model_dir,
        assets.data,
        workdir / "sft",
        cfg.seed,
        on_line=stages.progress_printer("sft", cfg.sft.steps, echo),
    )
    echo(f"[smoke] verl main_ppo, recipe {cfg.rl.recipe}, vLLM rollouts ({cfg.rl.total_steps} steps)")
    metrics, rl_run = stages.run_rl(
        cfg.rl, sft_model, assets.data, workdir / "rl", on_line=stages.progress_printer("rl", cfg.rl.total_steps, echo)
    )
    return summarize(metrics, workdir / "rl" / "checkpoints", sft_model, sft_run.seconds, rl_run.seconds)
