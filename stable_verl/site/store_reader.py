"""The one store reader: what the pages (:mod:`.build`, :mod:`.render`) and the CLI's ``runs`` / ``comparisons``
views (:mod:`.views`) show of a store, as plain, redacted values (no HTML, no tables here).

Built on the public methods of :class:`~stable_verl.artifacts.ArtifactStore` and :class:`~stable_verl.artifacts.
RunLayout`. One listing per run or comparison (every object below its prefix with its size,
:meth:`ArtifactStore.sizes`) and one batched read of its small files; checkpoints, evaluations and comparisons
count as complete exactly as the store says (:meth:`ArtifactStore.is_complete`: a valid ``_MANIFEST.json``,
written last, and every listed file there with its size), computed from that one listing. An index entry without
``run.json`` is skipped. Every value passes through :func:`clean` (credential keys masked, secret values and URL
passwords scrubbed).
"""

from __future__ import annotations

import fnmatch
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from stable_verl.artifacts import (
    MANIFEST_NAME,
    ArtifactStore,
    ArtifactStoreError,
    ComparisonLayout,
    Manifest,
    RunLayout,
    list_runs,
)
from stable_verl.artifacts.errors import ManifestError
from stable_verl.artifacts.redact import redact, redact_url, scrub
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.core.metric_keys import KEY_METRIC_PATTERNS

_STEP = re.compile(r"^global_step_(\d+)$")
#: Samples shown inline per evaluation (the page links the whole samples.jsonl); bytes read to find them.
SAMPLES_SHOWN = 8
SAMPLES_HEAD_BYTES = 64 * 1024
#: Fields of an evaluation's results.json shown (its settings too; paths such as ``model`` are not).
RESULT_FIELDS = ("format_rate", "num_prompts", "k")


# ------------------------------------------------------------------------------------------------ store
def open_store(root: str | None = None) -> ArtifactStore:
    """``ArtifactStore.from_env(root)``; a root that cannot be opened is a one-line ``ValueError``."""
    try:
        return ArtifactStore.from_env(root)
    except ArtifactStoreError as exc:
        raise ValueError(f"cannot open artifact store: {exc}") from None


def clean(store: ArtifactStore, obj: Any) -> Any:
    """``obj`` with credential keys masked and secret values / URL passwords scrubbed (strings too)."""
    return redact(obj, secrets=store.secrets())


