"""Read-only views of an artifact store for ``stable-verl runs|comparisons``: plain dicts and DataFrames.

Everything here reads through :class:`~stable_verl.artifacts.ArtifactStore` and returns values that are
safe to print: credential-like keys are masked, known secret values (the store's options and the AWS/HF
environment) and ``user:password@`` parts of URLs are scrubbed. Rendering lives in :mod:`stable_verl.cli`.

Incomplete artifacts are shown for what they are, never trusted: a checkpoint, an evaluation or a
comparison folder counts only once its ``_MANIFEST.json`` (written last) is valid and all its files are
there; an index entry without ``run.json`` is skipped.
"""

from __future__ import annotations

import difflib
import fnmatch
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from stable_verl.artifacts import (
    MANIFEST_NAME,
    ArtifactStore,
    ArtifactStoreError,
    RunLayout,
    latest_complete_checkpoint,
    list_runs,
    parse_step_dir,
)
from stable_verl.artifacts.layout import ComparisonLayout
from stable_verl.artifacts.redact import redact, redact_url, scrub
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.core.metric_keys import KEY_METRIC_PATTERNS

RUN_KINDS = ("sft", "rl")
RUN_COLUMNS = ["run_id", "kind", "status", "step", "checkpoint", "created_at", "parent"]
COMPARISON_COLUMNS = ["comparison_id", "status", "created_at", "runs", "plots", "uri"]
CHECKPOINT_COLUMNS = ["step", "complete", "files", "size", "uri"]
EVAL_COLUMNS = ["step", "benchmark", "metric", "value", "stderr", "format_rate", "num_prompts"]


# ------------------------------------------------------------------------------------------------ store
def open_store(root: str | None = None) -> ArtifactStore:
    """``ArtifactStore.from_env(root)``; a root that cannot be opened is a one-line ``ValueError``."""
    try:
        return ArtifactStore.from_env(root)
    except ArtifactStoreError as exc:
        raise ValueError(f"cannot open artifact store: {exc}") from None


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


def _secrets(store: ArtifactStore) -> set[str]:
    return store._secrets()  # the store's own credentials and the credential-like environment variables


def clean(store: ArtifactStore, obj: Any) -> Any:
    """``obj`` with credential keys masked and secret values / URL passwords scrubbed (strings too)."""
    return redact(obj, secrets=_secrets(store))


def _clean_frame(store: ArtifactStore, frame: pd.DataFrame) -> pd.DataFrame:
    secrets = _secrets(store)
    out = frame.copy()
    out.columns = [scrub(str(c), secrets) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: scrub(v, secrets) if isinstance(v, str) else v)
    return out


def describe_store(store: ArtifactStore) -> str:
    """``<root uri>`` plus ``(endpoint <url>)`` for custom S3 endpoints, credentials removed."""
    endpoint = f" (endpoint {redact_url(store.endpoint_url)})" if store.endpoint_url else ""
    return scrub(f"{store.uri()}{endpoint}", _secrets(store))


