"""Rendering for the command line: values, key-value tables and data frames as rich tables, never as markup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from stable_verl.site.views import fmt

console = Console(stderr=False, highlight=False, emoji=False)
#: Width used when stdout is not a terminal (pipes, CI logs), so ids and URIs are not folded.
PIPE_WIDTH = 240


def cell(value: Any) -> Text:
    return Text(fmt(value))  # Text: data is never parsed as rich markup


def frame_table(frame, title: str | None = None, fold: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", min_width=len(title or ""))
    for col in frame.columns:
        table.add_column(str(col), overflow="fold", no_wrap=col not in fold)
    for row in frame.itertuples(index=False):
        table.add_row(*(cell(None if _isna(v) else v) for v in row))
    return table


def _isna(value: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, list | tuple | dict) else False
    except (TypeError, ValueError):
        return False


def kv_table(items: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, min_width=len(title or ""))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in items.items():
        table.add_row(Text(str(key)), cell(value))
    return table


def heading(text: str) -> None:
    console.print(Text(text, style="bold"))
