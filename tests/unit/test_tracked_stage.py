"""The tracked-stage lifecycle (skip, fail, resume, merge) with a stand-in trainer, in seconds.

The stand-in follows verl's file contract only: it resumes from ``latest_checkpointed_iteration.txt``,
writes ``global_step_N/`` then the tracker (RL order: save, then log), and logs ``{"step", "data"}`` lines
to ``$VERL_FILE_LOGGER_PATH`` opened with "wb" as verl does. The real verl path is covered end to end
in tests/integration/test_coldstart_flow.py.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.lease import Lease
from stable_verl.pipeline.launch.runner import VerlRunError
from stable_verl.pipeline.run_lifecycle import VerlJob, run_tracked

TRAINER = """
import json, os, pathlib, sys, time
root, total, die_at = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sleep_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0  # per step: a stage that takes a while, using no CPU
tracker = root / "latest_checkpointed_iteration.txt"
start = int(tracker.read_text()) if tracker.exists() else 0
log = open(os.environ["VERL_FILE_LOGGER_PATH"], "wb", buffering=0)
for step in range(start + 1, total + 1):
    time.sleep(sleep_s)
    if step == die_at:
        os.kill(os.getpid(), 9)
    ckpt = root / f"global_step_{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "weights.bin").write_bytes(bytes([step]) * 64)
    tracker.write_text(str(step))
    log.write(json.dumps({"step": step, "data": {"started_at": start}}).encode() + b"\\n")
    print(f"step:{step} - loss:1.0", flush=True)
"""


def _job(total: int, die_at: int = 0) -> VerlJob:
    return VerlJob(
        kind="rl",
        name="stand-in",
        total_steps=total,
        argv=lambda root: [sys.executable, "-c", TRAINER, str(root), str(total), str(die_at)],
        env=dict(os.environ),
        timeout_s=60,
        config={"total": total},
    )


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> RunLayout:
    if request.param == "local":
        return RunLayout(ArtifactStore(str(tmp_path / "store")), "rl-standin-00000000")
    return RunLayout(request.getfixturevalue("moto_s3").store(), "rl-standin-00000000")


def test_killed_stage_resumes_from_the_store_and_merges_metrics(run, tmp_path):
    quiet = lambda _: None  # noqa: E731
    with pytest.raises(VerlRunError, match="exited with code -9"):
        run_tracked(run, _job(total=5, die_at=3), tmp_path / "attempt1", echo=quiet)
    record = run.read_run()
    assert record["status"] == "failed" and "code -9" in record["error"]
    assert run.checkpoint_steps() == [1, 2]  # synced before the kill (or by the final sync after it)

    # A fresh machine (new local dir): everything comes from the store.
    result = run_tracked(run, _job(total=5), tmp_path / "attempt2", echo=quiet)
    assert not result.skipped and result.resumed_from == 2 and result.checkpoints == [1, 2, 3, 4, 5]
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["started_at"] for r in rows] == [0, 0, 2, 2, 2]  # steps <= 2 from attempt 1, later ones from attempt 2
    record = run.read_run()
    assert record["status"] == "complete" and record["attempts"] == 2
    assert run.store.exists(f"{run.prefix}/logs/attempt-1.log") and run.store.exists(f"{run.prefix}/logs/attempt-2.log")


def test_complete_stage_is_skipped(run, tmp_path):
    run_tracked(run, _job(total=2), tmp_path / "a", echo=lambda _: None)
    again = run_tracked(run, _job(total=2, die_at=1), tmp_path / "b", echo=lambda _: None)  # would die if run
    assert again.skipped and again.checkpoints == [1, 2] and run.read_run()["attempts"] == 1


def test_complete_stage_removes_the_lease_a_killed_holder_left(run, tmp_path):
    # kill -9 of the flow between run.json "complete" and the lease's release: the rerun skips the run and
    # removes the dead holder's lease, which would otherwise stay in the store for ever.
    run_tracked(run, _job(2), tmp_path / "local", echo=lambda _: None)
    dead = Lease(run.store, "train", run.run_id, owner=f"{socket.gethostname()}/pid 999999999/dead", ttl_s=-1)
    dead._write()
    assert dead.read() is not None
    again = run_tracked(run, _job(2), tmp_path / "local", echo=lambda _: None)
    assert again.skipped and dead.read() is None


def test_stage_whose_last_checkpoint_is_stored_only_finalizes(run, tmp_path):
    # Killed after its last checkpoint was synced but before run.json said complete: no verl needed.
    run_tracked(run, _job(total=2), tmp_path / "a", echo=lambda _: None)
    run.update_run(status="failed")
    again = run_tracked(run, _job(total=2, die_at=1), tmp_path / "b", echo=lambda _: None)
    assert not again.skipped and again.verl_s == 0.0 and run.read_run()["status"] == "complete"
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_bad_command_fails_and_is_not_marked_complete(run, tmp_path):
    job = _job(total=2)
    broken = VerlJob(**{**job.__dict__, "argv": lambda root: [sys.executable, "-c", "raise SystemExit(2)"]})
    with pytest.raises(VerlRunError, match="exited with code 2"):
        run_tracked(run, broken, Path(tmp_path / "a"), echo=lambda _: None)
    assert run.read_run()["status"] == "failed" and run.checkpoint_steps() == []
