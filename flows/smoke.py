"""The smoke flow: tiny MoE -> verl SFT -> verl GRPO with vLLM rollouts, orchestrated by Prefect.

python -m flows.smoke [key=value ...]     (what `make demo` runs for now)
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from stable_verl.pipeline import stages
from stable_verl.pipeline.config import SmokeConfig, load_config
from stable_verl.pipeline.smoke import SmokeReport, summarize

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@task(name="build-assets")
def build_assets(cfg: SmokeConfig) -> stages.Assets:
    return stages.build_assets(Path(cfg.workdir).resolve(), cfg.model, cfg.task, cfg.seed)


@task(name="verl-sft")
def sft(cfg: SmokeConfig, assets: stages.Assets) -> tuple[Path, float]:
    log = get_run_logger()
    out = Path(cfg.workdir).resolve() / "sft"
    model, run = stages.run_sft(
        cfg.sft,
        assets.model_dir,
        assets.data,
        out,
        cfg.seed,
        on_line=stages.progress_printer("sft", cfg.sft.steps, log.info),
    )
    return model, run.seconds


@task(name="verl-rl")
def rl(cfg: SmokeConfig, model: Path, assets: stages.Assets) -> tuple[Path, float]:
    log = get_run_logger()
    out = Path(cfg.workdir).resolve() / "rl"
    metrics, run = stages.run_rl(
        cfg.rl, model, assets.data, out, on_line=stages.progress_printer("rl", cfg.rl.total_steps, log.info)
    )
    return metrics, run.seconds


@flow(name="smoke")
def smoke_flow(config_path: str = str(CONFIG), overrides: list[str] | None = None) -> SmokeReport:
    cfg = load_config(SmokeConfig, config_path, overrides)
    assets = build_assets(cfg)
    model, sft_s = sft(cfg, assets)
    metrics, rl_s = rl(cfg, model, assets)
    report = summarize(metrics, metrics.parent / "checkpoints", model, sft_s, rl_s)
    rows = "\n".join(f"| {k} | {v} |" for k, v in report.as_dict().items())
    create_markdown_artifact(f"| metric | value |\n|---|---|\n{rows}", key="smoke-report")
    return report


if __name__ == "__main__":
    from stable_verl.cli import main

    sys.exit(main(["smoke", *sys.argv[1:]]))
