"""``stable-verl run`` for real: the installed console script in a child process, the real parameter models and
flows, Prefect's test server, a local artifact store. (tests/unit/cli/test_cli_browse.py covers the dispatch with
stand-in modules; here nothing is stood in.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout, list_runs
from tests.support import progress

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("stable-verl"))


def stable_verl(*args: str) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "COLUMNS": "200"}
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the test harness's server
    return progress.run([CLI, *args], env=env)  # until it stops making progress (tests/support/progress.py)


def test_bad_parameters_exit_2_with_one_line_before_any_flow(tmp_path):
    done = stable_verl("run", "sft", f"workdir={tmp_path}", "sft.steps=0")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stable-verl: error: ") and "steps" in lines[0], done.stderr
    assert not any(tmp_path.iterdir())  # nothing started


def test_rl_from_a_missing_init_run_exits_2_with_one_line(prefect_harness, tmp_path):
    store = tmp_path / "store"
    done = stable_verl("run", "rl", f"workdir={tmp_path / 'work'}", f"store.root={store}", "init_run=sft-x-00000000")
    assert done.returncode == 2 and done.stdout == "", done.stdout[-2000:]
    # Prefect's own run log (flow run started, the task's traceback, "Finished in state Failed") goes to stderr
    # first; the CLI's verdict is its last line, and the only one of its own.
    lines = done.stderr.strip().splitlines()
    ours = [line for line in lines if line.startswith("stable-verl:")]
    assert ours == [lines[-1]] and lines[-1] == f"stable-verl: error: init run sft-x-00000000 does not exist in {store}"
    assert list_runs(ArtifactStore(str(store))) == []


def test_run_sft_trains_and_records_the_run(prefect_harness, tmp_path):
    # The smallest real SFT: 2 verl steps on 32 conversations, checkpoint synced into a local store.
    store = tmp_path / "store"
    settings = ["sft.steps=2", "sft.batch_size=16", "task.n_sft=32", "sft.teacher=terse"]
    done = stable_verl("run", "sft", f"workdir={tmp_path / 'work'}", f"store.root={store}", *settings)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list_runs(ArtifactStore(str(store)))
    assert [r["status"] for r in runs] == ["complete"], runs
    run_id = runs[0]["run_id"]
    assert run_id.startswith("sft-terse-") and run_id in done.stdout  # the result table names the run
    run = RunLayout(ArtifactStore(str(store)), run_id)
    assert run.checkpoint_steps() == [2]
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
