"""The tracked-stage lifecycle (skip, fail, resume, merge) with a stand-in trainer, in seconds.

The stand-in (tests/support/standin.py) follows verl's file contract only. The real verl path is covered end to end
in tests/integration/test_coldstart_flow.py.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.lease import Lease
from stable_verl.launch.runner import VerlRunError
from stable_verl.train.lifecycle import run_tracked
from tests.support.standin import standin_job


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> RunLayout:
    if request.param == "local":
        return RunLayout(ArtifactStore(str(tmp_path / "store")), "rl-standin-00000000")
    return RunLayout(request.getfixturevalue("moto_s3").store(), "rl-standin-00000000")


def test_killed_stage_resumes_from_the_store_and_merges_metrics(run, tmp_path):
    quiet = lambda _: None  # noqa: E731
    with pytest.raises(VerlRunError, match="exited with code -9"):
        run_tracked(run, standin_job(total=5, die_at=3), tmp_path / "attempt1", echo=quiet)
    record = run.read_run()
    assert record["status"] == "failed" and "code -9" in record["error"]
    # the error names the log where the store keeps it, not this machine's scratch folder
    assert f"full log: {run.prefix}/logs/attempt-1.log" in record["error"] and str(tmp_path) not in record["error"]
    assert run.checkpoint_steps() == [1, 2]  # synced before the kill (or by the final sync after it)

    # A fresh machine (new local dir): everything comes from the store.
    result = run_tracked(run, standin_job(total=5), tmp_path / "attempt2", echo=quiet)
    assert not result.skipped and result.resumed_from == 2 and result.checkpoints == [1, 2, 3, 4, 5]
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["started_at"] for r in rows] == [0, 0, 2, 2, 2]  # steps <= 2 from attempt 1, later ones from attempt 2
    record = run.read_run()
    assert record["status"] == "complete" and record["attempts"] == 2
    assert run.store.exists(f"{run.prefix}/logs/attempt-1.log") and run.store.exists(f"{run.prefix}/logs/attempt-2.log")


def test_complete_stage_is_skipped(run, tmp_path):
    run_tracked(run, standin_job(total=2), tmp_path / "a", echo=lambda _: None)
    again = run_tracked(run, standin_job(total=2, die_at=1), tmp_path / "b", echo=lambda _: None)  # would die if run
    assert again.skipped and again.checkpoints == [1, 2] and run.read_run()["attempts"] == 1


def test_complete_stage_removes_the_lease_a_killed_holder_left(run, tmp_path):
    # kill -9 of the flow between run.json "complete" and the lease's release: the rerun skips the run and
    # removes the dead holder's lease, which would otherwise stay in the store for ever.
    run_tracked(run, standin_job(2), tmp_path / "local", echo=lambda _: None)
    dead = Lease(run.store, "train", run.run_id, owner=f"{socket.gethostname()}/pid 999999999/dead", ttl_s=-1)
    dead._write()
    assert dead.read() is not None
    again = run_tracked(run, standin_job(2), tmp_path / "local", echo=lambda _: None)
    assert again.skipped and dead.read() is None


def test_stage_whose_last_checkpoint_is_stored_only_finalizes(run, tmp_path):
    # Killed after its last checkpoint was synced but before run.json said complete: no verl needed.
    run_tracked(run, standin_job(total=2), tmp_path / "a", echo=lambda _: None)
    run.update_run(status="failed")
    again = run_tracked(run, standin_job(total=2, die_at=1), tmp_path / "b", echo=lambda _: None)
    assert not again.skipped and again.verl_s == 0.0 and run.read_run()["status"] == "complete"
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_bad_command_fails_and_is_not_marked_complete(run, tmp_path):
    broken = standin_job(total=2, argv=lambda root: [sys.executable, "-c", "raise SystemExit(2)"])
    with pytest.raises(VerlRunError, match="exited with code 2"):
        run_tracked(run, broken, Path(tmp_path / "a"), echo=lambda _: None)
    assert run.read_run()["status"] == "failed" and run.checkpoint_steps() == []
