"""The launcher seam's pure parts: Ray Job ids, entrypoints and environment, the cluster settings, the plan.

The Ray Jobs launcher itself runs against a real two-node cluster in tests/integration/test_ray_job_launcher.py.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from stable_verl.cli import main
from stable_verl.config import cpu_env
from stable_verl.config.params import ColdstartParams, RLFlowParams
from stable_verl.config.stages import RLStage, SFTStage
from stable_verl.launch.ray_job import entrypoint, job_submit_argv, resolve_address, submission_id
from stable_verl.launch.runner import LaunchSpec
from stable_verl.train import verl_command
from stable_verl.train.assets import planned_assets
from stable_verl.train.stages import rl_job, rl_run_id


def test_submission_ids_are_the_run_and_the_attempt():
    assert submission_id("rl-grpo-1234abcd-0bf10d06", 3) == "rl-grpo-1234abcd-0bf10d06-a3"


def test_the_entrypoint_runs_the_clusters_python_with_the_same_arguments():
    argv = [sys.executable, "-m", "verl.trainer.main_ppo", "trainer.logger=[console,file]", "a={x:1,y:2}"]
    command = entrypoint(argv, python="/venv/bin/python")
    assert shlex.split(command) == ["/venv/bin/python", *argv[1:]]  # quoted: the job's shell sees each as is


def test_job_submit_argv_is_what_the_launcher_submits():
    spec = LaunchSpec([sys.executable, "-m", "x", "k=v"], {"A": "1"}, key="rl-x-0000", attempt=2, num_gpus=1)
    argv = job_submit_argv("http://head:8265", spec)
    assert argv[:5] == ["ray", "job", "submit", "--address=http://head:8265", "--submission-id=rl-x-0000-a2"]
    assert json.loads(argv[5].split("=", 1)[1]) == {"env_vars": {"A": "1"}}
    assert argv[6:] == ["--entrypoint-num-gpus=1", "--", "python", "-m", "x", "k=v"]


def test_the_address_comes_from_the_parameter_or_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="launcher.ray_address or RAY_ADDRESS"):
        resolve_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "http://env:8265")
    assert resolve_address(None) == "http://env:8265"
    assert resolve_address("http://param:8265") == "http://param:8265"


def test_a_job_gets_only_the_settings_never_this_machines_environment(monkeypatch):
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    env = cpu_env.cluster_env()
    assert env["VERL_PLATFORM"] == "cpu" and env["OMP_NUM_THREADS"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PATH" not in env and "RAY_ADDRESS" not in env
    assert "RAY_ADDRESS" not in cpu_env.verl_env()  # a local CPU run starts its own Ray


def test_on_a_cluster_verl_asks_ray_for_no_resources(monkeypatch):
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)
    paths = [Path(p) for p in ("m", "t", "v", "o/c")]
    local = verl_command.ppo_overrides(RLStage(), *paths)
    assert "ray_kwargs.ray_init.num_cpus=16" in local and "+ray_kwargs.ray_init.num_gpus=1" in local
    cluster = verl_command.ppo_overrides(RLStage(nnodes=2, n_gpus_per_node=4), *paths, cluster=True)
    assert not [o for o in cluster if o.startswith(("ray_kwargs.", "+ray_kwargs."))]
    assert "trainer.nnodes=2" in cluster and "trainer.n_gpus_per_node=4" in cluster
    assert "trainer.device=cpu" in cluster  # the rest of the CPU settings stay
    assert "+transfer_queue.backend.SimpleStorage.required_node_resource=GPU" in cluster  # not on a CPU-less head
    assert not [o for o in local if "required_node_resource" in o]


def test_sft_gpus_per_node_are_torchruns_processes():
    argv = verl_command.sft_argv(SFTStage(n_gpus_per_node=2), Path("m"), Path("t"), Path("v"), Path("o/c"))
    assert "--nproc_per_node=2" in argv and "trainer.n_gpus_per_node=2" in argv
    with pytest.raises(ValueError, match="sft.nnodes must be 1"):
        SFTStage(nnodes=2)


def test_several_nodes_need_the_cluster_launcher():
    with pytest.raises(ValueError, match="rl.nnodes=2 needs a Ray cluster"):
        RLFlowParams.from_config(None, ["rl.nnodes=2"])
    p = RLFlowParams.from_config(None, ["rl.nnodes=2", "launcher.kind=ray_job", "launcher.ray_address=http://h:8265"])
    assert p.launcher.on_cluster and p.rl.nnodes == 2


def test_node_settings_at_their_default_keep_existing_run_ids():
    # The id of RLFlowParams() before nnodes / n_gpus_per_node existed (and with launcher.kind, which is operational).
    assert rl_run_id(RLFlowParams(), None) == rl_run_id(RLFlowParams.from_config(None, ["launcher.kind=ray_job"]), None)
    assert rl_run_id(RLFlowParams(), None) != rl_run_id(RLFlowParams.from_config(None, ["rl.n_gpus_per_node=2"]), None)


def test_a_gpu_cluster_can_be_driven_from_a_machine_without_one(monkeypatch):
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)  # this machine: no CUDA
    p = RLFlowParams.from_config(
        None, ["launcher.kind=ray_job", "launcher.device=gpu", "launcher.ray_address=http://h"]
    )
    job = rl_job(p, planned_assets(Path("w"), p.model, p.task, p.seed), Path("m"), None)
    argv = job.argv(Path("w/c"))
    assert "trainer.device=cpu" not in argv and "VERL_PLATFORM" not in job.env
    assert "actor_rollout_ref.actor.strategy=fsdp2" not in argv  # none of the CPU settings
    with pytest.raises(ValueError, match="launcher.device applies to launcher.kind=ray_job"):
        RLFlowParams.from_config(None, ["launcher.device=gpu"])


def test_coldstart_stages_inherit_the_launcher():
    p = ColdstartParams.from_config(None, ["launcher.kind=ray_job", "launcher.ray_address=http://h:8265"])
    assert p.rl_params("sft-x", 0).launcher.on_cluster and p.sft_params("terse", 0).launcher.on_cluster


def test_plan_prints_the_ray_job_submit_command(capsys):
    assert main(["plan", "rl", "launcher.kind=ray_job", "launcher.ray_address=http://head:8265"]) == 0
    out = capsys.readouterr().out
    command = shlex.split(out.split("\n", 1)[1].replace("\\\n", " "))
    assert command[:4] == ["ray", "job", "submit", "--address=http://head:8265"]
    assert command[command.index("--") + 1 :][:3] == ["python", "-m", "verl.trainer.main_ppo"]
    assert command[4].startswith("--submission-id=rl-") and command[4].endswith("-a1")  # the first attempt
    env = json.loads(command[5].split("=", 1)[1])["env_vars"]
    assert env["VERL_FILE_LOGGER_PATH"].endswith("metrics-attempt-1.jsonl")
