"""The CLI's views of an artifact store for ``stable-verl runs|comparisons``: DataFrames and plain dicts, shaped from
what the one store reader (:mod:`.store_reader`, shared with the pages) reads, and the cell formatting the terminal
tables and the pages share. Rendering lives in :mod:`stable_verl.cli`.

Every value is redacted by the reader (credential-like keys masked, secret values and ``user:password@`` parts of
URLs scrubbed). Incomplete artifacts are shown for what they are, never trusted: a checkpoint, an evaluation or a
comparison folder counts only once its ``_MANIFEST.json`` (written last) is valid and all its files are there; an
index entry without ``run.json`` is skipped.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from stable_verl.artifacts import ArtifactStore, ComparisonLayout, RunLayout, latest_complete_checkpoint
from stable_verl.artifacts.redact import scrub
from stable_verl.site import store_reader as reader

RUN_KINDS = ("sft", "rl")
RUN_COLUMNS = ["run_id", "kind", "status", "step", "checkpoint", "created_at", "parent"]
COMPARISON_COLUMNS = ["comparison_id", "status", "created_at", "runs", "plots", "uri"]
CHECKPOINT_COLUMNS = ["step", "complete", "files", "size", "uri"]
EVAL_COLUMNS = ["step", "benchmark", "metric", "value", "stderr", "format_rate", "num_prompts"]


def fmt(value: Any) -> str:
    """One cell of a table (terminal or HTML page): '-' for missing, yes/no, 4 significant digits, JSON for nests."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def human_size(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _unknown(what: str, wanted: str, known: list[str], store: ArtifactStore, command: str) -> ValueError:
    close = difflib.get_close_matches(wanted, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; see `stable-verl {command} list`"
    return ValueError(scrub(f"no {what} {wanted!r} in {reader.describe_store(store)}{hint}", store.secrets()))


# ------------------------------------------------------------------------------------------------- runs
def runs_frame(store: ArtifactStore, kind: str | None = None) -> pd.DataFrame:
    """One row per run (oldest first): id, kind, status, latest step, latest *complete* checkpoint, created, parent
    (:func:`~.store_reader.run_records`)."""
    if kind is not None and kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; choose from {', '.join(RUN_KINDS)}")
    rows = [
        {
            "run_id": record.run_id,
            "kind": record.kind,
            "status": record.status,
            "step": record.steps,
            "checkpoint": latest_complete_checkpoint(RunLayout(store, record.run_id)),
            "created_at": record.created_at,
            "parent": record.parent_checkpoint or "",  # empty: an SFT from the base model
        }
        for record in reader.run_records(store, kind)
    ]
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    frame["checkpoint"] = frame["checkpoint"].astype("Int64")
    return reader.clean_frame(store, frame)


def _checkpoints(store: ArtifactStore, data: reader.RunData) -> pd.DataFrame:
    rows = [
        {
            "step": step,
            "complete": folder.complete,
            "files": len(folder.manifest.files) if folder.manifest else None,
            "size": human_size(folder.manifest.total_size) if folder.manifest else None,
            "uri": store.uri(folder.prefix),
        }
        for step, folder in data.checkpoints
    ]
    return pd.DataFrame(rows, columns=CHECKPOINT_COLUMNS)


def _evals(data: reader.RunData) -> tuple[pd.DataFrame, int]:
    """Complete evaluations as a frame, and how many evaluation folders are still incomplete."""
    rows = [
        {
            "step": ev.step,
            "benchmark": ev.benchmark,
            "metric": ev.metric,
            "value": ev.value,
            "stderr": ev.stderr,  # across prompts; absent in older results
            "format_rate": ev.results.get("format_rate"),
            "num_prompts": ev.results.get("num_prompts"),
        }
        for ev in data.evals
        if ev.results is not None
    ]
    frame = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    frame = frame.sort_values(["step", "benchmark"], ignore_index=True) if rows else frame
    return frame, sum(not ev.folder.complete for ev in data.evals)


def run_details(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """Everything ``runs show`` prints about one run; ``ValueError`` for an unknown id.

    Keys: ``run_id``, ``uri`` (the run folder), ``run`` (run.json, or ``None`` if missing/unreadable),
    ``config`` (config.yaml as a dict, or its text if it is not a mapping), ``command`` (command.json),
    ``checkpoints`` and ``evals`` (DataFrames; ``evals_incomplete`` counts evaluation folders without a
    valid manifest), ``metrics`` (:func:`~.store_reader.last_metrics`). All values redacted.
    """
    if not reader.run_exists(store, run_id):
        raise _unknown("run", run_id, store.ls("runs"), store, "runs")
    data = reader.run_data(store, run_id)
    evals, evals_incomplete = _evals(data)
    return {
        "run_id": run_id,
        "uri": RunLayout(store, run_id).uri(),
        "run": data.run,
        "config": data.config,
        "command": data.command,
        "checkpoints": reader.clean_frame(store, _checkpoints(store, data)),
        "metrics": data.summary,
        "evals": reader.clean_frame(store, evals),
        "evals_incomplete": evals_incomplete,
    }


# ------------------------------------------------------------------------------------------ comparisons
def comparisons_frame(store: ArtifactStore) -> pd.DataFrame:
    """One row per comparison folder (oldest first): status (``complete`` once its manifest is valid and
    all files are there), created (the manifest's time), number of runs compared, plots, uri."""
    rows = []
    for cid in reader.comparison_ids(store):
        data = reader.comparison_data(store, cid)
        manifest = data.folder.manifest
        rows.append(
            {
                "comparison_id": cid,
                "status": "complete" if data.folder.complete else "incomplete",
                "created_at": manifest.created_at if manifest is not None else "",
                "runs": len(data.recorded) if manifest is not None else None,
                "plots": len(data.plots()),
                "uri": ComparisonLayout(store, cid).uri(),
            }
        )
    rows.sort(key=lambda r: (r["created_at"] or "~", r["comparison_id"]))
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    frame["runs"] = frame["runs"].astype("Int64")
    return reader.clean_frame(store, frame)


def comparison_details(store: ArtifactStore, comparison_id: str) -> dict[str, Any]:
    """One comparison; ``ValueError`` if unknown. Keys: ``uri``, ``complete`` (valid manifest, all files),
    ``report`` (report.md location or ``None``), ``table`` (table.csv as a DataFrame or ``None``), ``plots``
    (locations), ``runs`` (the compared runs, from the manifest) and ``files`` (other artifacts)."""
    layout = ComparisonLayout(store, comparison_id)
    data = reader.comparison_data(store, comparison_id)
    if not data.objects:
        raise _unknown("comparison", comparison_id, reader.comparison_ids(store), store, "comparisons")
    known = {"report.md", "table.csv", "plots", reader.MANIFEST_NAME}
    return {
        "comparison_id": comparison_id,
        "uri": layout.uri(),
        "complete": data.folder.complete,
        "runs": data.recorded,
        "report": layout.uri(layout.report_md) if "report.md" in data.objects else None,
        "table": data.table,
        "plots": [layout.uri(f"{layout.prefix}/{p}") for p in data.plots()],
        "files": [layout.uri(f"{layout.prefix}/{n}") for n in data.children() if n not in known],
    }
