"""Checkpoint evaluation with real vLLM: each checkpoint scored with its own weights in a shared engine,
sampled evaluations reproducible sample by sample, avg@k on both held-out benchmarks, and verl's model merger
for a checkpoint that holds only FSDP shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stable_verl.eval.checkpoints import benchmark_files
from stable_verl.eval.worker import EvalSettings, eval_argv, eval_env
from stable_verl.launch.runner import run_streaming
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.train.model_source import ensure_hf_model

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)


@pytest.fixture(scope="module")
def two_checkpoints(tokenizer, tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny MoE checkpoints with the same config and tokenizer (so they share one engine), different weights."""
    root = tmp_path_factory.mktemp("checkpoints")
    return tuple(save_tiny_model(root / f"seed{s}", TinyModelSpec(), tokenizer, seed=s) for s in (0, 1))


def _evaluate(jobs, benchmarks, settings, log: Path) -> str:
    """Run one evaluation process (one engine) over ``jobs``; returns its log."""
    run_streaming(eval_argv(jobs, benchmarks, settings), log, eval_env())  # until it stops making progress
    return log.read_text()


def _responses(out_dir: Path, bench: str = "bench_id") -> list[str]:
    return [json.loads(line)["response"] for line in (out_dir / bench / "samples.jsonl").read_text().splitlines()]


def test_each_checkpoint_is_scored_with_its_own_weights(two_checkpoints, task_spec, tmp_path):
    # Greedy, so a checkpoint's responses are a function of its weights: evaluated after another checkpoint in a
    # shared engine (weights reloaded in place), each must answer exactly as when it is evaluated alone. The
    # shared engine's first checkpoint (a, loaded from disk, nothing before it) is a's solo run.
    a, b = two_checkpoints
    bench = benchmark_files(tmp_path, task_spec, ["bench_id"], n_prompts=8)
    greedy = EvalSettings(k=1, temperature=0.0, max_tokens=16)
    shared = [(a, tmp_path / "shared-a"), (b, tmp_path / "shared-b"), (a, tmp_path / "shared-a-again")]
    log = _evaluate(shared, bench, greedy, tmp_path / "shared.log")
    assert log.count("weights reloaded into the running engine") == 2  # one engine: b and a again were reloads
    _evaluate([(b, tmp_path / "solo-b")], bench, greedy, tmp_path / "solo-b.log")
    solo_a, solo_b = _responses(tmp_path / "shared-a"), _responses(tmp_path / "solo-b")
    # random weights: a greedy response may be empty (EOS first), but most must hold text for the comparison to bite
    assert len(solo_a) == len(solo_b) == 8 and sum(map(bool, solo_a + solo_b)) >= 12
    assert _responses(tmp_path / "shared-b") == solo_b  # b's weights, not a's left in the engine
    assert _responses(tmp_path / "shared-a-again") == solo_a
    assert sum(x != y for x, y in zip(solo_a, solo_b, strict=True)) >= 6  # the checkpoints do answer differently


def test_sampled_evaluation_reproduces_every_sample(two_checkpoints, task_spec, tmp_path):
    # Each sample has its own seeded generator, so a checkpoint's sample (prompt i, sample j) is the same in a fresh
    # process that scores it after another checkpoint on all prompts and in one that scores it alone on a subset:
    # other batches, other engine histories. With one shared generator both would differ (rows shift in the batch).
    a, b = two_checkpoints
    settings = EvalSettings(k=4, temperature=1.0, max_tokens=16, seed=0)
    full = benchmark_files(tmp_path, task_spec, ["bench_id"], n_prompts=None)
    first8 = benchmark_files(tmp_path, task_spec, ["bench_id"], n_prompts=8)
    _evaluate([(b, tmp_path / "full-b"), (a, tmp_path / "full-a")], full, settings, tmp_path / "full.log")
    _evaluate([(a, tmp_path / "first8-a")], first8, settings, tmp_path / "first8.log")
    full_a, first8_a = _responses(tmp_path / "full-a"), _responses(tmp_path / "first8-a")
    assert len(full_a) == 4 * task_spec.n_bench and len(first8_a) == 4 * 8
    assert first8_a == full_a[: 4 * 8]
    # sampled, not greedy, and every sample drew its own noise: a prompt's 4 samples differ
    assert all(len(set(first8_a[4 * i : 4 * i + 4])) == 4 for i in range(8))
    results = json.loads((tmp_path / "full-a" / "bench_id" / "results.json").read_text())
    assert results["avg@4_stderr"] is not None and results["num_prompts"] == task_spec.n_bench


