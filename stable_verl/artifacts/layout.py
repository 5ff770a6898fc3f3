"""Where each artifact of a run or comparison lives under a store's root.

::

    runs/<run_id>/run.json                  what, when, from which config and parent checkpoint, status
    runs/<run_id>/config.yaml               the resolved config
    runs/<run_id>/command.json              the exact verl overrides
    runs/<run_id>/metrics.jsonl             one line per step
    runs/<run_id>/checkpoints/global_step_N/...  + _MANIFEST.json (written last)
    runs/<run_id>/eval/global_step_N/<benchmark>/{results.json,samples.jsonl}
    comparisons/<id>/{report.md,table.csv,plots/*.png}
    index/runs/<run_id>.json                one small file per run (no shared index to race on)

Run ids are content-addressed (:func:`run_id`), so a rerun of the same stage lands in the same prefix;
there is one writer per run prefix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stable_verl.artifacts.manifest import MANIFEST_NAME, Manifest, utc_now
from stable_verl.artifacts.redact import redact
from stable_verl.artifacts.store import ArtifactStore

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^global_step_(\d+)$")  # verl's checkpoint folder name


def step_dir(step: int) -> str:
    """verl's folder name of the checkpoint (and evaluation) of ``step``: ``global_step_<step>``."""
    return f"global_step_{int(step)}"


def checkpoint_path(run_id: str, step: int) -> str:
    """Store path of run ``run_id``'s checkpoint of ``step`` (what :meth:`RunLayout.checkpoint` returns)."""
    return f"runs/{run_id}/checkpoints/{step_dir(step)}"


def parse_step_dir(name: str) -> int | None:
    """The step of a ``global_step_<N>`` folder name; None for any other name."""
    m = _STEP_DIR.match(name)
    return int(m.group(1)) if m else None


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Fields of run.json copied into the run's index entry.
INDEX_FIELDS = ("run_id", "kind", "name", "status", "created_at", "updated_at", "parent_checkpoint", "upstream")


