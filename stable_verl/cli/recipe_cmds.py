"""``stable-verl recipes list | show NAME``: the RL recipes of ``configs/recipes/`` and the verl overrides each
compiles to (:mod:`stable_verl.config.recipes`)."""

from __future__ import annotations

import argparse
import dataclasses

from rich.table import Table
from rich.text import Text

from stable_verl.cli.tables import console
from stable_verl.config.recipes import available_recipes, load_recipe


def cmd_recipes_list(args: argparse.Namespace) -> int:
    table = Table(title="recipes (configs/recipes/)")
    for column in ("name", "loss", "aggregation", "N", "replay", "description"):
        table.add_column(column, overflow="fold")
    for name in available_recipes():
        r = load_recipe(name)
        table.add_row(name, r.loss_mode, r.loss_agg_mode, str(r.minibatches), r.routing_replay, r.description)
    console.print(table)
    return 0


def cmd_recipes_show(args: argparse.Namespace) -> int:
    """The recipe's settings (overrides applied) and the verl Hydra overrides it compiles to."""
    recipe = load_recipe(args.name, list(args.overrides))
    console.print(Text(f"# {recipe.name}: {recipe.description}", style="bold"))
    for field in dataclasses.fields(recipe):
        if field.name not in ("name", "description"):
            console.print(Text(f"{field.name}: {getattr(recipe, field.name)}"))
    console.print(Text("# verl overrides", style="bold"))
    for override in recipe.overrides():
        console.print(Text(override), soft_wrap=True)
    return 0


def add_recipe_commands(sub: argparse._SubParsersAction) -> None:
    recipes = sub.add_parser("recipes", help="the RL recipes and the verl overrides each compiles to")
    recipes_sub = recipes.add_subparsers(dest="recipes_command", required=True)
    recipes_sub.add_parser("list", help="table of recipes").set_defaults(func=cmd_recipes_list)
    show = recipes_sub.add_parser("show", help="one recipe's settings and its verl overrides")
    show.add_argument("name", help="recipe name (the file stem in configs/recipes/)")
    show.add_argument("overrides", nargs="*", help="recipe overrides, e.g. eps_high=0.28")
    show.set_defaults(func=cmd_recipes_show)
