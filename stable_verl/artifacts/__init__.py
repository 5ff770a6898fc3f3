"""Artifact store: every output of the pipeline, browsable in S3 or a local folder.

Layout under a root (``./artifacts`` by default, or ``s3://bucket/prefix``)::

    runs/<run_id>/run.json                  what, when, from which config and parent checkpoint, status
    runs/<run_id>/config.yaml               the resolved config; command.json: exact verl overrides
    runs/<run_id>/metrics.jsonl             one line per step
    runs/<run_id>/checkpoints/global_step_N/...  + _MANIFEST.json (sha256 per file), written last
    runs/<run_id>/eval/global_step_N/<benchmark>/{results.json,samples.jsonl}
    comparisons/<id>/{report.md,table.csv,plots/*.png}
    index/runs/<run_id>.json                one small file per run (no shared index to race on)

Rules:

* A directory is complete only once its ``_MANIFEST.json`` (path, size, sha256 per file) exists; it is
  written last, and readers ignore directories without a valid one (:meth:`ArtifactStore.is_complete`).
* One writer per run prefix; run ids are content-addressed (:func:`run_id`), so reruns land in place.
* Credentials (``storage_options`` or the AWS environment) never reach artifacts, logs, ``repr`` or error
  messages (:mod:`stable_verl.artifacts.redact`).

Example::

    store = ArtifactStore.from_env("s3://bucket/stable-verl")   # or ArtifactStore("./artifacts")
    store.check()
    run = RunLayout(store, run_id("train", "minirl", cfg, upstream=[base_ckpt_uri]))
    run.write_run({"kind": "train", "name": "minirl", "status": "running"})
    run.upload_checkpoint("/tmp/ckpt/global_step_10", step=10)
    step = latest_complete_checkpoint(run)
"""

from stable_verl.artifacts.errors import (
    ArtifactIntegrityError,
    ArtifactStoreError,
    IncompleteArtifactError,
    ManifestError,
)
from stable_verl.artifacts.layout import (
    ComparisonLayout,
    RunLayout,
    checkpoint_path,
    config_hash,
    latest_complete_checkpoint,
    list_runs,
    parse_step_dir,
    run_id,
    step_dir,
)
from stable_verl.artifacts.manifest import MANIFEST_NAME, Manifest, ManifestEntry, build_manifest, sha256_file
from stable_verl.artifacts.redact import REDACTED, is_sensitive_key, redact, redact_url, scrub
from stable_verl.artifacts.store import DEFAULT_ROOT, ArtifactStore

__all__ = [
    "DEFAULT_ROOT",
    "MANIFEST_NAME",
    "REDACTED",
    "ArtifactIntegrityError",
    "ArtifactStore",
    "ArtifactStoreError",
    "ComparisonLayout",
    "IncompleteArtifactError",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "RunLayout",
    "build_manifest",
    "checkpoint_path",
    "config_hash",
    "is_sensitive_key",
    "latest_complete_checkpoint",
    "list_runs",
    "parse_step_dir",
    "redact",
    "redact_url",
    "run_id",
    "scrub",
    "sha256_file",
    "step_dir",
]
