"""verl stages as Ray Jobs on a real two-node Ray cluster started here (tests/support/ray_cluster.py).

The RL job's driver runs on the head node, verl's workers on the worker node (the only one with a logical GPU); the
SFT job's entrypoint (torchrun under ``train.node_sft``) on the worker node. Nothing relies on a shared filesystem:
each node keeps a scratch folder of its own (``STABLE_VERL_NODE_DIR`` on ``ray start``), which neither the other node
nor the flow reads. The command lines name node paths, and the worker node materialises the stages' inputs (the
built assets, the SFT checkpoint's HF model) from moto S3, checked against their manifests. Checkpoints and metrics
reach S3 from the node that saved them (RL: inside verl; SFT: the entrypoint's syncer), and a resumed stage
restores its checkpoint from S3 there. A stand-in trainer (verl's file contract, seconds) covers the launcher's
failure paths; one real SFT stage and one real RL stage from its checkpoint cover the inputs, ``ray job stop`` and
the resume; a SIGTERM to a flow process covers cancellation. A user's RL stage (their Qwen3-MoE folder in S3 with
its manifest, GSM8K-form prompts as an ``s3://`` parquet, a reward given as a ``.py`` file) runs there too: the worker
node takes the model and the reward file from the store, the flow's machine never downloads the weights. The SFT
stage's checkpoint is evaluated there as a Ray Job as well (no training run of its own): the worker node fetches its
HF folder alone and writes results.json, and its own log of the job, to the store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from flows._main import run_flow_main
from flows.evaluate import evaluate_flow
from flows.rl import rl_flow
from flows.sft import sft_flow
from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.manifest import sha256_file
from stable_verl.config.params import EvaluateFlowParams, RLFlowParams, SFTFlowParams
from stable_verl.launch import procs
from stable_verl.launch.ray_job import JobAlreadyRunning, RayJobLauncher
from stable_verl.launch.runner import LaunchSpec, VerlRunError, launch
from stable_verl.tasks.datasets import TaskSpec, write_task_data
from stable_verl.train.lifecycle import VerlJob, run_key, run_tracked
from stable_verl.train.node_inputs import code_key
from stable_verl.train.stages import rl_run_id, sft_run_id
from stable_verl.verl_ext.inputs import MARK
from tests.support import progress
from tests.support.cluster_runs import SFT_SETTINGS, SFT_STEPS, TASK, on_cluster, store_root
from tests.support.interrupted import run_while_killing
from tests.support.ray_cluster import LocalRayCluster
from tests.support.standin import standin_job
from tests.support.user_inputs import as_gsm8k, save_user_model, write_reward

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)

RL_STEPS = 4  # the first checkpoint in S3 triggers the stop; the margin keeps the run from ending before it lands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-job-work")


def _active(cluster: LocalRayCluster) -> dict[str, str]:
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(cluster.dashboard_url).list_jobs()
    return {j.submission_id: str(j.status) for j in jobs if str(j.status) in ("PENDING", "RUNNING")}


def _standin(cluster: LocalRayCluster, total: int, die_at: int = 0) -> VerlJob:
    return standin_job(total, die_at, env={}, launcher=lambda: RayJobLauncher(cluster.dashboard_url))


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
        stage = VerlJob("rl", "sleeper", 1, lambda root: ["sleep", "600"], {}, None, {}, launcher=lambda: first)
        monkeypatch.setattr("stable_verl.train.lifecycle.run_key", lambda _: spec.key)
        with pytest.raises(JobAlreadyRunning):
            run_tracked(run, stage, tmp_path, echo=lambda _: None)
        assert run.read_run() is None
    finally:
        first.stop()
    assert first.status() == "STOPPED", job

    start = time.monotonic()
    with pytest.raises(VerlRunError, match="timed out after 5 s"):
        launch(RayJobLauncher(), LaunchSpec(["sleep", "600"], {}, key="sleeper-timeout"), tmp_path / "t.log", 5)
    assert time.monotonic() - start < 60  # a bound that is the assertion: past timeout_s, the job is stopped promptly
    assert _active(cluster) == {}


def _rl_params(moto_s3, workdir: Path, cluster: LocalRayCluster, store: str, *more: str) -> RLFlowParams:
    return RLFlowParams.from_config(
        None,
        [
            *on_cluster(moto_s3, workdir, cluster, store),
            f"rl.total_steps={RL_STEPS}",
            "rl.save_freq=1",
            "rl.format_bonus=0.1",
            *more,
        ],
    )


@pytest.fixture(scope="module")
def sft_store(moto_s3) -> str:
    return store_root(moto_s3, "sft")


@pytest.fixture(scope="module")
def sft_run(prefect_harness, moto_s3, cluster, workdir, sft_store) -> tuple[RunLayout, dict]:
    """A short real SFT stage through the Ray Jobs launcher (the RL stage below starts from its checkpoint)."""
    params = SFTFlowParams.from_config(None, [*on_cluster(moto_s3, workdir, cluster, sft_store), *SFT_SETTINGS, *TASK])
    run = RunLayout(params.store.open(), sft_run_id(params))
    return run, sft_flow(params)


def _flow_paths(run: RunLayout, workdir: Path) -> list[str]:
    """The arguments of the run's recorded command line that name a path under the flow's workdir."""
    return [a for a in run.store.read_json(f"{run.prefix}/command.json")["overrides"] if str(workdir) in a]


def _materialised(store, folder: Path, prefix: str, sub: str = "") -> int:
    """Assert ``folder`` (on a node) holds exactly the files of ``prefix``'s manifest (``sub``: under it), each with
    the manifest's sha256, plus the mark of the check; returns how many files."""
    manifest = store.read_manifest(prefix)
    want = {
        e.path[len(sub) + 1 :] if sub else e.path: e for e in manifest.files if not sub or e.path.startswith(sub + "/")
    }
    have = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MARK}
    assert have == set(want), (have, set(want))
    for rel, entry in want.items():
        assert sha256_file(folder / rel) == entry.sha256 and (folder / rel).stat().st_size == entry.size
    assert {e["path"] for e in json.loads((folder / MARK).read_text())["files"]} == {e.path for e in want.values()}
    return len(want)


