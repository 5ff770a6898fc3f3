"""The cold-start comparison on a user's own inputs, run as a user runs it: ``stable-verl run coldstart --config``.

One real run (the module's ``user_run``) serves every test here. Its inputs are what an RL team brings, written the
way they would have them:
- a Hugging Face MoE folder (a tiny Qwen3-MoE saved with ``save_pretrained``, its tokenizer with a chat template),
  with ``model.trust_remote_code`` and a chat template from a file (``model.chat_template``);
- SFT data per init in two formats: ``terse`` as parquet ``messages`` rows, ``stepwise`` as jsonl prompt/response;
- two already-trained inits (``init_checkpoints``), tiny Qwen3-MoEs of other seeds: a local folder and an ``s3://``
  prefix (uploaded with its manifest) on a real moto server, imported as complete SFT runs at step 0;
- RL prompts and a held-out benchmark in verl's RL schema with ``data_source: openai/gsm8k`` (GSM8K's ``#### n``);
- a reward given by file path, without ``**kwargs``, that defers to verl's own ``default_compute_score``;
- TensorBoard and MLflow beside the store's file logger, and a tracker credential (``WANDB_API_KEY``) in the
  environment.

Real verl SFT (both trained inits side by side), real verl RL with vLLM-CPU rollouts from each of the four inits,
real vLLM evaluation, real Prefect.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.config.params import ColdstartParams
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.models.tokenizer import CHAT_TEMPLATE
from stable_verl.tasks.datasets import TaskSpec, write_task_data
from stable_verl.train.experiment import Experiment, coldstart_graph
from tests.support.user_inputs import as_gsm8k, run_coldstart_cli, save_user_model, write_reward

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)

SECRET = "wandb-key-never-stored-0123456789"
SFT_STEPS = 8
RL_STEPS = 2
LOGGER = "trainer.logger=[console,file,tensorboard,mlflow]"


def _user_files(root: Path, tokenizer) -> dict:
    """The user's model folder, chat template, data files and reward, and the config that names them."""
    model = save_user_model(root / "my-moe", tokenizer)
    template = root / "chatml.jinja"
    template.write_text("{# my template #}" + CHAT_TEMPLATE)  # ChatML, told apart by a comment that renders nothing
    made = write_task_data(root / "generated", TaskSpec(n_sft=64, n_rl_train=32, n_bench=16))
    as_gsm8k(made["rl_train"], root / "prompts.parquet")
    as_gsm8k(made["bench_id"], root / "heldout.parquet")
    pd.read_parquet(made["sft_terse_train"]).to_parquet(root / "terse.parquet")
    with (root / "stepwise.jsonl").open("w") as f:
        for messages in pd.read_parquet(made["sft_stepwise_train"])["messages"]:
            f.write(json.dumps({"prompt": messages[0]["content"], "response": messages[1]["content"]}) + "\n")
    write_reward(root)
    return {
        "workdir": str(root / "work"),
        "store": {"root": str(root / "store")},
        "model": {"path": str(model), "trust_remote_code": True, "chat_template": str(template)},
        "task": {
            "sft": {
                "terse": {"train": [str(root / "terse.parquet")]},
                "stepwise": {"train": [str(root / "stepwise.jsonl")]},
            },
            "rl_train": [str(root / "prompts.parquet")],
            "benchmarks": {"heldout": str(root / "heldout.parquet")},
            "reward": {"path": str(root / "my_reward.py"), "name": "score"},
        },
        "teachers": ["terse", "stepwise"],
        "sft": {"steps": SFT_STEPS, "batch_size": 16, "micro_batch_size": 16, "max_length": 96, "lr": 1.0e-3},
        "rl": {
            "recipe": "minirl",
            "total_steps": RL_STEPS,
            "train_batch_size": 8,
            "rollout_n": 4,
            "micro_batch_size": 16,
            "save_freq": RL_STEPS,
            "rollout_dtype": "float32",
        },
        "eval": {"k": 2, "steps": [RL_STEPS]},
        "logging": {"backends": ["tensorboard", "mlflow"]},
    }


