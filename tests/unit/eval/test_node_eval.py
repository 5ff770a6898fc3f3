"""The evaluation job's entrypoint (``eval.node_eval``) on a "node" folder of its own: the worker runs as a child
whose output reaches the store as ``logs/<Ray submission id>-node.log`` of every run evaluated, also when it fails.
Here the worker fails at once (no ``--bench``: argparse, before vLLM); the whole evaluation as a Ray Job on the
two-node cluster, with its node log, is tests/integration/test_ray_job_launcher.py."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.env import NODE_DIR, SYNC_ROOT
from stable_verl.eval import node_eval
from stable_verl.launch.teed import run_teed

RUNS = ("rl-a-00000000", "sft-b-00000000")
JOB = "eval-0123abcd-a1-r2"


def test_a_failed_worker_leaves_its_log_in_every_evaluated_run(tmp_path, monkeypatch):
    store = ArtifactStore(str(tmp_path / "store"))
    monkeypatch.setenv(NODE_DIR.name, str(tmp_path / "node"))
    monkeypatch.setenv(SYNC_ROOT.name, str(tmp_path / "store"))
    # what Ray sets in a job's entrypoint (its job config, with the submission id in the metadata)
    monkeypatch.setenv(node_eval.RAY_JOB_CONFIG, json.dumps({"metadata": {"job_submission_id": JOB}}))
    argv = [a for i, run in enumerate(RUNS) for a in ("--result", str(tmp_path / f"out{i}"), run, "3")]
    worker_args = ["--model", str(tmp_path / "model"), "--out", str(tmp_path / "out0")]  # no --bench

    assert node_eval.main([*argv, "--", *worker_args]) == 2  # the worker's exit code (argparse's usage error)

    for run in RUNS:
        log = store.read_text(f"{RunLayout(store, run).prefix}/logs/{JOB}-node.log")
        assert "the following arguments are required: --bench" in log, log
    assert not store.ls(f"{RunLayout(store, RUNS[0]).prefix}/eval")  # no results


def test_the_job_name_is_rays_submission_id_else_eval(monkeypatch):
    monkeypatch.delenv(node_eval.RAY_JOB_CONFIG, raising=False)
    assert node_eval.job_name() == "eval"
    monkeypatch.setenv(node_eval.RAY_JOB_CONFIG, json.dumps({"runtime_env": {}, "metadata": {}}))
    assert node_eval.job_name() == "eval"
    monkeypatch.setenv(node_eval.RAY_JOB_CONFIG, json.dumps({"metadata": {"job_submission_id": JOB}}))
    assert node_eval.job_name() == JOB


def test_a_sigterm_reaches_the_child_and_its_output_the_log(tmp_path, capsys):
    child = "import time; print('ready', flush=True); time.sleep(60)"
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))  # ``ray job stop``: SIGTERM to the entrypoint
    timer.start()
    try:
        teed = run_teed([sys.executable, "-c", child], os.environ, tmp_path / "logs" / "a.log")
    finally:
        timer.cancel()
    assert teed.signal == signal.SIGTERM and teed.code == -signal.SIGTERM and teed.exit_code == 143
    assert (tmp_path / "logs" / "a.log").read_text() == "ready\n" and "ready" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before  # the entrypoint's own handling again
