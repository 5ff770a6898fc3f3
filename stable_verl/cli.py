"""``stable-verl``: run pipelines, print the exact verl commands they would run, browse the artifact store.

    stable-verl smoke [key=value ...]           tiny MoE -> verl SFT -> verl GRPO (vLLM), as a Prefect flow
    stable-verl smoke --no-prefect ...          the same stages without Prefect
    stable-verl plan smoke [key=value ...]      print the verl command lines, run nothing
    stable-verl run FLOW [--config PATH] [key=value ...]
                                                run one Prefect flow: sft | rl | evaluate | coldstart |
                                                stability-grid
    stable-verl runs list [--kind sft|rl|eval]  runs in the store (status, step, latest complete checkpoint)
    stable-verl runs show RUN_ID                run.json, config, checkpoints, last metrics, evals, folder
    stable-verl comparisons list|show ID        cross-run comparison reports
    stable-verl comparisons publish ID [--out docs/results]
                                                a finished stability grid as docs/results/stability-grid.md
    stable-verl site build|presign ...          static HTML pages of the store (stable_verl.pipeline.site)

The store is ``$STABLE_VERL_ARTIFACT_ROOT`` (``./artifacts`` when unset; S3 endpoint from
``$STABLE_VERL_S3_ENDPOINT`` / ``$AWS_ENDPOINT_URL``, credentials from the usual AWS chain); ``--store URI``
overrides it. Nothing printed contains a credential. Bad input exits with status 2 and one line on
stderr; a failed verl run, an unreadable store or a flow module that cannot be imported exits with 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from stable_verl.artifacts import ArtifactStoreError
from stable_verl.artifacts.redact import env_secrets, redact, scrub
from stable_verl.pipeline.config import SmokeConfig, load_config
from stable_verl.pipeline.runner import VerlRunError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
console = Console(stderr=False, highlight=False, emoji=False)
#: Width used when stdout is not a terminal (pipes, CI logs), so ids and URIs are not folded.
PIPE_WIDTH = 240


class FlowImportError(RuntimeError):
    """A flow module or its parameter model could not be imported."""


@dataclass(frozen=True)
class FlowSpec:
    """Where ``stable-verl run <name>`` finds a flow and the pydantic model of its parameters."""

    module: str
    function: str
    params: str
    """Class name in :mod:`stable_verl.pipeline.params` with ``from_config(path, overrides)``."""


#: ``stable-verl run <name>`` -> flow. The same entrypoints are deployed by prefect.yaml.
FLOWS: dict[str, FlowSpec] = {
    "sft": FlowSpec("flows.sft", "sft_flow", "SFTFlowParams"),
    "rl": FlowSpec("flows.rl", "rl_flow", "RLFlowParams"),
    "evaluate": FlowSpec("flows.evaluate", "evaluate_flow", "EvaluateFlowParams"),
    "coldstart": FlowSpec("flows.coldstart", "coldstart_comparison_flow", "ColdstartParams"),
    "stability-grid": FlowSpec("flows.stability_grid", "stability_grid_flow", "StabilityGridParams"),
}
PARAMS_MODULE = "stable_verl.pipeline.params"


# ---------------------------------------------------------------------------------------------- helpers
def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def _cell(value: Any) -> Text:
    return Text(_fmt(value))  # Text: data is never parsed as rich markup


def _frame_table(frame, title: str | None = None, fold: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", min_width=len(title or ""))
    for col in frame.columns:
        table.add_column(str(col), overflow="fold", no_wrap=col not in fold)
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(None if _isna(v) else v) for v in row))
    return table


def _isna(value: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, list | tuple | dict) else False
    except (TypeError, ValueError):
        return False


def _kv_table(items: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, min_width=len(title or ""))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in items.items():
        table.add_row(Text(str(key)), _cell(value))
    return table


def _heading(text: str) -> None:
    console.print(Text(text, style="bold"))


# ------------------------------------------------------------------------------------------------ smoke
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


# -------------------------------------------------------------------------------------------------- run
def _import_attr(module: str, name: str, what: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise FlowImportError(f"cannot import {what} ({module}:{name}): {type(exc).__name__}: {exc}") from exc
    except AttributeError:
        raise FlowImportError(f"cannot import {what}: module {module} has no {name!r}") from None


def cmd_run(args: argparse.Namespace) -> int:
    spec = FLOWS[args.flow]
    # Parameters first: a bad config fails in milliseconds, before Prefect and the flow module load.
    params_cls = _import_attr(PARAMS_MODULE, spec.params, f"the parameters of flow {args.flow!r}")
    params = params_cls.from_config(str(args.config) if args.config else None, list(args.overrides))
    flow = _import_attr(spec.module, spec.function, f"flow {args.flow!r}")
    result = flow(params)
    _print_result(args.flow, result)
    return 0


def _print_result(name: str, result: Any) -> None:
    if result is None:
        return
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    elif hasattr(result, "as_dict"):
        result = result.as_dict()
    result = redact(result, secrets=env_secrets())
    if not isinstance(result, Mapping):
        console.print(Text(_fmt(result)))
        return
    import pandas as pd

    def is_rows(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(r, Mapping) for r in v)

    console.print(_kv_table({k: v for k, v in result.items() if not is_rows(v)}, title=f"{name} flow"))
    for key, value in result.items():
        if is_rows(value):  # e.g. evaluate's score rows: a table of their own
            console.print(_frame_table(pd.DataFrame.from_records(value), title=key))


# --------------------------------------------------------------------------------------- store browsing
def _store(args: argparse.Namespace):
    from stable_verl import browse

    return browse.open_store(args.store)


def cmd_runs_list(args: argparse.Namespace) -> int:
    from stable_verl import browse

    store = _store(args)
    frame = browse.runs_frame(store, args.kind)
    where = browse.describe_store(store)
    if frame.empty:
        kind = f"{args.kind} " if args.kind else ""
        console.print(Text(f"no {kind}runs in {where}"))
        return 0
    console.print(_frame_table(frame, title=f"runs in {where}", fold=("upstream",)))
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    import yaml

    from stable_verl import browse

    store = _store(args)
    info = browse.run_details(store, args.run_id)
    _heading(f"run {info['run_id']}")
    console.print(Text(f"folder: {info['uri']}"))
    if info["run"] is None:
        console.print(Text("run.json: missing or unreadable (the run never got going, or it is being written)"))
    else:
        console.print(_kv_table(info["run"], title="run.json"))
    if info["config"] is not None:
        _heading("config.yaml")
        text = info["config"] if isinstance(info["config"], str) else yaml.safe_dump(info["config"], sort_keys=False)
        console.print(Text(text.rstrip()), soft_wrap=True)
    if info["command"]:
        overrides = info["command"].get("overrides") or []
        _heading(f"command.json ({len(overrides)} arguments)")
        for item in overrides:
            console.print(Text(f"  {item}"), soft_wrap=True)
    ckpts = info["checkpoints"]
    if ckpts.empty:
        console.print(Text("checkpoints: none"))
    else:
        done = int(ckpts["complete"].sum())
        title = f"checkpoints ({done} complete, {len(ckpts) - done} incomplete)"
        console.print(_frame_table(ckpts, title=title, fold=("uri",)))
    metrics = info["metrics"]
    if not metrics["rows"]:
        console.print(Text("metrics: none"))
    else:
        shown = metrics["highlights"] or dict(list(metrics["values"].items())[:20])
        title = f"metrics: {metrics['rows']} rows, last step {_fmt(metrics['step'])}"
        console.print(_kv_table(shown, title=title))
    evals, pending = info["evals"], info["evals_incomplete"]
    note = f" ({pending} incomplete, not shown)" if pending else ""
    if evals.empty:
        console.print(Text(f"evaluations: none{note}"))
    else:
        console.print(_frame_table(evals, title=f"evaluations{note}"))
    return 0


def cmd_comparisons_list(args: argparse.Namespace) -> int:
    from stable_verl import browse

    store = _store(args)
    frame = browse.comparisons_frame(store)
    where = browse.describe_store(store)
    if frame.empty:
        console.print(Text(f"no comparisons in {where}"))
        return 0
    console.print(_frame_table(frame, title=f"comparisons in {where}", fold=("uri",)))
    return 0


def cmd_comparisons_show(args: argparse.Namespace) -> int:
    from stable_verl import browse

    store = _store(args)
    info = browse.comparison_details(store, args.comparison_id)
    state = "complete" if info["complete"] else "incomplete: no valid _MANIFEST.json yet, files may be partial"
    _heading(f"comparison {info['comparison_id']} ({state})")
    console.print(Text(f"folder: {info['uri']}"))
    console.print(Text(f"report: {info['report'] or 'missing'}"))
    table = info["table"]
    if table is None:
        console.print(Text("table.csv: missing"))
    elif table.empty:
        console.print(Text("table.csv: empty"))
    else:
        console.print(_frame_table(table, title="table.csv"))
    console.print(Text("plots:" + ("" if info["plots"] else " none")))
    for plot in info["plots"]:
        console.print(Text(f"  {plot}"), soft_wrap=True)
    console.print(Text("runs:" + ("" if info["runs"] else " not recorded")))
    for run in info["runs"]:
        console.print(Text(f"  {run}"), soft_wrap=True)
    for other in info["files"]:
        console.print(Text(f"other: {other}"), soft_wrap=True)
    return 0


def cmd_comparisons_publish(args: argparse.Namespace) -> int:
    from stable_verl.pipeline.grid_page import write_page

    page = write_page(_store(args), args.comparison_id, args.out)
    console.print(Text(f"wrote {page} (+ {page.with_suffix('')}/: plots, table.csv, claims.csv, grid.json)"))
    return 0


# --------------------------------------------------------------------------------------------- argparse
def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URI",
        default=None,
        help="artifact root (local folder or s3://bucket/prefix); default $STABLE_VERL_ARTIFACT_ROOT or ./artifacts",
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``<prog>: error: <what>``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stable-verl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    run = sub.add_parser("run", help="run one Prefect flow (sft, rl, evaluate, coldstart) in this process")
    run.add_argument("flow", choices=list(FLOWS), help="which flow")
    run.add_argument("--config", type=Path, default=None, help="YAML parameters file (default: the flow's own)")
    run.add_argument("overrides", nargs="*", help="parameter overrides, e.g. total_steps=5")
    run.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="browse runs in the artifact store")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list", help="table of runs")
    runs_list.add_argument("--kind", choices=["sft", "rl", "eval"], default=None, help="only runs of this kind")
    _add_store(runs_list)
    runs_list.set_defaults(func=cmd_runs_list)
    runs_show = runs_sub.add_parser("show", help="one run: run.json, config, checkpoints, metrics, evals")
    runs_show.add_argument("run_id")
    _add_store(runs_show)
    runs_show.set_defaults(func=cmd_runs_show)

    comparisons = sub.add_parser("comparisons", help="browse comparison reports in the artifact store")
    cmp_sub = comparisons.add_subparsers(dest="comparisons_command", required=True)
    cmp_list = cmp_sub.add_parser("list", help="table of comparisons")
    _add_store(cmp_list)
    cmp_list.set_defaults(func=cmd_comparisons_list)
    cmp_show = cmp_sub.add_parser("show", help="one comparison: report, table, plots")
    cmp_show.add_argument("comparison_id")
    _add_store(cmp_show)
    cmp_show.set_defaults(func=cmd_comparisons_show)
    cmp_pub = cmp_sub.add_parser("publish", help="a finished stability grid as a results page in the repository")
    cmp_pub.add_argument("comparison_id")
    cmp_pub.add_argument("--out", type=Path, default=Path("docs/results"), help="folder of the page")
    _add_store(cmp_pub)
    cmp_pub.set_defaults(func=cmd_comparisons_publish)

    from stable_verl.pipeline.site.commands import add_site_commands  # site hook: `stable-verl site ...`

    add_site_commands(sub, _add_store)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may also follow options (``run rl --config X a=1``).

    argparse binds a ``nargs="*"`` positional at its first chance, so overrides after an option after
    another positional (``run rl --config X a=1``) come back unrecognised; they are the overrides.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _one_line(exc: BaseException) -> str:
    """The error as one line (pydantic and YAML errors span several), known secrets scrubbed."""
    return scrub(" ".join(str(exc).split()) or type(exc).__name__, env_secrets())


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already reported on one line)
        return e.code if isinstance(e.code, int) else 2
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"stable-verl: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ArtifactStoreError, FlowImportError) as e:
        print(f"stable-verl: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except VerlRunError as e:
        print(f"stable-verl: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