@dataclass(frozen=True)
class UserRun:
    """The shared run: its inputs, its store, its declared stage graph and the runs it left."""

    root: Path
    store: ArtifactStore
    graph: Experiment
    """The stage graph of the config as the CLI read it (its run ids are the ones the stages compute)."""
    trained: list[str]
    """The SFT runs trained here (teachers ``terse`` and ``stepwise``)."""
    imports: list[str]
    """The already-trained inits' runs (``ours-v1`` local, ``ours-v2`` on S3)."""
    rl_runs: list[str]
    init_sources: list[str]
    """Where the two already-trained inits were given: a local folder and an ``s3://`` prefix."""
    mlflow: Any
    """An ``mlflow.MlflowClient`` on the run's tracking store."""

    @property
    def model(self) -> Path:
        return self.root / "my-moe"

    def command(self, run_id: str) -> str:
        return self.store.read_text(RunLayout(self.store, run_id).command_json)

    def results(self, run_id: str, step: int) -> dict:
        """The benchmark ``heldout`` scored at ``step`` of ``run_id``."""
        path = self.root / "store" / "runs" / run_id / "eval" / f"global_step_{step}" / "heldout" / "results.json"
        return json.loads(path.read_text())


@pytest.fixture(scope="module")
def user_run(tokenizer, moto_s3, tmp_path_factory) -> UserRun:
    """``stable-verl run coldstart`` on the user's inputs and two already-trained inits, trackers on, a W&B key in
    its environment."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is in infra/requirements-cpu.lock: reinstall it")
    root = tmp_path_factory.mktemp("user-run")
    config = _user_files(root, tokenizer)
    local = save_tiny_model(root / "team" / "sft-v1", TinyModelSpec(), tokenizer, seed=6)
    second = save_tiny_model(root / "team" / "sft-v2", TinyModelSpec(), tokenizer, seed=7)
    bucket = moto_s3.store()
    bucket.put_dir(second, "checkpoints/sft-v2")  # how a team's folder reaches S3 with its manifest
    sources = [str(local), bucket.uri("checkpoints/sft-v2")]
    config["store"]["endpoint_url"] = moto_s3.endpoint_url
    config["init_checkpoints"] = {"ours-v1": sources[0], "ours-v2": sources[1]}
    mlflow_uri = f"sqlite:///{root / 'mlflow.db'}"
    store, sft_runs, rl_runs = run_coldstart_cli(
        root,
        config,
        TENSORBOARD_DIR=str(root / "tb"),
        MLFLOW_TRACKING_URI=mlflow_uri,
        WANDB_API_KEY=SECRET,
    )
    graph = coldstart_graph(ColdstartParams.from_config(str(root / "coldstart.yaml"), []))
    imports = sorted(r for r in sft_runs if r.startswith("sft-ours-"))
    trained = sorted(set(sft_runs) - set(imports))
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    return UserRun(root, store, graph, trained, imports, rl_runs, sources, client)


def test_each_init_is_one_run_of_the_declared_stage_graph(user_run):
    assert len(user_run.trained) == 2 and len(user_run.rl_runs) == 4, user_run.trained + user_run.rl_runs
    assert [r.rsplit("-", 1)[0] for r in user_run.imports] == ["sft-ours-v1", "sft-ours-v2"]
    # the run ids the stages compute from the config are the runs in the store (sft_run_id, import_run_id)
    assert sorted(i.run_id for i in user_run.graph.inits) == sorted(user_run.trained + user_run.imports)
    assert [i.kind for i in user_run.graph.inits] == ["sft", "sft", "import", "import"]


def test_sft_trains_the_users_folder_with_its_chat_template_file(user_run):
    for run_id in user_run.trained:
        run = RunLayout(user_run.store, run_id)
        assert run.read_run()["status"] == "complete"
        assert [r["step"] for r in run.read_metrics()] == list(range(1, SFT_STEPS + 1))
        assert run.latest_checkpoint() == SFT_STEPS
        command = user_run.command(run_id)
        assert f"model.path={user_run.model}" in command  # SFT starts from the user's folder
        assert "model.custom_chat_template=${oc.env:" in command and "model.trust_remote_code=True" in command
        assert LOGGER in command
        hf = user_run.root / "store" / "runs" / run_id / "checkpoints" / f"global_step_{SFT_STEPS}" / "huggingface"
        assert "my template" in (hf / "chat_template.jinja").read_text()  # verl saved the user's template


def test_already_trained_checkpoints_are_imported_as_complete_sft_runs_at_step_0(user_run):
    sources = {}
    for run_id in user_run.imports:  # imported, never trained: one complete checkpoint, step 0, the HF folder
        run = RunLayout(user_run.store, run_id)
        record = RunRecord.read(run)
        assert (record.kind, record.status, record.checkpoints) == ("sft", "complete", [0])
        assert not user_run.store.exists(run.command_json)  # no SFT ran
        sources[run_id] = run.read_run()["imported_from"]["path"]
    assert sorted(sources.values()) == sorted(user_run.init_sources)


def test_every_init_is_trained_by_the_same_rl_recipe_with_the_users_reward(user_run):
    last = {i.run_id: f"runs/{i.run_id}/checkpoints/global_step_{i.last_step}" for i in user_run.graph.inits}
    parents = []
    for run_id in user_run.rl_runs:
        run = RunLayout(user_run.store, run_id)
        record = RunRecord.read(run)
        assert record.complete and record.parent_checkpoint in last.values(), record.parent_checkpoint
        parents.append(record.parent_checkpoint)
        assert [r["step"] for r in run.read_metrics()] == list(range(1, RL_STEPS + 1))
        command = user_run.command(run_id)
        assert f"reward.custom_reward_function.path={user_run.root / 'my_reward.py'}" in command
        assert "reward.custom_reward_function.name=score" in command and "format_bonus" not in command
        assert "actor_rollout_ref.model.trust_remote_code=True" in command
        assert "actor_rollout_ref.model.custom_chat_template=${oc.env:" in command
        assert LOGGER in command
        if record.parent_checkpoint.endswith("global_step_0"):  # an import's step 0: its HF folder
            overrides = user_run.store.read_json(run.command_json)["overrides"]
            model_arg = next(a for a in overrides if "model.path=" in a)
            assert model_arg.endswith("global_step_0/huggingface"), model_arg
    assert sorted(parents) == sorted(last.values())  # one RL run from each init's last checkpoint


def test_the_users_benchmark_is_scored_by_the_users_reward_at_each_init_and_the_last_rl_step(user_run):
    # an init's last checkpoint (an import's: step 0, the checkpoint itself), then the RL checkpoint;
    # avg@k from `score`, the reward's other numeric key kept
    scored = [
        *((r, SFT_STEPS) for r in user_run.trained),
        *((r, 0) for r in user_run.imports),
        *((r, RL_STEPS) for r in user_run.rl_runs),
    ]
    for run_id, step in scored:
        results = user_run.results(run_id, step)
        assert 0.0 <= results["avg@2"] <= 1.0 and results["scores"]["chars"] > 0, (run_id, results)


def test_the_report_compares_every_init_on_the_users_benchmark(user_run):
    report = next((user_run.root / "store" / "comparisons").glob("*/report.md")).read_text()
    for name in ("terse", "stepwise", "ours-v1", "ours-v2", "heldout"):
        assert name in report, name


def _compared(rows: list[dict]) -> list[str]:
    """Metric names every store row has as a finite number (the ones both trackers must hold too)."""
    names = set.intersection(*(set(r) for r in rows)) - {"step"}
    ok = [n for n in sorted(names) if all(isinstance(r[n], int | float) and math.isfinite(r[n]) for r in rows)]
    return [n for n in ok if "@" not in n][:5]


def _check_trackers(run: RunLayout, steps: int, tb_root: Path, client) -> None:
    """TensorBoard and MLflow hold every step of ``run`` with the values of the store's metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = run.read_metrics()
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # the store still has every step
    names = _compared(rows)
    assert names, rows[0]
    assert list((tb_root / "stable-verl" / run.run_id).glob("events.out.tfevents.*")), run.run_id
    events = EventAccumulator(str(tb_root / "stable-verl" / run.run_id), size_guidance={"scalars": 0})
    events.Reload()
    (mlrun,) = client.search_runs(
        [client.get_experiment_by_name("stable-verl").experiment_id], f"attributes.run_name = '{run.run_id}'"
    )
    for name in names:
        stored = [(r["step"], pytest.approx(r[name], rel=1e-5, abs=1e-7)) for r in rows]
        assert [(e.step, e.value) for e in events.Scalars(name)] == stored, (run.run_id, name)
        history = sorted((m.step, m.value) for m in client.get_metric_history(mlrun.info.run_id, name))
        assert history == stored, (run.run_id, name)


def test_tensorboard_and_mlflow_hold_every_sft_and_rl_step_with_the_stores_values(user_run):
    for run_id in user_run.trained:
        _check_trackers(RunLayout(user_run.store, run_id), SFT_STEPS, user_run.root / "tb", user_run.mlflow)
    for run_id in user_run.rl_runs:
        _check_trackers(RunLayout(user_run.store, run_id), RL_STEPS, user_run.root / "tb", user_run.mlflow)


def test_a_tracker_credential_in_the_environment_reaches_no_artifact_in_the_store(user_run):
    stored = [p for p in (user_run.root / "store").rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if SECRET.encode() in p.read_bytes()]
