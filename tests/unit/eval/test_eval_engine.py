"""Evaluation at real size: the dtype 'auto' resolves per model kind, stored results before eval.dtype stay valid,
the engine layout reaches the worker, and only a checkpoint's HF folder is downloaded."""

from __future__ import annotations

import json

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.config.params import EvaluateFlowParams
from stable_verl.eval.checkpoints import EvalTarget, _stored_result, fetch_hf_model, resolve_dtype
from stable_verl.eval.worker import EvalEngine, EvalSettings, eval_argv


def _store_with_runs(tmp_path) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path / "store"))
    RunLayout(store, "sft-terse-00000001").write_config({"model": {"kind": "moe", "num_layers": 2}})
    RunLayout(store, "rl-grpo-00000002").write_config({"model": {"path": "/models/my-moe"}})
    return store


def test_auto_dtype_is_fp32_for_the_tiny_model_and_bf16_for_yours(tmp_path):
    store = _store_with_runs(tmp_path)
    tiny, own = EvalTarget("sft-terse-00000001", 2), EvalTarget("rl-grpo-00000002", 3)
    assert resolve_dtype(store, [tiny], EvalSettings()).dtype == "float32"
    assert resolve_dtype(store, [tiny, own], EvalSettings()).dtype == "bfloat16"  # one engine: the larger model's
    assert resolve_dtype(store, [own], EvalSettings(dtype="float32")).dtype == "float32"  # as asked


def test_results_stored_before_eval_dtype_count_as_fp32(tmp_path):
    store = _store_with_runs(tmp_path)
    run = RunLayout(store, "sft-terse-00000001")
    old = {"k": 4, "temperature": 1.0, "max_tokens": 48, "seed": 0}  # settings as results.json recorded them
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "results.json").write_text(json.dumps({"settings": old, "num_prompts": 2, "avg@4_stderr": 0}))
    store.put_dir(tmp_path / "res", run.eval_dir(2, "bench_id"))
    assert _stored_result(run, 2, "bench_id", EvalSettings(k=4, dtype="float32"), 2) is not None
    assert _stored_result(run, 2, "bench_id", EvalSettings(k=4, dtype="bfloat16"), 2) is None


def test_only_the_hf_folder_is_downloaded(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    run = RunLayout(store, "rl-grpo-00000002")
    ckpt = tmp_path / "ckpt"
    (ckpt / "actor" / "huggingface").mkdir(parents=True)
    (ckpt / "actor" / "huggingface" / "config.json").write_text("{}")
    (ckpt / "actor" / "huggingface" / "model.safetensors").write_bytes(b"w" * 10)
    (ckpt / "actor" / "optim_world_size_1_rank_0.pt").write_bytes(b"o" * 1000)
    store.put_dir(ckpt, run.checkpoint(3))
    model = fetch_hf_model(run, 3, tmp_path / "work")
    assert model == tmp_path / "work" / "runs" / run.run_id / "checkpoints" / "global_step_3" / "actor" / "huggingface"
    got = sorted(p.relative_to(model.parent.parent).as_posix() for p in model.parent.parent.rglob("*") if p.is_file())
    assert got == ["actor/huggingface/config.json", "actor/huggingface/model.safetensors"]  # no optimizer state
    (model / "config.json").write_text("{}")  # a complete local copy is used as it is
    assert fetch_hf_model(run, 3, tmp_path / "work") == model


def test_engine_settings_reach_the_worker_and_stay_out_of_the_settings(tmp_path):
    params = EvaluateFlowParams.from_config(
        None,
        [
            "runs=[rl-x-00000000]",
            "eval.dtype=bfloat16",
            "eval.engine.tensor_parallel_size=4",
            "eval.engine.gpu_memory_utilization=0.85",
            "eval.engine.max_model_len=4096",
        ],
    )
    assert params.eval.engine == EvalEngine(tensor_parallel_size=4, gpu_memory_utilization=0.85, max_model_len=4096)
    settings = params.eval.settings()
    assert settings.dtype == "bfloat16" and "tensor_parallel_size" not in json.dumps(settings.__dict__)
    argv = eval_argv(
        [(tmp_path / "m", tmp_path / "o")], {"b": tmp_path / "b.parquet"}, settings, None, params.eval.engine
    )
    assert argv[argv.index("--dtype") + 1] == "bfloat16"
    assert json.loads(argv[argv.index("--engine") + 1]) == {
        "tensor_parallel_size": 4,
        "gpu_memory_utilization": 0.85,
        "max_model_len": 4096,
    }


def test_a_stored_result_is_reused_only_with_the_same_reward(tmp_path):
    from stable_verl.tasks.reward_fn import RewardFn

    store = _store_with_runs(tmp_path)
    run = RunLayout(store, "rl-grpo-00000002")
    settings = EvalSettings(k=4, dtype="bfloat16")
    scored = RewardFn(path="pkg://stable_verl.tasks.reward", kwargs={"format_bonus": 0.0})
    (tmp_path / "res").mkdir()
    results = {"settings": settings.__dict__, "num_prompts": 2, "avg@4_stderr": 0, "reward": scored.identity()}
    (tmp_path / "res" / "results.json").write_text(json.dumps(results))
    store.put_dir(tmp_path / "res", run.eval_dir(3, "mybench"))
    assert _stored_result(run, 3, "mybench", settings, 2, scored) is not None
    other = RewardFn(path="pkg://stable_verl.tasks.reward", kwargs={"format_bonus": 0.5})
    assert _stored_result(run, 3, "mybench", settings, 2, other) is None
    assert _stored_result(run, 3, "mybench", settings, 2, None) is None  # the built-in's results carry no reward
