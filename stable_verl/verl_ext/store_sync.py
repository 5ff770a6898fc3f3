"""Checkpoints and metrics from inside verl to the artifact store, on the nodes that save them.

The RL stage's verl processes (the ``stable_sync`` trainer and its actor workers, ``trainer/store.py`` /
``actor_worker.py``) use this module; it imports no verl, so the flow and the tests use it too.

* Settings come from the environment (:func:`sync_env` builds it on the flow's side): the store's root
  (``STABLE_VERL_SYNC_ROOT``), the run id (``STABLE_VERL_SYNC_RUN``) and the S3 endpoint
  (``STABLE_VERL_S3_ENDPOINT``). Credentials are never passed: each node finds its own (the AWS environment of
  ``ray start``, an instance role), as :meth:`ArtifactStore.from_env` does everywhere.
* ``STABLE_VERL_NODE_DIR``, when a node sets it (``ray start`` on a cluster without a shared filesystem), is
  that node's local scratch: verl's checkpoint root becomes ``$STABLE_VERL_NODE_DIR/<run id>/checkpoints`` there,
  whatever path the flow's command line named (:func:`node_path`).
* Save: the driver deletes the step's manifest, each rank uploads the files it saved
  (:func:`rank_owns`: its own ``*_rank_<r>.*`` shards; the first rank of each node also the unranked files it
  sees, e.g. ``fsdp_config.json``, ``huggingface/``), the driver uploads its own files (``data.pt``, ...).
  The step's metrics row is written once verl has logged it, then the manifest, built from every rank's
  entries, last (:meth:`StoreSync.finish`).
* Resume: the driver empties its checkpoint root and restores the store's latest complete checkpoint part by
  part: its own files there, each rank's shards on that rank's node, and verl's tracker file, so verl's
  ``resume_mode=auto`` loads it (:meth:`StoreSync.restore`).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, Manifest, ManifestEntry, RunLayout, step_dir
from stable_verl.artifacts.manifest import list_files
from stable_verl.env import NODE_DIR, S3_ENDPOINT, SYNC_ROOT, SYNC_RUN

ENV_ROOT = SYNC_ROOT.name  # the names, for the environments built here and by the stages (stable_verl/env.py)
ENV_RUN = SYNC_RUN.name
ENV_ENDPOINT = S3_ENDPOINT.name
ENV_NODE_DIR = NODE_DIR.name
TRACKER = "latest_checkpointed_iteration.txt"  # verl's: the step of the last complete local save
WORKER_PARTS = ("actor", "critic")  # folders of a global_step_N the worker groups write; the rest is the driver's
_RANKED = re.compile(r"_rank_(\d+)(?=[._]|$)")  # verl's shard names: model_world_size_<W>_rank_<r>.pt
_RESTORED = re.compile(r"stable-verl: restored checkpoint \d+ from the store in ([\d.]+) s")


def restored_line(step: int, seconds: float) -> str:
    """What the trainer prints once it has restored checkpoint ``step`` (the flow reads the time from it)."""
    return f"stable-verl: restored checkpoint {step} from the store in {seconds:.3f} s"


def parse_restored(line: str) -> float | None:
    """The seconds of a :func:`restored_line` inside ``line`` (behind Ray's prefix), None for any other line."""
    found = _RESTORED.search(line)
    return float(found.group(1)) if found else None


def store_env(store: ArtifactStore) -> dict[str, str]:
    """The variables that point a job's processes at ``store``: its root and endpoint (no credentials)."""
    return {ENV_ROOT: store.uri(), **({ENV_ENDPOINT: store.endpoint_url} if store.endpoint_url else {})}


def sync_env(run: RunLayout) -> dict[str, str]:
    """The variables that point verl's processes at ``run`` in its store (no credentials)."""
    return {**store_env(run.store), ENV_RUN: run.run_id}


def node_run_dir(run_id: str, environ: Mapping[str, str] | None = None) -> str | None:
    """This node's scratch folder of the run (``$STABLE_VERL_NODE_DIR/<run id>``), None when the node sets none."""
    base = NODE_DIR.get(environ)
    return os.path.join(base, run_id) if base else None


def node_path(path: str, run_id: str, environ: Mapping[str, str] | None = None) -> str:
    """``path`` (``<checkpoint root>/global_step_N/<part>``, as verl's driver names it) on this node: under
    this node's checkpoint root when it sets ``STABLE_VERL_NODE_DIR``, else unchanged."""
    base = node_run_dir(run_id, environ)
    if base is None:
        return path
    return os.path.join(base, "checkpoints", *Path(path).parts[-2:])


def rank_owns(rel: str, rank: int, first_on_node: bool) -> bool:
    """Whether the rank uploads (and restores) the file ``rel`` of a worker part: its own shards, and for the
    node's first rank the unranked files."""
    found = _RANKED.search(PurePosixPath(rel).name)
    return int(found.group(1)) == rank if found else first_on_node


def driver_owns(rel: str) -> bool:
    """Whether ``rel`` (relative to ``global_step_N``) is a file the trainer itself writes (not a worker part)."""
    return rel.split("/", 1)[0] not in WORKER_PARTS


def to_row(step: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics row of one ``logger.log(data, step)`` call, as verl's file logger serialises it."""
    import json

    import orjson

    return {"step": step, **json.loads(orjson.dumps(dict(data), option=orjson.OPT_SERIALIZE_NUMPY))}


class StepMetrics:
    """A stage's merged metrics: earlier attempts' rows up to ``resumed_step``, then this attempt's, one per step.

    Rows this attempt logs for a step up to ``resumed_step`` (validation before training) are dropped; rows logged
    for the same step (training, then validation) are merged, a key written twice keeping the later value.
    """

    def __init__(self, previous: Iterable[Mapping[str, Any]], resumed_step: int) -> None:
        self.previous = sorted((dict(r) for r in previous if r["step"] <= resumed_step), key=lambda r: r["step"])
        self.resumed_step = resumed_step
        self._current: dict[int, dict[str, Any]] = {}

    def add(self, row: Mapping[str, Any]) -> None:
        if row["step"] > self.resumed_step:
            self._current.setdefault(row["step"], {}).update(row)

    def rows(self) -> list[dict[str, Any]]:
        return self.previous + [self._current[s] for s in sorted(self._current)]


@dataclass
class StoreSync:
    """One run's checkpoints in its store, from inside verl (see the module docstring)."""

    run: RunLayout

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreSync | None:
        """The run the environment names (None: not set, a plain verl run)."""
        root, run_id = SYNC_ROOT.get(environ), SYNC_RUN.get(environ)
        if not root or not run_id:
            return None
        return cls(RunLayout(ArtifactStore.from_env(root, endpoint_url=S3_ENDPOINT.get(environ)), run_id))

    def checkpoint_root(self, configured: str) -> str:
        """verl's checkpoint root on this node: the node's scratch when it sets one, else ``configured``."""
        base = node_run_dir(self.run.run_id)
        root = os.path.join(base, "checkpoints") if base else configured
        return os.path.abspath(root)

    def local(self, path: str) -> str:
        """A path the driver named, on this node (:func:`node_path`)."""
        return node_path(path, self.run.run_id)

    # ------------------------------------------------------------------------------------------------ save
    def begin(self, step: int) -> None:
        """Before anything of ``step`` is uploaded: its earlier manifest goes, so it reads incomplete until done."""
        self.run.store.delete(f"{self.run.checkpoint(step)}/{MANIFEST_NAME}")

    def upload(self, step: int, step_folder: str, rels: list[str]) -> list[dict[str, Any]]:
        """Upload ``rels`` (relative to ``step_folder``, a local ``global_step_N``); returns their manifest entries."""
        entries = self.run.store.put_files(step_folder, self.run.checkpoint(step), rels)
        return [e.to_dict() for e in entries]

    def upload_driver_files(self, step: int, step_folder: str) -> list[dict[str, Any]]:
        """The trainer's own files of ``step_folder`` (everything outside the worker parts)."""
        return self.upload(step, step_folder, [r for r in list_files(step_folder) if driver_owns(r)])

    def upload_rank_files(self, step: int, part_folder: str, rank: int, first_on_node: bool) -> list[dict[str, Any]]:
        """One rank's files of a worker part (``global_step_N/actor``) saved on this node."""
        part = Path(part_folder).name
        if not os.path.isdir(part_folder):
            return []
        rels = [f"{part}/{r}" for r in list_files(part_folder) if rank_owns(r, rank, first_on_node)]
        return self.upload(step, str(Path(part_folder).parent), rels)

    def finish(
        self,
        step: int,
        entries: Iterable[Mapping[str, Any]],
        rows: list[dict],
        upload_s: float,
        local_folder: str | None = None,
    ) -> Manifest:
        """The step's metrics (``rows``: every step so far), then, once every file's uploaded size checks, its
        manifest, last (also into ``local_folder``, the driver's copy). Entries uploaded twice (a shared
        filesystem: two nodes' first ranks both see an unranked file) must agree."""
        start = time.monotonic()
        self.run.write_metrics(rows)  # before the manifest: a checkpoint in the store has its metrics there
        files: dict[str, ManifestEntry] = {}
        for raw in entries:
            entry = ManifestEntry(path=raw["path"], size=int(raw["size"]), sha256=raw["sha256"])
            if files.setdefault(entry.path, entry) != entry:
                raise RuntimeError(f"checkpoint {step}: two ranks uploaded different {entry.path}")
        seconds = upload_s + time.monotonic() - start
        meta = {"run_id": self.run.run_id, "global_step": int(step), "upload_s": round(seconds, 3)}
        manifest = Manifest(files=sorted(files.values(), key=lambda e: e.path), metadata=meta)
        self.run.store.check_uploaded(self.run.checkpoint(step), manifest.files)
        self.run.store.write_manifest(self.run.checkpoint(step), manifest)
        if local_folder is not None and os.path.isdir(local_folder):  # later stages on this machine may skip the
            Path(local_folder, MANIFEST_NAME).write_text(manifest.to_json())  # download (if every file is here)
        return manifest

    # --------------------------------------------------------------------------------------------- restore
    def restore(
        self, checkpoint_root: str, restore_workers: Callable[[str, int], None]
    ) -> tuple[int, list[dict[str, Any]]]:
        """Empty ``checkpoint_root``; put the store's latest complete checkpoint there (the driver's files, then
        ``restore_workers(<part folder>, step)`` for the shards), then verl's tracker. Returns (step, earlier
        metrics rows); step 0: none, verl starts from scratch."""
        shutil.rmtree(checkpoint_root, ignore_errors=True)
        os.makedirs(checkpoint_root)
        step = self.run.latest_checkpoint() or 0
        if step:
            folder = os.path.join(checkpoint_root, step_dir(step))
            self.run.store.get_dir(self.run.checkpoint(step), folder, only=driver_owns)
            restore_workers(os.path.join(folder, "actor"), step)
            Path(checkpoint_root, TRACKER).write_text(str(step))
        return step, self.run.read_metrics()

    def restore_rank_files(self, step: int, part_folder: str, rank: int, first_on_node: bool) -> None:
        """One rank's files of a worker part of ``step``, into ``part_folder`` on this node."""
        part = Path(part_folder).name

        def mine(rel: str) -> bool:
            head, _, rest = rel.partition("/")
            return head == part and bool(rest) and rank_owns(rest, rank, first_on_node)

        self.run.store.get_dir(self.run.checkpoint(step), str(Path(part_folder).parent), only=mine)
