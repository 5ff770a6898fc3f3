"""Checkpoint evaluation with real vLLM: avg@k on both held-out benchmarks, and verl's model merger
for a checkpoint that holds only FSDP shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stable_verl.pipeline.evaluate import EvalSettings, ensure_hf_model, eval_argv, eval_env
from stable_verl.pipeline.runner import run_streaming

pytestmark = pytest.mark.slow


def test_avg_at_k_on_the_held_out_benchmarks(smoke_config, rl_checkpoint, tmp_path):
    data = Path(smoke_config.workdir) / "data"
    benches = {"bench_id": data / "bench_id.parquet", "bench_hard": data / "bench_hard.parquet"}
    model = ensure_hf_model(rl_checkpoint)
    assert model.name == "huggingface"  # the RL checkpoint carries HF weights (save_contents has hf_model)
    settings = EvalSettings(k=2, max_tokens=24)
    run_streaming(eval_argv([(model, tmp_path)], benches, settings), tmp_path / "eval.log", eval_env(), 600)
    for name in benches:
        results = json.loads((tmp_path / name / "results.json").read_text())
        samples = (tmp_path / name / "samples.jsonl").read_text().splitlines()
        assert results["num_prompts"] == smoke_config.task.n_bench and results["k"] == 2
        assert len(samples) == 2 * smoke_config.task.n_bench
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
