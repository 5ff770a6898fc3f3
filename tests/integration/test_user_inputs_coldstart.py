"""The cold-start comparison on a user's own inputs, run as a user runs it: ``stable-verl run coldstart --config``.

The inputs are what an RL team brings, written here the way they would have them:
- a Hugging Face MoE folder (a tiny Qwen3-MoE saved with ``save_pretrained``, its tokenizer with a chat template);
- SFT data per init in two formats: ``terse`` as parquet ``messages`` rows, ``stepwise`` as jsonl prompt/response;
- RL prompts and a held-out benchmark in verl's RL schema with ``data_source: openai/gsm8k`` (GSM8K's ``#### n``);
- a reward given by file path, without ``**kwargs``, that defers to verl's own ``default_compute_score``;
- TensorBoard and MLflow beside the store's file logger.

Real verl SFT (both inits side by side), real verl RL with vLLM-CPU rollouts, real vLLM evaluation, real Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stable_verl.artifacts import RunLayout
from stable_verl.tasks.datasets import TaskSpec, write_task_data
from tests.support.user_inputs import as_gsm8k, run_coldstart_cli, save_user_model, write_reward

pytestmark = pytest.mark.slow


def _user_files(root: Path, tokenizer) -> dict:
    """The user's model folder, data files and reward, and the config that names them."""
    model = save_user_model(root / "my-moe", tokenizer)
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
        "model": {"path": str(model)},
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
        "sft": {"steps": 8, "batch_size": 16, "micro_batch_size": 16, "max_length": 96, "lr": 1.0e-3},
        "rl": {
            "recipe": "minirl",
            "total_steps": 2,
            "train_batch_size": 8,
            "rollout_n": 4,
            "micro_batch_size": 16,
            "save_freq": 2,
            "rollout_dtype": "float32",
        },
        "eval": {"k": 2, "steps": [2]},
        "logging": {"backends": ["tensorboard", "mlflow"]},
    }


def test_a_cold_start_comparison_on_the_users_model_data_reward_and_benchmark(tokenizer, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is in infra/requirements-cpu.lock: reinstall it")
    config = _user_files(tmp_path, tokenizer)
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store, sft_runs, rl_runs = run_coldstart_cli(
        tmp_path,
        config,
        TENSORBOARD_DIR=str(tmp_path / "tb"),
        MLFLOW_TRACKING_URI=mlflow_uri,
    )
    assert len(sft_runs) == 2 and len(rl_runs) == 2, sft_runs + rl_runs
    for run_id in sft_runs + rl_runs:
        run = RunLayout(store, run_id)
        assert run.read_run()["status"] == "complete"
        command = store.read_text(run.command_json)
        if run_id.startswith("sft-"):  # SFT starts from the user's folder
            assert f"model.path={tmp_path / 'my-moe'}" in command
        assert "trainer.logger=[console,file,tensorboard,mlflow]" in command
    rl = RunLayout(store, rl_runs[0])
    assert [r["step"] for r in rl.read_metrics()] == [1, 2]
    command = store.read_text(rl.command_json)
    assert f"reward.custom_reward_function.path={tmp_path / 'my_reward.py'}" in command
    assert "reward.custom_reward_function.name=score" in command and "format_bonus" not in command

    # The user's benchmark, scored by the same reward: avg@k from `score`, the other numeric key kept.
    for run_id in sft_runs + rl_runs:
        results = sorted((tmp_path / "store" / "runs" / run_id / "eval").rglob("heldout/results.json"))
        assert results, run_id
        scored = json.loads(results[-1].read_text())
        assert 0.0 <= scored["avg@2"] <= 1.0 and scored["scores"]["chars"] > 0, scored

    report = next((tmp_path / "store" / "comparisons").glob("*/report.md")).read_text()
    assert "terse" in report and "stepwise" in report and "heldout" in report

    # The trackers beside the store: TensorBoard event files and MLflow runs for every stage.
    assert all(list((tmp_path / "tb" / "stable-verl" / r).glob("events.out.tfevents.*")) for r in sft_runs + rl_runs)
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("stable-verl")
    names = {r.info.run_name for r in client.search_runs([experiment.experiment_id])}
    assert set(sft_runs + rl_runs) <= names