def test_avg_at_k_on_the_held_out_benchmarks(small_regime, rl_checkpoint, tmp_path):
    data = small_regime.data
    benches = {"bench_id": data["bench_id"], "bench_hard": data["bench_hard"]}
    model = ensure_hf_model(rl_checkpoint)
    assert model.name == "huggingface"  # the RL checkpoint carries HF weights (save_contents has hf_model)
    settings = EvalSettings(k=2, max_tokens=24)
    run_streaming(eval_argv([(model, tmp_path)], benches, settings), tmp_path / "eval.log", eval_env())
    for name in benches:
        results = json.loads((tmp_path / name / "results.json").read_text())
        samples = (tmp_path / name / "samples.jsonl").read_text().splitlines()
        assert results["num_prompts"] == small_regime.task.n_bench and results["k"] == 2
        assert len(samples) == 2 * small_regime.task.n_bench
        assert 0.0 <= results["avg@2"] <= 1.0 and 0.0 <= results["format_rate"] <= 1.0
        # avg@k is the mean over prompts of per-prompt accuracy: recompute it from the samples
        accs = [json.loads(s)["acc"] for s in samples]
        assert results["avg@2"] == pytest.approx(sum(accs) / len(accs))


def test_fsdp_only_checkpoint_is_merged_with_verls_model_merger(rl_checkpoint, tmp_path):
    ckpt = tmp_path / "global_step_3"
    shutil.copytree(rl_checkpoint, ckpt)
    hf = ckpt / "actor" / "huggingface"
    for weights in hf.glob("*.safetensors"):
        weights.unlink()  # as saved without hf_model in save_contents: config/tokenizer only
    merged = ensure_hf_model(ckpt)
    assert merged == ckpt / "merged_hf"
    # the merged weights are the ones verl saved alongside the shards, in bf16 (verl's merger always casts)
    saved = load_file(rl_checkpoint / "actor" / "huggingface" / "model.safetensors")
    rebuilt = load_file(merged / "model.safetensors")
    assert saved.keys() == rebuilt.keys()
    assert all(torch.equal(saved[k].to(torch.bfloat16), rebuilt[k]) for k in saved)


def test_a_user_benchmark_scored_by_verls_default_compute_score(two_checkpoints, tmp_path):
    """Your task's benchmark (the arithmetic task in GSM8K's '#### <answer>' form, data_source openai/gsm8k), scored
    in the real worker by the reward RL trains with: path null = verl's default_compute_score, which returns a float
    (no acc, no format)."""
    from stable_verl.tasks.reward_fn import RewardFn
    from stable_verl.tasks.user_task import TaskData

    rows = [
        {
            "data_source": "openai/gsm8k",
            "prompt": [{"role": "user", "content": f"What is {i} + 2?"}],
            "reward_model": {"style": "rule", "ground_truth": str(i + 2)},
        }
        for i in range(4)
    ]
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "mybench.parquet")
    task = TaskData(
        rl_train=[str(tmp_path / "mybench.parquet")], benchmarks={"mybench": str(tmp_path / "mybench.parquet")}
    )
    bench = benchmark_files(tmp_path / "work", task, ["mybench"], n_prompts=None)
    settings = EvalSettings(k=2, max_tokens=16)  # dtype auto: float32 in the worker, the tiny model's
    out = tmp_path / "out"
    run_streaming(
        eval_argv([(two_checkpoints[0], out)], bench, settings, RewardFn()), tmp_path / "eval.log", eval_env()
    )
    results = json.loads((out / "mybench" / "results.json").read_text())
    samples = [json.loads(s) for s in (out / "mybench" / "samples.jsonl").read_text().splitlines()]
    assert results["num_prompts"] == 4 and len(samples) == 8 and results["settings"]["dtype"] == "float32"
    assert results["format_rate"] is None and set(results["scores"]) == {"score"}  # a float scorer
    assert results["avg@2"] == pytest.approx(sum(s["score"] for s in samples) / 8)  # avg@k from score
    assert results["engine"] == {"tensor_parallel_size": 1, "gpu_memory_utilization": None, "max_model_len": None}