def human_size(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _json_or_none(blob: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(blob) if blob is not None else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------------------------- runs
def runs_frame(store: ArtifactStore, kind: str | None = None) -> pd.DataFrame:
    """One row per run (oldest first): id, kind, status, latest step, latest *complete* checkpoint, created, parent.

    Index entries that are unreadable or have no run.json are skipped (see :func:`list_runs`); the rest
    of the row comes from run.json when it parses, else from the index entry.
    """
    if kind is not None and kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; choose from {', '.join(RUN_KINDS)}")
    entries = list_runs(store, kind)
    records = store.cat_many([RunLayout(store, e["run_id"]).run_json for e in entries])
    rows = []
    for entry in entries:
        layout = RunLayout(store, entry["run_id"])
        record = RunRecord.from_dict(layout.run_id, {**entry, **(_json_or_none(records.get(layout.run_json)) or {})})
        rows.append(
            {
                "run_id": record.run_id,
                "kind": record.kind,
                "status": record.status,
                "step": record.steps,
                "checkpoint": latest_complete_checkpoint(layout),
                "created_at": record.created_at,
                "parent": record.parent_checkpoint or "",  # empty: an SFT from the base model
            }
        )
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    frame["checkpoint"] = frame["checkpoint"].astype("Int64")
    return _clean_frame(store, frame)


def _unknown(what: str, wanted: str, known: list[str], store: ArtifactStore, command: str) -> ValueError:
    close = difflib.get_close_matches(wanted, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; see `stable-verl {command} list`"
    return ValueError(scrub(f"no {what} {wanted!r} in {describe_store(store)}{hint}", _secrets(store)))


def flatten_metrics_row(row: dict[str, Any]) -> dict[str, Any]:
    """verl's file-logger line ``{"step": N, "data": {...}}`` or an already flat row -> ``{"step": N, key: v}``."""
    data = row.get("data")
    if isinstance(data, dict):
        return {"step": row.get("step"), **data}
    return dict(row)


def key_metrics(row: dict[str, Any], patterns: tuple[str, ...] = KEY_METRIC_PATTERNS) -> dict[str, Any]:
    """The keys of ``row`` matching ``patterns``, in pattern order (each key once)."""
    out: dict[str, Any] = {}
    for pattern in patterns:
        for key in sorted(row):
            if key != "step" and key not in out and fnmatch.fnmatchcase(key, pattern):
                out[key] = row[key]
    return out


def last_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of the metrics rows: ``rows`` (count), ``step`` (the last), ``values`` (merged over the rows
    logged at that step: verl logs validation separately) and ``highlights`` (:func:`key_metrics` of them)."""
    flat = [flatten_metrics_row(r) for r in rows]
    steps = [r["step"] for r in flat if isinstance(r.get("step"), int | float)]
    if not flat:
        return {"rows": 0, "step": None, "values": {}, "highlights": {}}
    last_step = max(steps) if steps else None
    merged: dict[str, Any] = {}
    for row in flat:
        if last_step is None or row.get("step") == last_step:
            merged.update(row)
    merged.pop("step", None)
    return {"rows": len(flat), "step": last_step, "values": merged, "highlights": key_metrics(merged)}


def _checkpoints(store: ArtifactStore, layout: RunLayout) -> pd.DataFrame:
    rows = []
    for step in layout.checkpoint_steps(complete_only=False):
        prefix = layout.checkpoint(step)
        manifest = store.read_manifest(prefix)
        complete = manifest is not None and store.is_complete(prefix)
        rows.append(
            {
                "step": step,
                "complete": complete,
                "files": len(manifest.files) if manifest else None,
                "size": human_size(manifest.total_size) if manifest else None,
                "uri": layout.uri(prefix),
            }
        )
    return pd.DataFrame(rows, columns=CHECKPOINT_COLUMNS)


def _score(results: dict[str, Any]) -> tuple[str, Any]:
    """The ``avg@k`` score of an evaluation's results.json (the only score the evaluation writes)."""
    key = next((k for k in sorted(results) if k.startswith("avg@") and not k.endswith("_stderr")), "")
    return key, results.get(key)


def _evals(store: ArtifactStore, layout: RunLayout) -> tuple[pd.DataFrame, int]:
    """Complete evaluations (manifested folders) as a frame, and how many folders are still incomplete."""
    folders = {p.rsplit("/", 1)[0] for p in store.glob(f"{layout.prefix}/eval/global_step_*/*/*")}
    complete = [f for f in sorted(folders) if store.is_complete(f)]
    rows = []
    for path, blob in store.cat_many([f"{f}/results.json" for f in complete]).items():
        step_dir, benchmark = path.split("/")[-3:-1]
        results = _json_or_none(blob)
        step = parse_step_dir(step_dir)
        if results is None or step is None:
            continue
        metric, value = _score(results)
        rows.append(
            {
                "step": step,
                "benchmark": benchmark,
                "metric": metric,
                "value": value,
                "stderr": results.get(f"{metric}_stderr"),  # across prompts; absent in older results
                "format_rate": results.get("format_rate"),
                "num_prompts": results.get("num_prompts"),
            }
        )
    frame = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    frame = frame.sort_values(["step", "benchmark"], ignore_index=True) if rows else frame
    return frame, len(folders) - len(complete)


def _read_optional(store: ArtifactStore, rel: str) -> bytes | None:
    try:
        return store.read_bytes(rel)
    except FileNotFoundError:
        return None


def run_details(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """Everything ``runs show`` prints about one run; ``ValueError`` for an unknown id.

    Keys: ``run_id``, ``uri`` (the run folder), ``run`` (run.json, or ``None`` if missing/unreadable),
    ``config`` (config.yaml as a dict, or its text if it is not a mapping), ``command`` (command.json),
    ``checkpoints`` and ``evals`` (DataFrames; ``evals_incomplete`` counts evaluation folders without a
    valid manifest), ``metrics`` (:func:`last_metrics`). All values redacted.
    """
    layout = RunLayout(store, run_id)
    if not store.ls(layout.prefix) and not store.exists(layout.index_entry):
        raise _unknown("run", run_id, store.ls("runs"), store, "runs")
    run = _json_or_none(_read_optional(store, layout.run_json))
    config: Any = None
    if (blob := _read_optional(store, layout.config_yaml)) is not None:
        try:
            config = yaml.safe_load(blob)
        except yaml.YAMLError:
            config = blob.decode(errors="replace")
    command = _json_or_none(_read_optional(store, layout.command_json))
    evals, evals_incomplete = _evals(store, layout)
    return {
        "run_id": run_id,
        "uri": layout.uri(),
        "run": clean(store, run),
        "config": clean(store, config),
        "command": clean(store, command),
        "checkpoints": _clean_frame(store, _checkpoints(store, layout)),
        "metrics": clean(store, last_metrics(layout.read_metrics())),
        "evals": _clean_frame(store, evals),
        "evals_incomplete": evals_incomplete,
    }


# ------------------------------------------------------------------------------------------ comparisons
def comparison_ids(store: ArtifactStore) -> list[str]:
    """The comparison folders of the store whose names are valid ids."""
    ids = []
    for name in store.ls("comparisons"):
        try:
            ComparisonLayout(store, name)
        except ValueError:
            continue
        ids.append(name)
    return ids


def _comparison_runs(manifest: Any) -> list[str]:
    runs = (manifest.metadata or {}).get("runs") if manifest is not None else None
    return [str(r) for r in runs] if isinstance(runs, list) else []


def comparisons_frame(store: ArtifactStore) -> pd.DataFrame:
    """One row per comparison folder (oldest first): status (``complete`` once its manifest is valid and
    all files are there), created (the manifest's time), number of runs compared, plots, uri."""
    plots = store.glob("comparisons/*/plots/*")
    rows = []
    for cid in comparison_ids(store):
        layout = ComparisonLayout(store, cid)
        manifest = store.read_manifest(layout.prefix)
        rows.append(
            {
                "comparison_id": cid,
                "status": "complete" if manifest is not None and store.is_complete(layout.prefix) else "incomplete",
                "created_at": manifest.created_at if manifest is not None else "",
                "runs": len(_comparison_runs(manifest)) if manifest is not None else None,
                "plots": sum(p.startswith(layout.plots_dir + "/") for p in plots),
                "uri": layout.uri(),
            }
        )
    rows.sort(key=lambda r: (r["created_at"] or "~", r["comparison_id"]))
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    frame["runs"] = frame["runs"].astype("Int64")
    return _clean_frame(store, frame)


def comparison_details(store: ArtifactStore, comparison_id: str) -> dict[str, Any]:
    """One comparison; ``ValueError`` if unknown. Keys: ``uri``, ``complete`` (valid manifest, all files),
    ``report`` (report.md location or ``None``), ``table`` (table.csv as a DataFrame or ``None``), ``plots``
    (locations), ``runs`` (the compared runs, from the manifest) and ``files`` (other artifacts)."""
    layout = ComparisonLayout(store, comparison_id)
    names = store.ls(layout.prefix)
    if not names:
        raise _unknown("comparison", comparison_id, comparison_ids(store), store, "comparisons")
    table = None
    if (blob := _read_optional(store, layout.table_csv)) is not None:
        try:
            table = _clean_frame(store, pd.read_csv(io.BytesIO(blob)))
        except (ValueError, pd.errors.ParserError):  # EmptyDataError is a ValueError
            table = pd.DataFrame()
    plots = [layout.uri(p) for p in store.glob(f"{layout.plots_dir}/*")]
    known = {"report.md", "table.csv", "plots", MANIFEST_NAME}
    manifest = store.read_manifest(layout.prefix)
    return {
        "comparison_id": comparison_id,
        "uri": layout.uri(),
        "complete": manifest is not None and store.is_complete(layout.prefix),
        "runs": clean(store, _comparison_runs(manifest)),
        "report": layout.uri(layout.report_md) if "report.md" in names else None,
        "table": table,
        "plots": plots,
        "files": [layout.uri(f"{layout.prefix}/{n}") for n in names if n not in known],
    }
