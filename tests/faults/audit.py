"""What a store must look like after a flow survived injected faults: every manifest verifies, and every run
marked complete has all its files."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from stable_verl.artifacts import (
    MANIFEST_NAME,
    ArtifactIntegrityError,
    ArtifactStore,
    IncompleteArtifactError,
    RunLayout,
    list_runs,
)
from stable_verl.artifacts.run_record import RunRecord


@dataclass
class StoreAudit:
    manifests: int = 0
    """``_MANIFEST.json`` files found (checkpoints, evaluations, comparisons)."""
    files_verified: int = 0
    """Files downloaded and checked against their manifest's size and sha256."""
    corrupt: list[str] = field(default_factory=list)
    """Prefixes whose manifest is invalid or whose files do not match it (missing, other size or sha256)."""
    complete_runs: int = 0
    complete_runs_missing_files: list[str] = field(default_factory=list)
    """Runs marked complete with a listed checkpoint, their metrics, config or command missing or incomplete."""


def audit_store(store: ArtifactStore) -> StoreAudit:
    """Download every manifested directory of ``store`` with :meth:`ArtifactStore.get_dir` (sha256 of every file),
    and check every complete run's record against the store."""
    audit = StoreAudit()
    for path in store.glob(f"**/{MANIFEST_NAME}"):
        prefix = path.rsplit("/", 1)[0]
        audit.manifests += 1
        scratch = Path(tempfile.mkdtemp(prefix="audit-"))
        try:
            audit.files_verified += len(store.get_dir(prefix, scratch).files)
        except (ArtifactIntegrityError, IncompleteArtifactError):
            audit.corrupt.append(prefix)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    for entry in list_runs(store):
        run = RunLayout(store, entry["run_id"])
        record = RunRecord.read(run)
        if record is None or not record.complete:
            continue
        audit.complete_runs += 1
        needed = [run.metrics_jsonl, run.config_yaml, run.command_json]
        checkpoints = [run.checkpoint(s) for s in record.checkpoints]
        if record.parent_checkpoint:
            checkpoints.append(record.parent_checkpoint)
        complete = record.checkpoints and all(store.is_complete(c) for c in checkpoints)
        if not complete or not all(store.exists(rel) for rel in needed):
            audit.complete_runs_missing_files.append(run.run_id)
    return audit