def test_sft_stage_on_the_cluster_syncs_from_its_node_and_reads_its_inputs_from_s3(sft_run, cluster, workdir):
    run, result = sft_run
    assert result["checkpoints"] == [SFT_STEPS] and not result["skipped"]
    manifest = run.store.read_manifest(run.checkpoint(SFT_STEPS))
    assert manifest is not None and any(f.path.startswith("huggingface/") for f in manifest.files)
    assert [r["step"] for r in run.read_metrics()] == list(range(1, SFT_STEPS + 1))
    # The node's own log of the job, uploaded from the node. (The flow's attempt-1.log is what the Jobs API streamed;
    # on this test cluster, whose nodes have temp dirs of their own, it streams nothing of an entrypoint that runs on
    # the worker node.)
    assert "step:" in run.store.read_text(f"{run.prefix}/logs/attempt-1-node.log")
    assert run.store.exists(f"{run.prefix}/logs/attempt-1.log")
    assert run.read_run()["status"] == "complete"
    assert not _flow_paths(run, workdir)

    # Saved on the worker node (where the entrypoint ran torchrun), nothing in the flow's folder or on the head.
    saved = cluster.node_dir("worker") / run.run_id / "checkpoints" / f"global_step_{SFT_STEPS}"
    assert (saved / "_MANIFEST.json").is_file()
    assert not list((workdir / "runs" / run.run_id).glob("checkpoints/global_step_*"))
    assert not (cluster.node_dir("head") / run.run_id).exists()
    # The inputs (the built assets) came from S3 onto the worker node, every file as its manifest says.
    [assets] = list((cluster.node_dir("worker") / "store" / "inputs" / "assets").glob("*[!k]"))
    assert _materialised(run.store, assets, f"inputs/assets/{assets.name}") >= 3
    assert not (cluster.node_dir("head") / "store").exists()


