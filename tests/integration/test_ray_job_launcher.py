"""verl stages as Ray Jobs on a real two-node Ray cluster started here (tests/integration/ray_cluster.py).

The job's driver runs on the head node, verl's workers on the worker node (the only one with a logical GPU).
The RL stage's checkpoints and metrics reach moto S3 from inside verl, on the node that saved them, and a resumed
stage restores its checkpoint from S3 there: each node saves into a scratch folder of its own
(``STABLE_VERL_NODE_DIR`` on ``ray start``), which neither the other node nor the flow reads, so nothing relies on
a shared filesystem. A stand-in trainer (verl's file contract, seconds; the flow's watcher of a shared folder, as
for SFT) covers the launcher's failure paths; one real RL stage covers ``ray job stop`` and the resume; a SIGTERM
to a flow process covers cancellation.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from flows.rl import rl_flow
from stable_verl.artifacts import RunLayout
from stable_verl.pipeline.launch import procs
from stable_verl.pipeline.launch.ray_job import JobAlreadyRunning, RayJobLauncher
from stable_verl.pipeline.launch.runner import LaunchSpec, VerlRunError, launch
from stable_verl.pipeline.params import RLFlowParams
from stable_verl.pipeline.run_lifecycle import VerlJob, run_key, run_tracked
from stable_verl.pipeline.train_stages import rl_run_id
from tests.integration.interrupted import run_while_killing
from tests.integration.ray_cluster import LocalRayCluster, start_cluster
from tests.unit.test_tracked_stage import TRAINER

pytestmark = pytest.mark.slow

RL_STEPS = 4  # the first checkpoint in S3 triggers the stop; the margin keeps the run from ending before it lands


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, moto_s3) -> LocalRayCluster:
    # After moto_s3: its fake AWS credentials are in the environment each node starts with.
    started = start_cluster(tmp_path_factory.mktemp("ray-cluster-logs"))
    try:
        yield started
    finally:
        started.stop()
        leftover = {pid for node in started.nodes for pid in procs.tree(node.pid)}
        assert not leftover, f"cluster processes outlived the cluster: {leftover}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-job-work")


def _active(cluster: LocalRayCluster) -> dict[str, str]:
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(cluster.dashboard_url).list_jobs()
    return {j.submission_id: str(j.status) for j in jobs if str(j.status) in ("PENDING", "RUNNING")}


def _standin(cluster: LocalRayCluster, total: int, die_at: int = 0) -> VerlJob:
    return VerlJob(
        kind="rl",
        name="stand-in",
        total_steps=total,
        argv=lambda root: [sys.executable, "-c", TRAINER, str(root), str(total), str(die_at)],
        env={},
        timeout_s=120,
        config={"total": total},
        launcher=lambda: RayJobLauncher(cluster.dashboard_url),
    )


def test_a_failed_job_fails_the_stage_and_the_next_job_resumes_it(cluster, moto_s3, tmp_path):
    run = RunLayout(moto_s3.store(), "rl-standin-00000000")
    quiet = lambda _: None  # noqa: E731
    with pytest.raises(VerlRunError, match=r"Ray job rl-standin-00000000-\w{8}-a1 FAILED"):
        run_tracked(run, _standin(cluster, total=4, die_at=3), tmp_path / "a1", echo=quiet)
    assert run.read_run()["status"] == "failed" and run.checkpoint_steps() == [1, 2]

    result = run_tracked(run, _standin(cluster, total=4), tmp_path / "a2", echo=quiet)
    assert result.resumed_from == 2 and result.checkpoints == [1, 2, 3, 4]
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4]
    log = run.store.read_text(f"{run.prefix}/logs/attempt-2.log")  # the job's output, streamed here
    assert "step:3 - loss:1.0" in log and "step:4 - loss:1.0" in log


def test_a_run_already_running_is_refused_and_the_timeout_stops_the_job(cluster, moto_s3, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", cluster.dashboard_url)  # the address from the environment
    spec = LaunchSpec(["sleep", "600"], {}, name="sleeper", key=f"sleeper-{uuid.uuid4().hex[:6]}")
    first = RayJobLauncher()
    job = first.start(spec)
    try:
        with pytest.raises(JobAlreadyRunning, match="already running this run as Ray job"):
            RayJobLauncher().start(LaunchSpec(spec.argv, {}, name="sleeper", key=spec.key, attempt=2))
        # The tracked stage refuses before it writes anything: run.json still says what the running job wrote.
        run = RunLayout(moto_s3.store(), "rl-sleeper-00000000")
        stage = VerlJob("rl", "sleeper", 1, lambda root: ["sleep", "600"], {}, 60, {}, launcher=lambda: first)
        monkeypatch.setattr("stable_verl.pipeline.run_lifecycle.run_key", lambda _: spec.key)
        with pytest.raises(JobAlreadyRunning):
            run_tracked(run, stage, tmp_path, echo=lambda _: None)
        assert run.read_run() is None
    finally:
        first.stop()
    assert first.status() == "STOPPED", job

    start = time.monotonic()
    with pytest.raises(VerlRunError, match="timed out after 5 s"):
        launch(RayJobLauncher(), LaunchSpec(["sleep", "600"], {}, key="sleeper-timeout"), tmp_path / "t.log", 5)
    assert time.monotonic() - start < 60
    assert _active(cluster) == {}


def _rl_params(moto_s3, workdir: Path, cluster: LocalRayCluster, name: str) -> RLFlowParams:
    store = f"s3://{moto_s3.bucket}/{name}-{uuid.uuid4().hex[:8]}"
    return RLFlowParams.from_config(
        None,
        [
            f"workdir={workdir}",
            f"store.root={store}",
            f"store.endpoint_url={moto_s3.endpoint_url}",
            "launcher.kind=ray_job",
            f"launcher.ray_address={cluster.dashboard_url}",
            f"rl.total_steps={RL_STEPS}",
            "rl.save_freq=1",
            "rl.format_bonus=0.1",
        ],
    )


def _stop_after_first_checkpoint(cluster: LocalRayCluster, run: RunLayout, stopped: list, stop: threading.Event):
    """Watcher: once a checkpoint is complete in S3, ``ray job stop`` the running job (the CLI's call, over the SDK)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard_url)
    while not stop.wait(0.3):
        if run.latest_checkpoint() is not None:
            for sid in _active(cluster):
                client.stop_job(sid)
                stopped.append(sid)
            return


def test_rl_stage_on_the_cluster_survives_ray_job_stop_and_resumes_from_s3(prefect_harness, moto_s3, cluster, workdir):
    params = _rl_params(moto_s3, workdir, cluster, "rayjob")
    run = RunLayout(params.store.open(), rl_run_id(params, None))
    stopped: list[str] = []
    error, _ = run_while_killing(rl_flow, params, _stop_after_first_checkpoint, cluster, run, stopped)
    assert stopped == [f"{run_key(run)}-a1"], stopped
    assert isinstance(error, VerlRunError) and "STOPPED" in str(error), error
    first = run.checkpoint_steps()
    assert first and first[-1] < RL_STEPS and run.read_run()["status"] == "failed"

    result = rl_flow(params)  # the rerun: resumes from the store's last checkpoint
    assert result["resumed_from"] == first[-1] and result["checkpoints"] == list(range(1, RL_STEPS + 1))
    assert [r["step"] for r in run.read_metrics()] == list(range(1, RL_STEPS + 1))  # each step exactly once
    for step in result["checkpoints"]:
        assert run.store.read_manifest(run.checkpoint(step)) is not None
    record = run.read_run()
    assert record["status"] == "complete" and record["attempts"] == 2
    assert "step:" in run.store.read_text(f"{run.prefix}/logs/attempt-2.log")

    # No shared filesystem: verl saved (and restored) every file on the worker node, in its own scratch, and
    # nothing in the folders the flow or the head would read; every file of each manifest came through S3.
    saved = cluster.node_dir("worker") / run.run_id / "checkpoints"
    assert (saved / f"global_step_{RL_STEPS}" / "actor" / "model_world_size_1_rank_0.pt").is_file()
    assert (saved / f"global_step_{RL_STEPS}" / "data.pt").is_file()
    assert not (cluster.node_dir("head") / run.run_id).exists()
    flow_local = workdir / "runs" / run.run_id / "checkpoints"
    assert not list(flow_local.glob("global_step_*")), list(flow_local.iterdir())
    manifest = run.store.read_manifest(run.checkpoint(RL_STEPS))
    paths = {f.path for f in manifest.files}
    assert {"data.pt", "actor/model_world_size_1_rank_0.pt", "actor/optim_world_size_1_rank_0.pt"} <= paths
    assert manifest.metadata["upload_s"] > 0

    # The driver ran on the head, verl's workers on the worker node.
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors

    head, worker = cluster.head_and_worker_ids()
    assert JobSubmissionClient(cluster.dashboard_url).get_job_info(f"{run_key(run)}-a2").driver_node_id == head
    actors = list_actors(address=cluster.dashboard_url, limit=10_000)
    placed = {a.node_id for a in actors if a.class_name in ("WorkerDict", "vLLMHttpServer", "TaskRunnerV1")}
    assert placed == {worker}, placed
    assert _active(cluster) == {}


def test_a_cancelled_flow_leaves_no_job_running(prefect_harness, moto_s3, cluster, workdir):
    """``python -m flows.rl`` on the cluster in a child process; SIGTERM (Prefect's cancellation) once its job runs."""
    from prefect.settings import PREFECT_API_URL

    params = _rl_params(moto_s3, workdir, cluster, "cancel")
    argv = [sys.executable, "-m", "flows.rl", f"workdir={workdir}", f"store.root={params.store.root}"]
    argv += [f"store.endpoint_url={moto_s3.endpoint_url}", "launcher.kind=ray_job"]
    argv += [f"launcher.ray_address={cluster.dashboard_url}", f"rl.total_steps={RL_STEPS}"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        job, seen = None, []
        for line in child.stdout:
            seen.append(line)
            if m := re.search(r"verl started: Ray job (\S+)", line):
                job = m.group(1)
                break
        assert job is not None, "the flow never submitted its job:\n" + "".join(seen[-30:])
        deadline = time.monotonic() + 60
        while _active(cluster).get(job) != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _active(cluster).get(job) == "RUNNING"
        child.send_signal(signal.SIGTERM)
        child.stdout.close()
        assert child.wait(timeout=120) != 0
        assert _active(cluster) == {}, "a job outlived its cancelled flow"
        from ray.job_submission import JobSubmissionClient

        assert str(JobSubmissionClient(cluster.dashboard_url).get_job_status(job)) == "STOPPED"
    finally:
        procs.kill_tree(child.pid, grace_s=0)
        child.wait()
