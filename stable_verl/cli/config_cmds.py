"""``stable-verl cp NAME DEST``: copy a shipped config (:mod:`stable_verl.config.shipped`) out to edit it."""

from __future__ import annotations

import argparse
from pathlib import Path

from stable_verl.config.shipped import copy_config, shipped_configs


def cmd_cp(args: argparse.Namespace) -> int:
    target = copy_config(args.name, args.dest)
    print(f"{args.name} -> {target}")
    return 0


def add_config_commands(sub: argparse._SubParsersAction) -> None:
    names = ", ".join(shipped_configs())
    cp = sub.add_parser(
        "cp",
        help="copy a shipped config out to edit (stable-verl cp coldstart my.yaml; run with --config my.yaml)",
        description=f"Copy a shipped config to DEST. Names: {names}.",
    )
    cp.add_argument("name", help="coldstart, stability_grid, recipes/minirl, gpu/olmoe_1b_7b, ...")
    cp.add_argument("dest", type=Path, help="file to write, or an existing folder to put it in")
    cp.set_defaults(func=cmd_cp)
