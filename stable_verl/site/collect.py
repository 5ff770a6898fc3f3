"""What the pages show, read from the store: plain, redacted dicts (no HTML here).

One listing per run (every object below ``runs/<id>/`` with its size) and one batched read of its small files;
checkpoints and evaluations count as complete exactly as the store says (:meth:`ArtifactStore.is_complete`: a valid
``_MANIFEST.json`` and every listed file there with its size), computed from that one listing. Every value passes
through :func:`stable_verl.site.views.clean` (credential keys masked, secret values and URL passwords scrubbed).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, ComparisonLayout, Manifest, RunLayout, list_runs
from stable_verl.artifacts.errors import ManifestError
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.site.views import _score, clean, comparison_ids, last_metrics

_STEP = re.compile(r"^global_step_(\d+)$")
#: Samples shown inline per evaluation (the page links the whole samples.jsonl); bytes read to find them.
SAMPLES_SHOWN = 8
SAMPLES_HEAD_BYTES = 64 * 1024
#: Fields of an evaluation's results.json shown on the page (its settings too; paths such as ``model`` are not).
RESULT_FIELDS = ("format_rate", "num_prompts", "k")


@dataclass
class Folder:
    """A manifested folder (a checkpoint or an evaluation): its manifest, if valid, and whether it is complete."""

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
    results: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunData:
    run_id: str
    prefix: str
    objects: dict[str, int]
    """Every object below the run's prefix (relative to it) -> size."""
    record: RunRecord | None
    config_text: str | None
    command: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    checkpoints: list[tuple[int, Folder]]
    evals: list[Evaluation]
    parent: tuple[str, int | None] | None
    """(run id, checkpoint step) of the parent checkpoint when that run is in this store."""


def _json(blob: bytes | None) -> Any:
    try:
        return json.loads(blob) if blob is not None else None
    except ValueError:
        return None


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
    with store._op("read", rel):
        blob = store.fs.cat_file(store._full(rel), start=0, end=SAMPLES_HEAD_BYTES)
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
    objects = store._sizes(layout.prefix)
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
    record = RunRecord.from_dict(layout.run_id, clean(store, raw)) if isinstance(raw, dict) else None
    config_text = None
    if (blob := get("config.yaml")) is not None:
        try:
            config_text = yaml.safe_dump(clean(store, yaml.safe_load(blob)), sort_keys=False)
        except yaml.YAMLError:
            config_text = clean(store, blob.decode(errors="replace"))
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
            ev.metric, ev.value = _score(results)
            ev.stderr = results.get(f"{ev.metric}_stderr")
            ev.results = clean(store, {k: results[k] for k in (*RESULT_FIELDS, "settings") if k in results})
            if f"{rel}/samples.jsonl" in objects:
                ev.samples = clean(store, _head_jsonl(store, f"{layout.prefix}/{rel}/samples.jsonl", SAMPLES_SHOWN))
        evals.append(ev)
    return RunData(
        run_id=run_id,
        prefix=layout.prefix,
        objects=objects,
        record=record,
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
    runs: list[tuple[str, bool]]
    """(run id or the recorded location, whether it is a run of this store) per compared run."""
    table: pd.DataFrame | None
    report: str | None


def _run_ref(location: str, known: set[str]) -> tuple[str, bool]:
    """A recorded run location (``s3://.../runs/<id>``, a local path or an id) -> (id, in this store)."""
    name = str(location).rstrip("/").rsplit("/", 1)[-1]
    return (name, True) if name in known else (str(location), False)


def comparison_data(store: ArtifactStore, comparison_id: str, known_runs: set[str]) -> ComparisonData:
    layout = ComparisonLayout(store, comparison_id)
    objects = store._sizes(layout.prefix)
    wanted = [w for w in (MANIFEST_NAME, "table.csv", "report.md") if w in objects]
    blobs = store.cat_many([f"{layout.prefix}/{w}" for w in wanted])
    get = lambda rel: blobs.get(f"{layout.prefix}/{rel}")  # noqa: E731
    folder = _folder(objects, layout.prefix, "", get(MANIFEST_NAME))
    recorded = (folder.manifest.metadata or {}).get("runs") if folder.manifest else None
    runs = [_run_ref(r, known_runs) for r in recorded] if isinstance(recorded, list) else []
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
        runs=[(clean(store, r), ok) for r, ok in runs],
        table=None if table is None else table.map(lambda v: clean(store, v) if isinstance(v, str) else v),
        report=None if report is None else clean(store, report.decode(errors="replace")),
    )


# -------------------------------------------------------------------------------------------------- root
def root_data(store: ArtifactStore) -> tuple[list[RunRecord], list[dict[str, Any]]]:
    """(runs, comparisons) for the root index: run.json of every indexed run; manifest facts per comparison."""
    entries = list_runs(store)
    blobs = store.cat_many([RunLayout(store, e["run_id"]).run_json for e in entries])
    runs = []
    for entry in entries:
        raw = _json(blobs.get(RunLayout(store, entry["run_id"]).run_json))
        merged = {**entry, **(raw if isinstance(raw, dict) else {})}
        runs.append(RunRecord.from_dict(entry["run_id"], clean(store, merged)))
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