def test_evaluation_on_the_cluster_is_a_ray_job_whose_node_fetches_the_hf_folder_alone(
    prefect_harness, moto_s3, cluster, workdir, sft_run, sft_store, monkeypatch
):
    """Issue 28's evaluation on the cluster: the SFT run's checkpoint scored by a Ray Job on the worker node, the
    results in the store where a local evaluation puts them; a job that fails says so in one line naming it."""
    from ray.job_submission import JobSubmissionClient

    secret = f"flow-only-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # the flow's own credentials (moto takes any): never sent
    sft, _ = sft_run
    bench = "bench_id"
    argv = [*on_cluster(moto_s3, workdir, cluster, sft_store), f"runs=[{sft.run_id}]", *TASK]
    argv += [f"eval.benchmarks=[{bench}]", "eval.k=2", "eval.n_prompts=4"]
    client = JobSubmissionClient(cluster.dashboard_url)

    def eval_jobs() -> list:
        return [j for j in client.list_jobs() if (j.metadata or {}).get("kind") == "eval"]

    # No interpreter at that path on the node: the job fails, and the flow's error says so first, naming the job.
    with pytest.raises(VerlRunError) as failed:
        evaluate_flow(EvaluateFlowParams.from_config(None, [*argv, "launcher.python=/nonexistent/python"]))
    first = str(failed.value).splitlines()[0]
    assert re.match(r"evaluation Ray job eval-\w{8}-a1 FAILED: .*; full log: ", first), first
    assert not sft.store.exists(sft.eval_results(SFT_STEPS, bench))

    params = EvaluateFlowParams.from_config(None, argv)
    result = evaluate_flow(params)

    assert result["evaluated"] == 1 and [r["step"] for r in result["rows"]] == [SFT_STEPS]
    # Ray's records: the second job succeeded, its entrypoint (asking for the engine's GPU) ran on the worker node.
    job = next(j for j in eval_jobs() if str(j.status) == "SUCCEEDED")
    assert len(eval_jobs()) == 2 and job.submission_id.endswith("-a1-r2")
    _, worker = cluster.head_and_worker_ids()
    assert job.driver_node_id == worker
    assert job.entrypoint.startswith("python -m stable_verl.eval.node_eval --result ")
    # results.json where a local evaluation puts it, naming the store's checkpoint; written from the node.
    results = sft.store.read_json(sft.eval_results(SFT_STEPS, bench))
    assert sft.store.is_complete(sft.eval_dir(SFT_STEPS, bench))
    assert results["model"] == sft.uri(sft.checkpoint(SFT_STEPS)) and results["num_prompts"] == 4
    assert results["avg@2"] == result["rows"][0]["avg@2"]
    # The node's own log of the job (the worker's output and the uploads), uploaded from the node to the run's logs;
    # the failed job never started the entrypoint, so it left none.
    node_log = sft.store.read_text(f"{sft.prefix}/logs/{job.submission_id}-node.log")
    assert f"avg@2={results['avg@2']:.3f}" in node_log and f"step {SFT_STEPS} {bench}: results uploaded" in node_log
    assert [n for n in sft.store.ls(f"{sft.prefix}/logs") if n.startswith("eval-")] == [f"{job.submission_id}-node.log"]
    # The worker node fetched the checkpoint's HF folder alone; the flow's machine and the head, nothing of it.
    hf = cluster.node_dir("worker") / "store" / sft.checkpoint(SFT_STEPS) / "huggingface"
    assert _materialised(sft.store, hf, sft.checkpoint(SFT_STEPS), "huggingface") >= 2
    assert {p.name for p in hf.parent.iterdir()} == {"huggingface", "huggingface.lock"}
    assert not list((workdir / "runs" / sft.run_id).glob("checkpoints/global_step_*"))
    assert not (cluster.node_dir("head") / "store").exists()
    # No credentials in what Ray recorded of the jobs (entrypoint, environment, metadata), nor in the results.
    for j in eval_jobs():
        recorded = json.dumps([j.entrypoint, j.runtime_env, j.metadata])
        assert secret not in recorded and "AWS_" not in recorded and str(workdir) not in recorded, recorded
    assert secret not in json.dumps(results)
    assert _active(cluster) == {}

    # A rerun finds the results in the store: nothing evaluated, no job submitted.
    assert evaluate_flow(params)["evaluated"] == 0 and len(eval_jobs()) == 2


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


