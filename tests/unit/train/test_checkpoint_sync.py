"""Checkpoint sync and metrics merging, on fake verl outputs, against a local folder and the moto S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stable_verl.artifacts import MANIFEST_NAME, RunLayout
from stable_verl.train.checkpoint_sync import (
    TRACKER,
    CheckpointSyncer,
    MetricsLog,
    check_steps,
    restore_latest,
)
from tests.support.s3 import local_or_s3


def _log(path: Path, *steps: int, tag: str = "") -> None:
    """Append verl file-logger lines ``{"step": n, "data": {...}}``."""
    with path.open("a") as f:
        for step in steps:
            f.write(json.dumps({"step": step, "data": {"loss": float(step), "tag": tag}}) + "\n")


def _save(ckpt_root: Path, step: int) -> None:
    """What verl leaves after a completed save: the step's folder, then the tracker file."""
    d = ckpt_root / f"global_step_{step}" / "actor"
    d.mkdir(parents=True)
    (d / "model.pt").write_bytes(bytes([step]) * 100)
    (ckpt_root / TRACKER).write_text(str(step))


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> RunLayout:
    return RunLayout(local_or_s3(request, tmp_path), "rl-test-00000000")


def test_merge_keeps_earlier_attempts_up_to_the_resumed_step(tmp_path):
    # Attempt 1 logged steps 1-3 and died after checkpoint 2; attempt 2 resumed from 2 and logged 3-5
    # (verl's "wb" truncates, so each attempt has its own file). Step 3 must come from attempt 2 only.
    previous = [{"step": s, "loss": float(s), "tag": "a1"} for s in (1, 2, 3)]
    attempt2 = tmp_path / "metrics-attempt-2.jsonl"
    _log(attempt2, 3, 4, tag="a2")
    with attempt2.open("a") as f:
        f.write('{"step": 5, "data": {"lo')  # verl caught mid-write: dropped
    merged = MetricsLog(previous, resumed_step=2, attempt_file=attempt2)
    assert merged.steps() == [1, 2, 3, 4]
    assert [r["tag"] for r in merged.rows()] == ["a1", "a1", "a2", "a2"]


def test_check_steps_rejects_gaps_and_duplicates():
    check_steps([1, 2, 3], 3)
    for bad in ([1, 3], [1, 2, 2, 3], [1, 2]):
        with pytest.raises(RuntimeError, match="expected 1..3"):
            check_steps(bad, 3)


def test_syncer_uploads_a_checkpoint_only_once_its_metrics_row_exists(run, tmp_path):
    ckpt_root, metrics_file = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    ckpt_root.mkdir()
    syncer = CheckpointSyncer(run, ckpt_root, MetricsLog([], 0, metrics_file), echo=lambda _: None)
    _log(metrics_file, 1)
    _save(ckpt_root, 1)
    _save(ckpt_root, 2)  # the RL trainer saves step 2 before logging it
    assert syncer.sync_once() == [1]
    assert run.checkpoint_steps() == [1] and [r["step"] for r in run.read_metrics()] == [1]
    assert (ckpt_root / "global_step_1" / MANIFEST_NAME).exists()  # local copy marked as synced
    _log(metrics_file, 2)
    assert syncer.sync_once() == [2] and syncer.sync_once() == []
    assert run.checkpoint_steps() == [1, 2] and [r["step"] for r in run.read_metrics()] == [1, 2]


def test_syncer_thread_syncs_while_running_and_on_stop(run, tmp_path):
    ckpt_root, metrics_file = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    ckpt_root.mkdir()
    syncer = CheckpointSyncer(run, ckpt_root, MetricsLog([], 0, metrics_file), poll_s=0.05, echo=lambda _: None)
    syncer.start()
    _log(metrics_file, 1)
    _save(ckpt_root, 1)
    syncer.stop(final_sync=True)
    assert syncer.uploaded == [1] and run.checkpoint_steps() == [1]


def test_restore_latest_skips_an_incomplete_upload(run, tmp_path):
    src = tmp_path / "src"
    for step in (1, 2):
        _save(src, step)
        run.upload_checkpoint(src / f"global_step_{step}", step)
    run.store.delete(f"{run.checkpoint(2)}/{MANIFEST_NAME}")  # step 2's upload never finished
    local = tmp_path / "ckpt"
    (local / "global_step_9").mkdir(parents=True)  # stale local state is discarded
    assert restore_latest(run, local) == 1
    assert (local / TRACKER).read_text() == "1"
    assert sorted(p.name for p in local.iterdir()) == ["global_step_1", TRACKER]
    assert (local / "global_step_1" / "actor" / "model.pt").read_bytes() == bytes([1]) * 100


def test_restore_latest_without_checkpoints_starts_from_scratch(run, tmp_path):
    assert restore_latest(run, tmp_path / "ckpt") == 0
    assert list((tmp_path / "ckpt").iterdir()) == []


def test_rows_of_one_step_are_merged(tmp_path):
    """verl's SFT trainer logs validation as a second row at the last step: neither row may be lost."""
    attempt = tmp_path / "attempt.jsonl"
    attempt.write_text(
        json.dumps({"step": 1, "data": {"train/loss": 2.0}})
        + "\n"
        + json.dumps({"step": 2, "data": {"train/loss": 1.5}})
        + "\n"
        + json.dumps({"step": 2, "data": {"val/loss": 1.7}})
        + "\n"
    )
    rows = MetricsLog([], 0, attempt).rows()
    assert rows == [{"step": 1, "train/loss": 2.0}, {"step": 2, "train/loss": 1.5, "val/loss": 1.7}]