def clean_frame(store: ArtifactStore, frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with its column names and string cells scrubbed (as :func:`clean` scrubs strings)."""
    secrets = store.secrets()
    out = frame.copy()
    out.columns = [scrub(str(c), secrets) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: scrub(v, secrets) if isinstance(v, str) else v)
    return out


def describe_store(store: ArtifactStore) -> str:
    """``<root uri>`` plus ``(endpoint <url>)`` for custom S3 endpoints, credentials removed."""
    endpoint = f" (endpoint {redact_url(store.endpoint_url)})" if store.endpoint_url else ""
    return scrub(f"{store.uri()}{endpoint}", store.secrets())


def _json(blob: bytes | None) -> Any:
    try:
        return json.loads(blob) if blob is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- metrics
def flatten_metrics_row(row: dict[str, Any]) -> dict[str, Any]:
    """verl's file-logger line ``{"step": N, "data": {...}}`` or an already flat row -> ``{"step": N, key: v}``."""
    data = row.get("data")
    if isinstance(data, dict):
        return {"step": row.get("step"), **data}
    return dict(row)


def key_metrics(row: dict[str, Any], patterns: tuple[str, ...] = KEY_METRIC_PATTERNS) -> dict[str, Any]:
    """The keys of ``row`` matching ``patterns`` (default: the metrics that matter), in pattern order (each once)."""
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


def score(results: dict[str, Any]) -> tuple[str, Any]:
    """The ``avg@k`` score of an evaluation's results.json (the only score the evaluation writes)."""
    key = next((k for k in sorted(results) if k.startswith("avg@") and not k.endswith("_stderr")), "")
    return key, results.get(key)


# ------------------------------------------------------------------------------------------------- runs
def run_records(store: ArtifactStore, kind: str | None = None) -> list[RunRecord]:
    """One record per indexed run (oldest first; optionally of one ``kind``): its index entry overlaid with its
    run.json when that parses. Entries that are unreadable or have no run.json are skipped (:func:`list_runs`)."""
    entries = list_runs(store, kind)
    blobs = store.cat_many([RunLayout(store, e["run_id"]).run_json for e in entries])
    records = []
    for entry in entries:
        raw = _json(blobs.get(RunLayout(store, entry["run_id"]).run_json))
        merged = {**entry, **(raw if isinstance(raw, dict) else {})}
        records.append(RunRecord.from_dict(entry["run_id"], clean(store, merged)))
    return records


def run_exists(store: ArtifactStore, run_id: str) -> bool:
    """Whether the store has anything of the run: objects below its prefix, or its index entry."""
    layout = RunLayout(store, run_id)
    return bool(store.ls(layout.prefix)) or store.exists(layout.index_entry)


@dataclass
class Folder:
    """A manifested folder (a checkpoint, an evaluation, a comparison): its manifest, if valid, and whether it is
    complete."""

    prefix: str
    manifest: Manifest | None
    complete: bool


@dataclass
class Evaluation:
    step: int
    benchmark: str
    folder: Folder
    metric: str = ""
    value: Any = None
    stderr: Any = None
    results: dict[str, Any] | None = None
    """:data:`RESULT_FIELDS` and ``settings`` of results.json; None until the folder is complete and it parses."""
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunData:
    run_id: str
    prefix: str
    objects: dict[str, int]
    """Every object below the run's prefix (relative to it) -> size."""
    run: dict[str, Any] | None
    """run.json as written (None: missing or unreadable)."""
    record: RunRecord | None
    config: Any
    """config.yaml parsed (its text when it is not YAML); None when missing."""
    config_text: str | None
    command: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    """:func:`last_metrics` of :attr:`metrics`."""
    checkpoints: list[tuple[int, Folder]]
    evals: list[Evaluation]
    parent: tuple[str, int | None] | None
    """(run id, checkpoint step) of the parent checkpoint when that run is in this store."""


def _folder(objects: dict[str, int], base: str, rel: str, blob: bytes | None) -> Folder:
    """The folder ``base/rel`` (``rel`` may be empty); ``objects`` are the sizes of the objects below ``base``."""
    manifest = None
    if blob is not None:
        try:
            manifest = Manifest.from_json(blob)
        except ManifestError:
            manifest = None
    key = (lambda path: f"{rel}/{path}") if rel else (lambda path: path)
    complete = manifest is not None and all(objects.get(key(f.path)) == f.size for f in manifest.files)
    return Folder(f"{base}/{rel}" if rel else base, manifest, complete)


def _head_jsonl(store: ArtifactStore, rel: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of a JSON-lines object, reading at most :data:`SAMPLES_HEAD_BYTES`."""
    blob = store.read_head(rel, SAMPLES_HEAD_BYTES)
    rows = []
    for line in blob.decode(errors="replace").splitlines()[:n]:
        value = _json(line.encode())
        if isinstance(value, dict):
            rows.append(value)
    return rows


def _parent(record: RunRecord | None, known: set[str]) -> tuple[str, int | None] | None:
    """The run (and step) a run started from, when its ``parent_checkpoint`` names a run of this store."""
    value = (record.parent_checkpoint if record else None) or ""
    match = re.search(r"(?:^|/)runs/([^/]+)(?:/checkpoints/global_step_(\d+))?", str(value))
    if not match or match.group(1) not in known:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else None


def run_data(store: ArtifactStore, run_id: str, known_runs: set[str] | None = None) -> RunData:
    """Everything a run page shows (see the module doc); ``known_runs`` resolves the parent link."""
    layout = RunLayout(store, run_id)
    objects = store.sizes(layout.prefix)
    ckpt_steps = sorted(
        {int(m.group(1)) for k in objects if k.startswith("checkpoints/") and (m := _STEP.match(k.split("/")[1]))}
    )
    eval_dirs = sorted(
        {
            (int(m.group(1)), parts[2])
            for k in objects
            if (parts := k.split("/"))[0] == "eval" and len(parts) >= 4 and (m := _STEP.match(parts[1]))
        }
    )
    wanted = ["run.json", "config.yaml", "command.json", "metrics.jsonl"]
    wanted += [f"checkpoints/global_step_{s}/{MANIFEST_NAME}" for s in ckpt_steps]
    for step, bench in eval_dirs:
        wanted += [f"eval/global_step_{step}/{bench}/{MANIFEST_NAME}", f"eval/global_step_{step}/{bench}/results.json"]
    blobs = store.cat_many([f"{layout.prefix}/{w}" for w in wanted if w in objects])
    get = lambda rel: blobs.get(f"{layout.prefix}/{rel}")  # noqa: E731

    raw = _json(get("run.json"))
    run = clean(store, raw) if isinstance(raw, dict) else None
    record = RunRecord.from_dict(layout.run_id, run) if run is not None else None
    config = config_text = None
    if (blob := get("config.yaml")) is not None:
        try:
            config = clean(store, yaml.safe_load(blob))
            config_text = yaml.safe_dump(config, sort_keys=False)
        except yaml.YAMLError:
            config = config_text = clean(store, blob.decode(errors="replace"))
    command = _json(get("command.json"))
    metrics: list[dict[str, Any]] = []
    if (blob := get("metrics.jsonl")) is not None:
        lines = blob.decode(errors="replace").splitlines()
        metrics = [row for line in lines if isinstance(row := _json(line.encode()), dict)]

    checkpoints = []
    for step in ckpt_steps:
        rel = f"checkpoints/global_step_{step}"
        checkpoints.append((step, _folder(objects, layout.prefix, rel, get(f"{rel}/{MANIFEST_NAME}"))))
    evals = []
    for step, bench in eval_dirs:
        rel = f"eval/global_step_{step}/{bench}"
        ev = Evaluation(step, bench, _folder(objects, layout.prefix, rel, get(f"{rel}/{MANIFEST_NAME}")))
        results = _json(get(f"{rel}/results.json"))
        if ev.folder.complete and isinstance(results, dict):
            ev.metric, ev.value = score(results)
            ev.stderr = results.get(f"{ev.metric}_stderr")
            ev.results = clean(store, {k: results[k] for k in (*RESULT_FIELDS, "settings") if k in results})
            if f"{rel}/samples.jsonl" in objects:
                ev.samples = clean(store, _head_jsonl(store, f"{layout.prefix}/{rel}/samples.jsonl", SAMPLES_SHOWN))
        evals.append(ev)
    return RunData(
        run_id=run_id,
        prefix=layout.prefix,
        objects=objects,
        run=run,
        record=record,
        config=config,
        config_text=config_text,
        command=clean(store, command) if isinstance(command, dict) else None,
        metrics=metrics,
        summary=clean(store, last_metrics(metrics)),
        checkpoints=checkpoints,
        evals=evals,
        parent=_parent(record, known_runs if known_runs is not None else set(store.ls("runs"))),
    )


# ------------------------------------------------------------------------------------------ comparisons
@dataclass
class ComparisonData:
    comparison_id: str
    prefix: str
    objects: dict[str, int]
    folder: Folder
    recorded: list[str]
    """The compared runs' locations as the manifest records them (empty: none recorded)."""
    runs: list[tuple[str, bool]]
    """(run id or the recorded location, whether it is a run of this store) per compared run."""
    table: pd.DataFrame | None
    """table.csv (an empty frame when it does not parse; None: missing)."""
    report: str | None

    def children(self) -> list[str]:
        """Names of the comparison folder's direct children (files and folders), sorted."""
        return sorted({k.split("/", 1)[0] for k in self.objects})

    def plots(self) -> list[str]:
        """Paths of the plots (``plots/<name>``, relative to the folder), sorted."""
        return sorted(k for k in self.objects if k.startswith("plots/") and "/" not in k[len("plots/") :])


def _run_ref(location: str, known: set[str]) -> tuple[str, bool]:
    """A recorded run location (``s3://.../runs/<id>``, a local path or an id) -> (id, in this store)."""
    name = str(location).rstrip("/").rsplit("/", 1)[-1]
    return (name, True) if name in known else (str(location), False)


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


def comparison_data(store: ArtifactStore, comparison_id: str, known_runs: set[str] | None = None) -> ComparisonData:
    """Everything a comparison's page shows (see the module doc); ``known_runs`` (default: the store's run folders)
    tells which compared runs are in this store."""
    layout = ComparisonLayout(store, comparison_id)
    objects = store.sizes(layout.prefix)
    wanted = [w for w in (MANIFEST_NAME, "table.csv", "report.md") if w in objects]
    blobs = store.cat_many([f"{layout.prefix}/{w}" for w in wanted])
    get = lambda rel: blobs.get(f"{layout.prefix}/{rel}")  # noqa: E731
    folder = _folder(objects, layout.prefix, "", get(MANIFEST_NAME))
    recorded = (folder.manifest.metadata or {}).get("runs") if folder.manifest else None
    recorded = [str(r) for r in recorded] if isinstance(recorded, list) else []
    known = known_runs if known_runs is not None else set(store.ls("runs"))
    table = None
    if (blob := get("table.csv")) is not None:
        try:
            table = pd.read_csv(io.BytesIO(blob))
        except (ValueError, pd.errors.ParserError):
            table = pd.DataFrame()
    report = get("report.md")
    return ComparisonData(
        comparison_id=comparison_id,
        prefix=layout.prefix,
        objects=objects,
        folder=folder,
        recorded=clean(store, recorded),
        runs=[(clean(store, r), ok) for r, ok in (_run_ref(r, known) for r in recorded)],
        table=None if table is None else clean_frame(store, table),
        report=None if report is None else clean(store, report.decode(errors="replace")),
    )


# -------------------------------------------------------------------------------------------------- root
def root_data(store: ArtifactStore) -> tuple[list[RunRecord], list[dict[str, Any]]]:
    """(runs, comparisons) for the root index: :func:`run_records`; manifest facts per comparison (complete: its
    manifest is valid; the comparison's own page checks its files too)."""
    runs = run_records(store)
    ids = comparison_ids(store)
    manifests = store.cat_many([f"comparisons/{c}/{MANIFEST_NAME}" for c in ids])
    comparisons = []
    for cid in ids:
        try:
            manifest = Manifest.from_json(manifests[f"comparisons/{cid}/{MANIFEST_NAME}"] or b"")
        except ManifestError:
            manifest = None
        recorded = (manifest.metadata or {}).get("runs") if manifest else None
        comparisons.append(
            {
                "comparison_id": cid,
                "created_at": manifest.created_at if manifest else "",
                "runs": len(recorded) if isinstance(recorded, list) else None,
                "complete": manifest is not None,
            }
        )
    comparisons.sort(key=lambda c: (c["created_at"] or "~", c["comparison_id"]))
    return runs, comparisons