def _slug(text: str, max_len: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-.")
    return slug[:max_len].rstrip("-.") or "x"


def _canonical(obj: Any) -> Any:
    """Plain, JSON-stable containers: OmegaConf resolved, sets sorted, tuples as lists."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            obj = OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_canonical(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def config_hash(config: Any, upstream: Sequence[str] = (), length: int = 8) -> str:
    """Hex sha256 prefix of a config (key-order independent, credentials masked) and its upstream ids."""
    payload = {"config": redact(_canonical(config)), "upstream": [str(u) for u in upstream]}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def run_id(kind: str, name: str, config: Any, upstream: Sequence[str] = ()) -> str:
    """Content-addressed id ``<kind>-<name>-<sha8>``.

    The hash covers ``kind``, ``name``, the config (independent of dict key order; credential-like keys
    are masked so rotating a secret does not change the id) and the ``upstream`` ids/URIs in order.
    """
    digest = config_hash({"kind": kind, "name": name, "config": config}, upstream)
    return f"{_slug(kind, 24)}-{_slug(name)}-{digest}"


def _check_id(value: str, what: str) -> str:
    if not _SAFE_ID.match(value):
        raise ValueError(f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-'")
    return value


@dataclass(frozen=True)
class RunLayout:
    """Relative paths (for the store's methods) of one run's artifacts, plus typed helpers."""

    store: ArtifactStore
    run_id: str

    def __post_init__(self) -> None:
        _check_id(self.run_id, "run_id")

    @property
    def prefix(self) -> str:
        return f"runs/{self.run_id}"

    @property
    def run_json(self) -> str:
        return f"{self.prefix}/run.json"

    @property
    def config_yaml(self) -> str:
        return f"{self.prefix}/config.yaml"

    @property
    def command_json(self) -> str:
        return f"{self.prefix}/command.json"

    @property
    def metrics_jsonl(self) -> str:
        return f"{self.prefix}/metrics.jsonl"

    @property
    def checkpoints_dir(self) -> str:
        return f"{self.prefix}/checkpoints"

    @property
    def index_entry(self) -> str:
        return f"index/runs/{self.run_id}.json"

    def checkpoint(self, step: int) -> str:
        return checkpoint_path(self.run_id, step)

    def log(self, name: str) -> str:
        """A log of the run: ``logs/<name>.log`` (``attempt-<k>``, a node's ``attempt-<k>-node``, ...)."""
        return f"{self.prefix}/logs/{name}.log"

    def eval_dir(self, step: int, benchmark: str) -> str:
        return f"{self.prefix}/eval/{step_dir(step)}/{_check_id(benchmark, 'benchmark')}"

    def eval_results(self, step: int, benchmark: str) -> str:
        return f"{self.eval_dir(step, benchmark)}/results.json"

    def eval_samples(self, step: int, benchmark: str) -> str:
        return f"{self.eval_dir(step, benchmark)}/samples.jsonl"

    def uri(self, rel: str | None = None) -> str:
        """User-facing location of ``rel`` (default: the run prefix)."""
        return self.store.uri(rel or self.prefix)

    # ---------------------------------------------------------------------------------------- records
    def write_run(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write run.json (``run_id``/``created_at``/``updated_at`` filled in), then the run's index entry."""
        now = utc_now()
        out = {**record, "run_id": self.run_id, "updated_at": now}
        out.setdefault("created_at", now)
        self.store.write_json(self.run_json, out)
        self.store.write_json(self.index_entry, {k: out[k] for k in INDEX_FIELDS if k in out})
        return out

    def update_run(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` (e.g. ``status="succeeded"``) into the existing run.json and rewrite it."""
        return self.write_run({**(self.read_run() or {}), **fields})

    def read_run(self) -> dict[str, Any] | None:
        try:
            return self.store.read_json(self.run_json)
        except FileNotFoundError:
            return None

    def write_config(self, config: Any) -> str:
        return self.store.write_yaml(self.config_yaml, config)

    def read_config(self) -> dict[str, Any] | None:
        """The run's config.yaml; None when it has none."""
        import yaml

        try:
            return yaml.safe_load(self.store.read_text(self.config_yaml))
        except FileNotFoundError:
            return None

    def write_command(self, overrides: Sequence[str], **extra: Any) -> str:
        return self.store.write_json(self.command_json, {"overrides": list(overrides), **extra})

    def write_metrics(self, rows: Sequence[Mapping[str, Any]]) -> str:
        return self.store.write_jsonl(self.metrics_jsonl, rows)

    def read_metrics(self) -> list[dict[str, Any]]:
        try:
            return self.store.read_jsonl(self.metrics_jsonl)
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------------------------------ checkpoints
    def upload_checkpoint(
        self, local_dir: str | os.PathLike[str], step: int, metadata: Mapping[str, Any] | None = None
    ) -> Manifest:
        meta = {"run_id": self.run_id, "global_step": int(step), **(metadata or {})}
        return self.store.put_dir(local_dir, self.checkpoint(step), metadata=meta)

    def download_checkpoint(self, step: int, local_dir: str | os.PathLike[str]) -> Manifest:
        return self.store.get_dir(self.checkpoint(step), local_dir)

    def checkpoint_steps(self, complete_only: bool = True) -> list[int]:
        """Steps with a ``global_step_N`` directory (only manifested, complete ones by default), ascending."""
        if complete_only:
            paths = self.store.glob(f"{self.checkpoints_dir}/global_step_*/{MANIFEST_NAME}")
            names = [p.rsplit("/", 2)[-2] for p in paths]
        else:
            names = self.store.ls(self.checkpoints_dir)
        steps = sorted({step for n in names if (step := parse_step_dir(n)) is not None})
        return [s for s in steps if self.store.is_complete(self.checkpoint(s))] if complete_only else steps

    def latest_checkpoint(self) -> int | None:
        return latest_complete_checkpoint(self)


def latest_complete_checkpoint(run: RunLayout) -> int | None:
    """Highest ``N`` whose ``global_step_N`` has a valid manifest and all its files; ``None`` if none."""
    paths = run.store.glob(f"{run.checkpoints_dir}/global_step_*/{MANIFEST_NAME}")
    steps = sorted({s for p in paths if (s := parse_step_dir(p.rsplit("/", 2)[-2])) is not None}, reverse=True)
    for step in steps:
        if run.store.is_complete(run.checkpoint(step)):
            return step
        log.info("skipping incomplete checkpoint %s", run.uri(run.checkpoint(step)))
    return None


def list_runs(store: ArtifactStore, kind: str | None = None) -> list[dict[str, Any]]:
    """Index entries of all runs (optionally of one ``kind``), oldest first.

    Entries that are unreadable or whose run.json is missing (a run that never got going, or a
    half-deleted one) are skipped.
    """
    index_paths = store.glob("index/runs/*.json")
    entries: dict[str, dict[str, Any]] = {}
    for path, blob in store.cat_many(index_paths).items():
        try:
            entry = json.loads(blob) if blob is not None else None
        except ValueError:
            entry = None
        rid = path.rsplit("/", 1)[-1].removesuffix(".json")
        if not isinstance(entry, dict) or not _SAFE_ID.match(rid) or entry.get("run_id", rid) != rid:
            log.warning("skipping unreadable index entry %s", store.uri(path))
            continue
        if kind is None or entry.get("kind") == kind:
            entries[rid] = {**entry, "run_id": rid}
    present = store.cat_many([RunLayout(store, rid).run_json for rid in entries])
    runs = [e for rid, e in entries.items() if present.get(RunLayout(store, rid).run_json) is not None]
    return sorted(runs, key=lambda e: (str(e.get("created_at", "")), e["run_id"]))


@dataclass(frozen=True)
class ComparisonLayout:
    """Relative paths of one comparison report."""

    store: ArtifactStore
    comparison_id: str

    def __post_init__(self) -> None:
        _check_id(self.comparison_id, "comparison_id")

    @property
    def prefix(self) -> str:
        return f"comparisons/{self.comparison_id}"

    @property
    def report_md(self) -> str:
        return f"{self.prefix}/report.md"

    @property
    def table_csv(self) -> str:
        return f"{self.prefix}/table.csv"

    @property
    def plots_dir(self) -> str:
        return f"{self.prefix}/plots"

    def plot(self, name: str) -> str:
        """Path of a plot; ``.png`` is appended when ``name`` has no extension."""
        name = _check_id(name, "plot name")
        return f"{self.plots_dir}/{name if '.' in name else name + '.png'}"

    def uri(self, rel: str | None = None) -> str:
        return self.store.uri(rel or self.prefix)
