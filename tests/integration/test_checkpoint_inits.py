"""The cold-start comparison of checkpoints a team already has (``init_checkpoints``, SFT skipped), run as a user runs
it: ``stable-verl run coldstart --config``.

Two already-trained inits, each a tiny Qwen3-MoE written with ``save_pretrained`` beside its tokenizer: one a local
folder, one an ``s3://`` prefix (uploaded with its manifest) on a real moto server. Each is imported into the store
as a complete SFT run, trained with the same RL recipe (real verl, vLLM-CPU rollouts), evaluated at step 0 (the
import) and at its last RL step (real vLLM), and both are in the report.
"""

from __future__ import annotations

import json

import pytest

from stable_verl.artifacts import RunLayout
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from tests.support.user_inputs import run_coldstart_cli

pytestmark = pytest.mark.slow


def test_a_cold_start_comparison_of_two_already_trained_checkpoints(tokenizer, moto_s3, tmp_path):
    local = save_tiny_model(tmp_path / "team" / "sft-v1", TinyModelSpec(), tokenizer, seed=5)
    second = save_tiny_model(tmp_path / "team" / "sft-v2", TinyModelSpec(), tokenizer, seed=6)
    bucket = moto_s3.store()
    bucket.put_dir(second, "checkpoints/sft-v2")  # how a team's folder reaches S3 with its manifest
    config = {
        "workdir": str(tmp_path / "work"),
        "store": {"root": str(tmp_path / "store"), "endpoint_url": moto_s3.endpoint_url},
        "teachers": [],
        "init_checkpoints": {"ours-v1": str(local), "ours-v2": bucket.uri("checkpoints/sft-v2")},
        "task": {"difficulty": 1, "n_sft": 16, "n_rl_train": 32, "n_bench": 16},
        "rl": {
            "recipe": "minirl",
            "total_steps": 2,
            "train_batch_size": 8,
            "rollout_n": 4,
            "micro_batch_size": 16,
            "save_freq": 2,
            "rollout_dtype": "float32",
        },
        "eval": {"k": 2, "steps": [2], "benchmarks": ["bench_id"], "n_prompts": 8},
    }
    store, imports, rl_runs = run_coldstart_cli(tmp_path, config)
    assert [r.rsplit("-", 1)[0] for r in imports] == ["sft-ours-v1", "sft-ours-v2"] and len(rl_runs) == 2
    sources = {}
    for run_id in imports:  # imported, never trained: one complete checkpoint, step 0, the HF folder
        run = RunLayout(store, run_id)
        record = RunRecord.read(run)
        assert (record.kind, record.status, record.checkpoints) == ("sft", "complete", [0])
        assert not store.exists(run.command_json)  # no SFT ran
        sources[run_id] = run.read_run()["imported_from"]["path"]
    assert sorted(sources.values()) == sorted([str(local), bucket.uri("checkpoints/sft-v2")])
    for run_id in rl_runs:  # the same recipe from each import's step 0
        run = RunLayout(store, run_id)
        record = RunRecord.read(run)
        parent = record.parent_checkpoint
        assert record.complete and parent.rsplit("/", 1)[0] in {f"runs/{i}/checkpoints" for i in imports}, parent
        assert parent.endswith("global_step_0") and [r["step"] for r in run.read_metrics()] == [1, 2]
        model_arg = next(a for a in store.read_json(run.command_json)["overrides"] if "model.path=" in a)
        assert model_arg.endswith("global_step_0/huggingface"), model_arg

    # Step 0 is the checkpoint itself, then the RL checkpoint: both scored on the benchmark.
    for run_id, step in [*((i, 0) for i in imports), *((r, 2) for r in rl_runs)]:
        results = tmp_path / "store" / "runs" / run_id / "eval" / f"global_step_{step}" / "bench_id" / "results.json"
        assert 0.0 <= json.loads(results.read_text())["avg@2"] <= 1.0, run_id
    report = next((tmp_path / "store" / "comparisons").glob("*/report.md")).read_text()
    assert "ours-v1" in report and "ours-v2" in report
