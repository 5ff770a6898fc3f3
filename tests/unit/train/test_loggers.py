"""``logging.backends``: W&B, MLflow, TensorBoard beside verl's console and file loggers, never in a run id, with
their credentials only in the environment.

The argv and environment are checked here; verl's own ``Tracking`` then logs through the backends with exactly
that environment (TensorBoard event files, an MLflow SQLite store, W&B offline). The real SFT and RL stages with
trackers on are those of the cold-start run in tests/integration/test_user_inputs_coldstart.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.redact import env_secrets
from stable_verl.cli import main
from stable_verl.config import cpu_env
from stable_verl.config.params import ColdstartParams, RLFlowParams, SFTFlowParams
from stable_verl.config.stages import Logging, RLStage, SFTStage
from stable_verl.launch import tracking
from stable_verl.train import verl_command
from stable_verl.train.assets import planned_assets
from stable_verl.train.lifecycle import launch_spec
from stable_verl.train.plan import plan_coldstart
from stable_verl.train.stages import rl_job, rl_run_id, sft_run_id

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "run_ids.json").read_text())
PATHS = [Path(p) for p in ("m", "t", "v", "o/rl-x-1234/checkpoints")]
TRACKERS = ["logging.backends=[tensorboard,mlflow,wandb]", "logging.project=team-rl"]
SECRETS = {"WANDB_API_KEY": "wandb-secret-0123456789", "MLFLOW_TRACKING_TOKEN": "mlflow-secret-0123456789"}


def test_backends_are_added_to_console_and_file_for_sft_and_rl():
    log = Logging(backends=["tensorboard", "mlflow"], project="team-rl")
    for argv in (
        verl_command.sft_argv(SFTStage(), *PATHS, log=log),
        verl_command.ppo_overrides(RLStage(), *PATHS, log=log),
    ):
        assert "trainer.logger=[console,file,tensorboard,mlflow]" in argv
        assert "trainer.project_name=team-rl" in argv and "trainer.experiment_name=rl-x-1234" in argv
    for argv in (verl_command.sft_argv(SFTStage(), *PATHS), verl_command.ppo_overrides(RLStage(), *PATHS)):
        assert "trainer.logger=[console,file]" in argv and "trainer.project_name=stable-verl" in argv


def test_trackers_never_change_a_run_id():
    plain, tracked = RLFlowParams(), RLFlowParams.from_config(None, TRACKERS)
    assert tracked.logging.backends == ["tensorboard", "mlflow", "wandb"]
    assert rl_run_id(plain, None) == rl_run_id(tracked, None)
    assert sft_run_id(SFTFlowParams()) == sft_run_id(SFTFlowParams.from_config(None, TRACKERS))
    stages = plan_coldstart(ColdstartParams.from_config(None, TRACKERS))
    assert [s.run_id for s in stages] == GOLDEN["coldstart_defaults"]
    assert all("trainer.logger=[console,file,tensorboard,mlflow,wandb]" in s.argv for s in stages)


@pytest.mark.parametrize(
    ("backends", "message"),
    [(["console"], "console and file are always on"), (["neptune"], "no tracker"), (["mlflow", "mlflow"], "distinct")],
)
def test_bad_backends_are_refused(backends, message):
    with pytest.raises(ValueError, match=message):
        Logging(backends=backends)


def test_on_cpu_wandb_is_off_unless_the_user_says_otherwise(monkeypatch):
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert cpu_env.verl_env()["WANDB_MODE"] == "disabled" and cpu_env.cluster_env()["WANDB_MODE"] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert cpu_env.verl_env()["WANDB_MODE"] == "offline" and cpu_env.cluster_env()["WANDB_MODE"] == "offline"
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: False)
    monkeypatch.delenv("WANDB_MODE")
    assert "WANDB_MODE" not in cpu_env.verl_env()  # on GPU: W&B's own default


def test_a_ray_job_gets_the_trackers_settings_but_no_secret(monkeypatch):
    settings = {
        "WANDB_MODE": "offline",
        "WANDB_ENTITY": "team",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "TENSORBOARD_DIR": "/shared/tb",
    }
    for name, value in {**settings, **SECRETS}.items():
        monkeypatch.setenv(name, value)
    env = cpu_env.cluster_env(cpu=False, backends=["wandb", "mlflow", "tensorboard"])
    assert {k: env[k] for k in settings} == settings
    assert not set(SECRETS) & set(env) and not set(SECRETS.values()) & set(env.values())
    assert not set(settings) & set(cpu_env.cluster_env(cpu=False))  # no trackers: nothing of theirs
    assert set(cpu_env.cluster_env(cpu=False, backends=["mlflow"])) & set(settings) == {"MLFLOW_TRACKING_URI"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:pa55word@mlflow:5000")
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI holds a password"):
        cpu_env.cluster_env(cpu=False, backends=["mlflow"])


def test_tracker_credentials_are_secrets_the_store_scrubs():
    env = {**SECRETS, "MLFLOW_TRACKING_PASSWORD": "pw-0123456789", "DATABRICKS_TOKEN": "dapi-0123456789"}
    assert env_secrets(env) == set(env.values())
    assert not env_secrets({"MLFLOW_TRACKING_URI": "http://mlflow:5000", "WANDB_MODE": "offline"})


def test_each_attempt_joins_the_runs_wandb_run_and_tensorboard_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    p = RLFlowParams.from_config(None, [*TRACKERS, f"workdir={tmp_path / 'w'}", f"store.root={tmp_path / 's'}"])
    run = RunLayout(ArtifactStore.from_env(str(tmp_path / "s")), rl_run_id(p, None))
    job = rl_job(p, planned_assets(tmp_path / "w", p.model, p.task, p.seed), None, None)
    for attempt in (1, 2):
        spec = launch_spec(run, job, ["verl"], tmp_path / "w", attempt, tmp_path / "m.jsonl")
        assert spec.env["WANDB_RUN_ID"] == run.run_id and spec.env["WANDB_RESUME"] == "allow"
        assert spec.env["TENSORBOARD_DIR"] == f"{tmp_path / 'tb'}/team-rl/{run.run_id}"
    plain = rl_job(RLFlowParams(), planned_assets(tmp_path / "w", p.model, p.task, p.seed), None, None)
    env = launch_spec(run, plain, ["verl"], tmp_path / "w", 1, tmp_path / "m.jsonl").env
    assert "WANDB_RUN_ID" not in env and env["TENSORBOARD_DIR"] == str(tmp_path / "tb")  # not ours to touch


def test_plan_of_a_ray_job_shows_the_settings_and_never_a_secret(monkeypatch, capsys):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    argv = ["plan", "rl", "launcher.kind=ray_job", "launcher.ray_address=http://head:8265", *TRACKERS]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert not [s for s in SECRETS.values() if s in out]
    command = shlex.split(out.split("\n", 1)[1].replace("\\\n", " "))
    env = json.loads(next(a for a in command if a.startswith("--runtime-env-json=")).split("=", 1)[1])["env_vars"]
    assert out.startswith("# RL rl-grpo-") and env["WANDB_RUN_ID"] == out.split()[2]  # the run's own id
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["WANDB_RESUME"] == "allow"
    assert "trainer.logger=[console,file,tensorboard,mlflow,wandb]" in command


def test_verls_tracking_logs_to_every_backend_with_the_stage_environment(monkeypatch, tmp_path):
    """verl's own ``Tracking``, in the environment a stage's attempts get: TensorBoard event files, MLflow's SQLite
    store and W&B offline runs hold every step; two attempts of one run share its W&B run id."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is in infra/requirements-cpu.lock: reinstall it")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from verl.utils.tracking import Tracking

    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)
    monkeypatch.setenv("WANDB_MODE", "offline")  # the user's choice beats the CPU default
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    (tmp_path / "wandb").mkdir()
    backends = ["tensorboard", "mlflow", "wandb"]
    run_id = "rl-grpo-0123abcd"
    env = {**cpu_env.verl_env(), **tracking.run_env(backends, "team-rl", run_id, cpu_env.verl_env())}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for attempt, steps in ((1, (1, 2)), (2, (3,))):  # the second attempt resumes after step 2
        monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / f"metrics-attempt-{attempt}.jsonl"))
        tracker = Tracking("team-rl", run_id, default_backend=[*tracking.ALWAYS, *backends], config={"trainer": {}})
        for step in steps:
            tracker.log({"actor/loss": 0.5 * step, "reward/acc": step / 10}, step=step)
        tracker.finish()

    events = EventAccumulator(str(tmp_path / "tb" / "team-rl" / run_id))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("actor/loss")] == [(1, 0.5), (2, 1.0), (3, 1.5)]
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("team-rl").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [run_id, run_id]  # one MLflow run per attempt, named the run
    history = sorted((m.step, m.value) for r in runs for m in client.get_metric_history(r.info.run_id, "reward/acc"))
    assert history == [(1, 0.1), (2, 0.2), (3, 0.3)]
    offline = sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(d.name.endswith(f"-{run_id}") for d in offline)  # both attempts: one W&B run
    rows = [json.loads(line) for a in (1, 2) for line in (tmp_path / f"metrics-attempt-{a}.jsonl").read_text().split()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # the file logger the store reads still has every step
