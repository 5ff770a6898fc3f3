"""``stable-verl``: run pipelines, print the exact verl commands they would run, browse the artifact store.

    stable-verl run FLOW [--config PATH] [key=value ...]
                                                run one Prefect flow: sft | rl | evaluate | coldstart |
                                                stability-grid (flows/registry.py)
    stable-verl plan FLOW [--config PATH] [key=value ...]
                                                print the exact verl command lines of the flow's stages;
                                                builds, runs and reads nothing: sft | rl | coldstart |
                                                stability-grid
    stable-verl runs list [--kind sft|rl]       runs in the store (status, step, latest complete checkpoint)
    stable-verl runs show RUN_ID                run.json, config, checkpoints, last metrics, evals, folder
    stable-verl comparisons list|show ID        cross-run comparison reports
    stable-verl comparisons publish ID [--out docs/results]
                                                a finished stability grid as docs/results/stability-grid.md
    stable-verl comparisons from-record --config PATH RUN_ID [...] [--set key=value ...]
                                                a stability grid's report from a run record
                                                (pilot_page --export: configs, metrics, evaluations)
    stable-verl comparisons republish FOLDER [--out docs/results]
                                                re-judge a published grid page from its own CSV under the
                                                current rules (no store, no runs)
    stable-verl site build|presign ...          static HTML pages of the store (stable_verl.site)
    stable-verl recipes list | show NAME [key=value ...]
                                                the RL recipes, and the verl overrides one compiles to
    stable-verl cp NAME DEST                    copy a shipped config out (coldstart, recipes/minirl, ...)

The store is ``$STABLE_VERL_ARTIFACT_ROOT`` (``./artifacts`` when unset; S3 endpoint from
``$STABLE_VERL_S3_ENDPOINT`` / ``$AWS_ENDPOINT_URL``, credentials from the usual AWS chain); ``--store URI``
overrides it. Nothing printed contains a credential. Bad input exits with status 2 and one line on
stderr; a failed verl run, an unreadable store or a flow module that cannot be imported exits with 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flows.registry import FLOWS, FlowImportError, plannable
from stable_verl.artifacts import ArtifactStoreError
from stable_verl.artifacts.redact import env_secrets, scrub
from stable_verl.cli.browse_cmds import (
    cmd_comparisons_from_record,
    cmd_comparisons_list,
    cmd_comparisons_publish,
    cmd_comparisons_republish,
    cmd_comparisons_show,
    cmd_runs_list,
    cmd_runs_show,
)
from stable_verl.cli.run_cmds import cmd_plan, cmd_run
from stable_verl.cli.tables import PIPE_WIDTH, console
from stable_verl.launch.runner import VerlRunError


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


def _store_command(subparsers, name: str, help_text: str, func, *positionals: str) -> argparse.ArgumentParser:
    """A store-browsing subcommand: its positionals, ``--store`` and the function that runs it."""
    command = subparsers.add_parser(name, help=help_text)
    for positional in positionals:
        command.add_argument(positional)
    _add_store(command)
    command.set_defaults(func=func)
    return command


class _FlowHelp(argparse.Action):
    """``-h``: the command's help; after a flow name, also every parameter of that flow with its meaning."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        flow = getattr(namespace, "flow", None)
        if flow is not None:
            from stable_verl.config.param_help import help_text

            spec, cls = FLOWS[flow], FLOWS[flow].params_class(flow)
            values = cls.from_config(str(spec.config), []).model_dump(mode="json") if spec.config else None
            config = f"defaults as {spec.config.name} sets them" if spec.config else "no default config"
            print(f"\nparameters of {flow!r} (key=value overrides, or keys of a --config YAML; {config}):")
            print(help_text(cls, values))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stable-verl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    for name, flows, func, help_text in (
        ("run", list(FLOWS), cmd_run, "run one Prefect flow (sft, rl, evaluate, coldstart) in this process"),
        ("plan", plannable(), cmd_plan, "print the exact verl command lines of a flow's stages, run nothing"),
    ):
        command = sub.add_parser(name, help=help_text, add_help=False)
        command.add_argument("-h", "--help", action=_FlowHelp, help="this help; after FLOW: every parameter of it")
        command.add_argument("flow", choices=flows, help="which flow")
        command.add_argument("--config", type=Path, default=None, help="YAML parameters file (default: the flow's own)")
        command.add_argument("overrides", nargs="*", help="parameter overrides, e.g. rl.total_steps=5")
        command.set_defaults(func=func)

    runs = sub.add_parser("runs", help="browse runs in the artifact store")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = _store_command(runs_sub, "list", "table of runs", cmd_runs_list)
    runs_list.add_argument("--kind", choices=["sft", "rl"], default=None, help="only runs of this kind")
    _store_command(runs_sub, "show", "one run: run.json, config, checkpoints, metrics, evals", cmd_runs_show, "run_id")

    comparisons = sub.add_parser("comparisons", help="browse comparison reports in the artifact store")
    cmp_sub = comparisons.add_subparsers(dest="comparisons_command", required=True)
    _store_command(cmp_sub, "list", "table of comparisons", cmd_comparisons_list)
    _store_command(cmp_sub, "show", "one comparison: report, table, plots", cmd_comparisons_show, "comparison_id")
    publish = "a finished stability grid as a results page in the repository"
    cmp_pub = _store_command(cmp_sub, "publish", publish, cmd_comparisons_publish, "comparison_id")
    cmp_pub.add_argument("--out", type=Path, default=Path("docs/results"), help="folder of the page")
    from_record = "a stability grid's comparison report from a run record (pilot_page --export): no checkpoints"
    cmp_rec = _store_command(cmp_sub, "from-record", from_record, cmd_comparisons_from_record)
    cmp_rec.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="the grid cells' runs in the record")
    cmp_rec.add_argument(
        "--config", type=Path, required=True, help="the grid's YAML, e.g. configs/stability_stress.yaml"
    )
    cmp_rec.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeat)")
    republish = "re-judge a published stability-grid page from its own table.csv and grid.json (no store, no runs)"
    cmp_rep = cmp_sub.add_parser("republish", help=republish)
    cmp_rep.add_argument("folder", type=Path, help="the page's data folder, e.g. docs/results/stability-grid")
    cmp_rep.add_argument("--out", type=Path, default=Path("docs/results"), help="folder of the page")
    cmp_rep.set_defaults(func=cmd_comparisons_republish)

    from stable_verl.cli.config_cmds import add_config_commands
    from stable_verl.cli.recipe_cmds import add_recipe_commands
    from stable_verl.site.commands import add_site_commands  # site hook: `stable-verl site ...`

    add_recipe_commands(sub)
    add_config_commands(sub)

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
