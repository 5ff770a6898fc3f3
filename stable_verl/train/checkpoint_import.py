"""Already-trained SFT checkpoints as cold-start inits: each imported once into the store as a complete SFT run.

An init given by path (``init_checkpoints.<name>``: a local Hugging Face folder, an ``s3://`` manifested folder or a
hub ``org/name`` with a revision) becomes the run ``sft-<name>-<hash of the folder's identity>``
(:func:`~.model_source.model_identity`: path + fingerprint, or the hub commit), whose one checkpoint, step 0, holds
the folder as ``checkpoints/global_step_0/huggingface/`` with its manifest. Its run.json says kind ``sft``, status
``complete`` and where the folder came from, so RL (``init_run``), the step-0 evaluation, the report and
``stable-verl browse`` read it as any SFT run, locally and on a cluster
(:func:`~.node_inputs.checkpoint_model` finds the ``huggingface`` folder).

Importing is idempotent: a complete import is skipped; an interrupted one is redone (the files are uploaded again
and the manifest written last; the run holds nothing else, so nothing is lost).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, Manifest, RunLayout, checkpoint_path, run_id
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.config.params import InitCheckpoint
from stable_verl.train.model_source import local_folder, model_config, model_identity, resolve_model_dir

IMPORT_STEP = 0
"""The imported checkpoint's step: the RL init, scored at step 0 of the comparison like an SFT run's last."""
IMPORT_KIND = "sft"  # read as an SFT run by everything downstream


def hf_folder() -> str:
    """An SFT checkpoint's HF folder (``huggingface``, :data:`~.node_inputs.HF_FOLDERS`; imported here when used, so
    that the preflight, which imports this module, stays free of torch)."""
    from stable_verl.train.node_inputs import HF_FOLDERS

    return HF_FOLDERS[0]


def import_run_id(name: str, checkpoint: InitCheckpoint, endpoint_url: str | None = None) -> str:
    """``sft-<name>-<hash>``: the hash covers the folder's identity only (what its weights are), not where the
    import runs; ValueError when the folder cannot be identified (missing, no config.json, unknown hub revision)."""
    return run_id(IMPORT_KIND, name, {"imported": model_identity(checkpoint.model(), endpoint_url)})


def checkpoint_prefix(run: str) -> str:
    """Store prefix of the imported HF folder of run ``run``."""
    return f"{checkpoint_path(run, IMPORT_STEP)}/{hf_folder()}"


def source_config(name: str, checkpoint: InitCheckpoint, endpoint_url: str | None = None) -> dict:
    """The checkpoint's ``config.json``, read without its weights; ValueError naming the init and what is missing."""
    model = checkpoint.model()
    try:
        return model_config(model, endpoint_url)
    except ValueError as e:  # model_source names it model.path
        where = f"init_checkpoints.{name} {checkpoint.path}"
        raise ValueError(str(e).splitlines()[0].replace(f"model.path {model.path}", where, 1)) from None


def check_weights(name: str, checkpoint: InitCheckpoint, endpoint_url: str | None = None) -> None:
    """The folder (local or ``s3://``; a hub id's are the hub's) has safetensors weights beside its config.json, as
    RL, evaluation and the cluster's nodes read them (:func:`~.node_inputs.checkpoint_model`)."""
    model = checkpoint.model()
    if model.source == "local":
        files = [p.name for p in local_folder(model).glob("*.safetensors")]
    elif model.source == "s3":
        manifest = ArtifactStore.from_env(model.path, endpoint_url=endpoint_url).read_manifest("")
        files = [e.path for e in manifest.files if "/" not in e.path and e.path.endswith(".safetensors")]
    else:
        return
    if not files:
        raise ValueError(
            f"init_checkpoints.{name} {checkpoint.path}: no safetensors weights in it (save it with save_pretrained)"
        )


def source_record(checkpoint: InitCheckpoint) -> dict[str, Any]:
    """Where the folder came from, as run.json records it (the path as given; no credentials are parameters)."""
    return {"path": checkpoint.path, **({"revision": checkpoint.revision} if checkpoint.revision else {})}


@dataclass(frozen=True)
class ImportResult:
    """One import, in the shape of a stage's result (``flows.coldstart.summary`` prints it beside them)."""

    run_id: str
    run_uri: str
    skipped: bool
    wall_s: float
    upload_s: float = 0.0
    download_s: float = 0.0
    kind: str = "import"
    verl_s: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _files(folder: Path) -> list[str]:
    """The folder's files, without dot files (a hub download's ``.cache/``, a node's materialisation mark)."""
    from stable_verl.artifacts.manifest import list_files

    return [r for r in list_files(folder) if not any(p.startswith(".") for p in r.split("/"))]


def import_checkpoint(
    name: str,
    checkpoint: InitCheckpoint,
    store: ArtifactStore,
    workdir: Path,
    endpoint_url: str | None = None,
    echo: Callable[[str], None] = print,
) -> ImportResult:
    """Import ``checkpoint`` as the complete SFT run :func:`import_run_id` (skipped when complete already)."""
    start = time.monotonic()
    run = RunLayout(store, import_run_id(name, checkpoint, endpoint_url))
    record = RunRecord.read(run)
    if record is not None and record.complete:
        echo(f"[import] {name}: {run.uri()} is complete, skipped")
        return ImportResult(run.run_id, run.uri(), True, time.monotonic() - start)
    source = source_record(checkpoint)
    run.write_run({"kind": IMPORT_KIND, "name": name, "status": "running", "imported_from": source})
    run.write_config({"model": source, "imported": True})  # model.path: evaluation's dtype 'auto' reads it
    try:
        download_s, upload_s = _copy(run, checkpoint, workdir, endpoint_url)
    except BaseException as e:  # failed or interrupted: said in run.json; the next run redoes it
        RunRecord.stopped(run, e)
        raise
    RunRecord.completed(run, [IMPORT_STEP], 0, upload_s=upload_s, download_s=download_s)
    echo(f"[import] {name}: {checkpoint.path} -> {run.uri(checkpoint_prefix(run.run_id))}")
    return ImportResult(run.run_id, run.uri(), False, time.monotonic() - start, upload_s, download_s)


def _copy(run: RunLayout, checkpoint: InitCheckpoint, workdir: Path, endpoint_url: str | None) -> tuple[float, float]:
    """The folder to ``checkpoints/global_step_0/huggingface/`` of ``run``, manifest last; (download_s, upload_s)."""
    t0 = time.monotonic()
    folder = resolve_model_dir(checkpoint.model(), workdir, endpoint_url)  # s3: downloaded and checked once
    download_s, t0 = time.monotonic() - t0, time.monotonic()
    store, prefix = run.store, run.checkpoint(IMPORT_STEP)
    store.delete(f"{prefix}/{MANIFEST_NAME}")  # an interrupted import's checkpoint is incomplete until redone
    hf = hf_folder()
    entries = store.put_files(folder, f"{prefix}/{hf}", _files(folder))
    entries = [dataclasses.replace(e, path=f"{hf}/{e.path}") for e in entries]
    store.check_uploaded(prefix, entries)
    store.write_manifest(prefix, Manifest(files=entries, metadata={"run_id": run.run_id, "global_step": IMPORT_STEP}))
    return download_s, time.monotonic() - t0
