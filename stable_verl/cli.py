"""``stable-verl``: run pipelines and print the exact verl commands they would run.

    stable-verl smoke [key=value ...]        tiny MoE -> verl SFT -> verl GRPO (vLLM), as a Prefect flow
    stable-verl smoke --no-prefect ...       the same stages without Prefect
    stable-verl plan smoke [key=value ...]   print the verl command lines, run nothing

Bad input exits with status 2 and one line on stderr; a failed verl run exits with 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stable_verl.pipeline.config import SmokeConfig, load_config
from stable_verl.pipeline.runner import VerlRunError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
console = Console(stderr=False, highlight=False)


def _smoke_config(args: argparse.Namespace) -> SmokeConfig:
    return load_config(SmokeConfig, args.config, args.overrides)


def cmd_smoke(args: argparse.Namespace) -> int:
    cfg = _smoke_config(args)
    if args.no_prefect:
        from stable_verl.pipeline.smoke import run_smoke

        report = run_smoke(cfg, echo=console.print)
    else:
        from flows.smoke import smoke_flow

        report = smoke_flow(config_path=str(args.config), overrides=list(args.overrides))
    print_report(report.as_dict())
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from stable_verl.pipeline import verl_command

    cfg = _smoke_config(args)
    work = Path(cfg.workdir).resolve()
    sft_model = work / "sft" / "checkpoints" / f"global_step_{cfg.sft.steps}" / "huggingface"
    data = work / "data"
    sft = verl_command.sft_argv(
        cfg.sft,
        work / "models" / f"tiny-{cfg.model.kind}",
        data / f"sft_{cfg.sft.teacher}_train.parquet",
        data / f"sft_{cfg.sft.teacher}_val.parquet",
        work / "sft" / "checkpoints",
        cfg.seed,
    )
    rl = verl_command.ppo_overrides(
        cfg.rl, sft_model, data / "rl_train.parquet", data / "rl_val.parquet", work / "rl" / "checkpoints"
    )
    console.print("# SFT", style="bold")
    console.print(" \\\n  ".join(sft), soft_wrap=True)
    console.print("# RL", style="bold")
    console.print(" \\\n  ".join(verl_command.ppo_argv(rl)), soft_wrap=True)
    return 0


def print_report(report: dict) -> None:
    table = Table(title="smoke run")
    table.add_column("metric")
    table.add_column("value", overflow="fold")
    for key, value in report.items():
        if isinstance(value, list):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, str(value))
    console.print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stable-verl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    smoke = sub.add_parser("smoke", help="tiny MoE -> verl SFT -> verl GRPO with vLLM rollouts")
    smoke.add_argument("--config", type=Path, default=CONFIG_DIR / "smoke.yaml", help="YAML config")
    smoke.add_argument("--no-prefect", action="store_true", help="run the stages without Prefect")
    smoke.add_argument("overrides", nargs="*", help="config overrides, e.g. rl.total_steps=5")
    smoke.set_defaults(func=cmd_smoke)

    plan = sub.add_parser("plan", help="print the verl commands a pipeline would run")
    plan.add_argument("pipeline", choices=["smoke"])
    plan.add_argument("--config", type=Path, default=CONFIG_DIR / "smoke.yaml", help="YAML config")
    plan.add_argument("overrides", nargs="*", help="config overrides")
    plan.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"stable-verl: error: {e}", file=sys.stderr)
        return 2
    except VerlRunError as e:
        print(f"stable-verl: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