def test_rl_stage_on_the_cluster_survives_ray_job_stop_and_resumes_from_s3(
    prefect_harness, moto_s3, cluster, workdir, sft_run, sft_store
):
    sft, _ = sft_run
    params = _rl_params(moto_s3, workdir, cluster, sft_store, f"init_run={sft.run_id}", *TASK)
    run = RunLayout(params.store.open(), rl_run_id(params, sft.checkpoint(SFT_STEPS)))
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

    # Its inputs: the command names node paths only; the SFT checkpoint's HF model came from S3 onto the worker
    # node (materialised by the first verl actor there), the head (the job's driver) fetched nothing.
    assert not _flow_paths(run, workdir)
    overrides = run.store.read_json(f"{run.prefix}/command.json")["overrides"]
    model = f"${{oc.env:STABLE_VERL_NODE_DIR}}/store/{sft.checkpoint(SFT_STEPS)}/huggingface"
    assert f"actor_rollout_ref.model.path={model}" in overrides
    hf = cluster.node_dir("worker") / "store" / sft.checkpoint(SFT_STEPS) / "huggingface"
    assert _materialised(run.store, hf, sft.checkpoint(SFT_STEPS), "huggingface") >= 2
    assert {p.name for p in hf.parent.iterdir()} == {"huggingface", "huggingface.lock"}  # of the checkpoint: HF only
    assert not (cluster.node_dir("head") / "store").exists()

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

    params = _rl_params(moto_s3, workdir, cluster, store_root(moto_s3, "cancel"))
    argv = [sys.executable, "-m", "flows.rl", f"workdir={workdir}", f"store.root={params.store.root}"]
    argv += [f"store.endpoint_url={moto_s3.endpoint_url}", "launcher.kind=ray_job"]
    argv += [f"launcher.ray_address={cluster.dashboard_url}", f"rl.total_steps={RL_STEPS}"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out = progress.Output(child.stdout)
        job = out.wait_for(r"verl started: Ray job (\S+)", what="the flow to submit its job", watch_pids=[child.pid])[1]
        nodes = [node.pid for node in cluster.nodes]  # the job's driver and workers run under the nodes' trees
        running = lambda: _active(cluster).get(job) == "RUNNING"  # noqa: E731
        progress.wait_for(running, what=f"Ray job {job} to run", watch_pids=[child.pid, *nodes])
        child.send_signal(signal.SIGTERM)
        progress.wait_for(lambda: child.poll() is not None, what="the flow to exit on SIGTERM", watch_pids=[child.pid])
        assert child.returncode != 0
        assert _active(cluster) == {}, "a job outlived its cancelled flow"
        from ray.job_submission import JobSubmissionClient

        assert str(JobSubmissionClient(cluster.dashboard_url).get_job_status(job)) == "STOPPED"
    finally:
        procs.kill_tree(child.pid, grace_s=0)
        child.wait()


NODE_STORE = "${oc.env:STABLE_VERL_NODE_DIR}/store"
USER_STEPS = 2


def test_a_users_rl_stage_on_the_cluster_takes_its_model_from_s3_and_its_reward_file_through_the_store(
    prefect_harness, moto_s3, cluster, tokenizer, tmp_path, monkeypatch
):
    """Issue 25's cluster case: the RL stage a user runs locally, as a Ray Job, with the model coming from S3."""
    monkeypatch.setenv("STABLE_VERL_S3_ENDPOINT", moto_s3.endpoint_url)  # where the user's s3:// data files are
    root = store_root(moto_s3, "byo")
    store = ArtifactStore(root, moto_s3.options())
    store.put_dir(save_user_model(tmp_path / "my-moe", tokenizer), "users/my-moe")  # uploaded with its manifest
    made = write_task_data(tmp_path / "generated", TaskSpec(n_sft=16, n_rl_train=16, n_bench=8))
    store.put_files(tmp_path, "users/data", [as_gsm8k(made["rl_train"], tmp_path / "prompts.parquet").name])
    reward = write_reward(tmp_path)
    workdir = tmp_path / "work"  # the flow's machine: its own folder (the module's holds the built tiny model)
    params = RLFlowParams.from_config(
        None,
        [
            *on_cluster(moto_s3, workdir, cluster, root),
            f"model.path={store.uri('users/my-moe')}",
            f"task.rl_train=[{store.uri('users/data/prompts.parquet')}]",
            f"task.reward.path={reward}",
            "task.reward.name=score",
            f"rl.total_steps={USER_STEPS}",
            f"rl.save_freq={USER_STEPS}",
        ],
    )

    result = rl_flow(params)

    run = RunLayout(store, rl_run_id(params, None))
    assert result["checkpoints"] == [USER_STEPS] and run.read_run()["status"] == "complete"
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == list(range(1, USER_STEPS + 1))
    # The user's reward trained: its own key (verl's default returns none) and its score, every step.
    assert all(r["reward/chars"] > 0 and 0.0 <= r["critic/score/mean"] <= 1.0 for r in rows), rows

    # The command names node paths only: the model where it is in the store, the reward file's content-addressed copy.
    overrides = store.read_json(f"{run.prefix}/command.json")["overrides"]
    assert not [a for a in overrides if str(tmp_path) in a]
    assert f"actor_rollout_ref.model.path={NODE_STORE}/users/my-moe" in overrides
    code = f"inputs/code/{code_key(reward)}"
    assert f"reward.custom_reward_function.path={NODE_STORE}/{code}/my_reward.py" in overrides

    # The worker node materialised both from the store, every file as its manifest says; the head nothing.
    worker = cluster.node_dir("worker") / "store"
    assert _materialised(store, worker / "users/my-moe", "users/my-moe") >= 4  # config, weights, tokenizer files
    assert _materialised(store, worker / code, code) == 1
    assert (worker / code / "my_reward.py").read_bytes() == reward.read_bytes()
    assert not (cluster.node_dir("head") / "store").exists()
    # The flow's machine read config.json only: no weights, no model folder in its workdir.
    assert not list(workdir.rglob("*.safetensors")) and not (workdir / "models").exists()
    assert _active(cluster) == {}


@pytest.mark.parametrize(
    ("reward", "says"),
    [
        (["task.reward.path={tmp}/none.py"], "reward file {tmp}/none.py does not exist"),
        (["task.reward.path={tmp}/my_reward.py", "task.reward.name=nope"], "has no function 'nope'"),
    ],
    ids=["missing-file", "no-such-function"],
)
def test_a_bad_reward_file_on_the_cluster_is_refused_before_anything_is_submitted(
    reward, says, moto_s3, cluster, tmp_path, capsys
):
    from ray.job_submission import JobSubmissionClient

    write_reward(tmp_path)
    row = {"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": "1+1?"}]}
    pd.DataFrame([{**row, "reward_model": {"ground_truth": "2"}}]).to_parquet(tmp_path / "rl.parquet")
    root = store_root(moto_s3, "bad-reward")
    jobs = len(JobSubmissionClient(cluster.dashboard_url).list_jobs())
    argv = [*on_cluster(moto_s3, tmp_path / "work", cluster, root), f"task.rl_train=[{tmp_path / 'rl.parquet'}]"]

    code = run_flow_main("flows.rl", argv + [r.format(tmp=tmp_path) for r in reward])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says.format(tmp=tmp_path) in err[0], err
    assert len(JobSubmissionClient(cluster.dashboard_url).list_jobs()) == jobs  # nothing submitted
    assert not ArtifactStore(root, moto_s3.options()).ls("")  # nothing written
