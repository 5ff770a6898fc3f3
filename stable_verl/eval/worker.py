"""Checkpoint evaluation: sample k responses per held-out prompt with vLLM, score them, report avg@k.

    python -m stable_verl.eval.worker --model DIR --out DIR [--model DIR --out DIR ...] \
        --bench bench_id=FILE.parquet [...] --k 4

avg@k (paper: avg@32) = mean over prompts of the mean exact-match accuracy of k samples, reported with
its standard error across prompts (``avg@k_stderr``, :func:`score_samples`). Writes, per
model and benchmark, ``<out>/<benchmark>/results.json`` and ``samples.jsonl``. Run as its own process
(vLLM owns its engine and memory). All models go through one in-process vLLM engine: a model with the
same config and tokenizer as the loaded one only has its weights reloaded in place (vLLM's
``reload_weights``, milliseconds), so evaluating many checkpoints costs one engine start-up.
Sampling is reproducible per sample: response j to prompt i of a benchmark is drawn with its own vLLM
generator, seeded from ``(seed, benchmark, i, j)`` (:func:`sample_seed`), so it depends only on those and on
the model's logits: not on the other prompts in the batch, the other checkpoints, or the process (measured
identical across fresh processes and prompt subsets on CPU; GPU kernels may let logits vary with the batch).
A checkpoint's HF folder comes from :func:`stable_verl.train.model_source.ensure_hf_model` (verl's model merger
for a checkpoint saved without HF weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from stable_verl.config import cpu_env
from stable_verl.config.eval_settings import EvalEngine, EvalSettings
from stable_verl.launch.runner import python_module
from stable_verl.tasks.reward_fn import RewardFn, builtin_reward, correct, load_reward, score_one


def score_samples(
    rows: pd.DataFrame, outputs: list[list[str]], reward: RewardFn | None = None
) -> tuple[dict, list[dict]]:
    """avg@k, its standard error across prompts, and the scorer's means; ``outputs[i]`` are the k responses to row i.

    Each response is scored by ``reward`` (default: the built-in task's, without a format bonus) with the row's
    ``data_source``, ``reward_model.ground_truth`` and ``extra_info``, as verl's RL reward is. A sample counts as
    correct by its ``acc`` when the scorer returns one, else by its ``score`` (:func:`~.reward_fn.correct`).
    With a_i the mean correctness of prompt i's k samples over n prompts:
    ``avg@k = mean_i a_i`` and ``avg@k_stderr = std_i(a_i) / sqrt(n)`` (sample std, n - 1; None when n < 2).
    The standard error covers both the k-sample noise per prompt and the spread across prompts. ``format_rate`` is
    the mean of the scorer's ``format`` (None when it has none); ``scores`` the mean of every numeric key it returns
    for every sample.
    """
    reward = reward or builtin_reward()
    fn = load_reward(reward)
    samples, per_prompt_acc, scores = [], [], []
    for (_, row), responses in zip(rows.iterrows(), outputs, strict=True):
        truth = _plain(row["reward_model"]["ground_truth"])
        extra = _plain(row["extra_info"]) if "extra_info" in row else None
        scored = [score_one(fn, reward.kwargs, row["data_source"], r, truth, extra) for r in responses]
        per_prompt_acc.append(statistics.fmean(correct(s) for s in scored))
        scores.extend(scored)
        for r, s in zip(responses, scored, strict=True):
            samples.append({"prompt": row["prompt"][-1]["content"], "ground_truth": truth, "response": r, **s})
    k = len(outputs[0]) if outputs else 0
    n = len(per_prompt_acc)
    numeric = [key for key in scores[0] if all(isinstance(s.get(key), float) for s in scores)] if scores else []
    means = {key: statistics.fmean(s[key] for s in scores) for key in numeric}
    results = {
        f"avg@{k}": statistics.fmean(per_prompt_acc),
        f"avg@{k}_stderr": statistics.stdev(per_prompt_acc) / math.sqrt(n) if n > 1 else None,
        "format_rate": means.get("format"),
        "scores": means,
        "num_prompts": n,
        "k": k,
    }
    return results, samples


def _plain(value):
    """Parquet's numpy arrays as lists, recursively (what verl's dataset hands the reward)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def sample_seed(seed: int, benchmark: str, prompt: int, sample: int) -> int:
    """vLLM seed of response ``sample`` to row ``prompt`` of ``benchmark`` (63 bits of a SHA-256)."""
    digest = hashlib.sha256(f"{seed}/{benchmark}/{prompt}/{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _signature(model_dir: Path) -> str:
    """Models with equal signatures (config minus its path, tokenizer) can share one vLLM engine."""
    config = json.loads((model_dir / "config.json").read_text())
    config.pop("_name_or_path", None)
    tokenizer = model_dir / "tokenizer.json"
    blob = json.dumps(config, sort_keys=True).encode() + (tokenizer.read_bytes() if tokenizer.exists() else b"")
    return hashlib.sha256(blob).hexdigest()


def evaluate(
    jobs: list[tuple[Path, Path]],
    benchmarks: dict[str, Path],
    settings: EvalSettings,
    reward: RewardFn | None = None,
    engine: EvalEngine | None = None,
    trust_remote_code: bool = False,
) -> dict[Path, dict[str, dict]]:
    """Generate with vLLM and score every benchmark for each ``(model_dir, out_dir)`` with ``reward`` (default: the
    built-in task's); out_dir -> bench -> results. ``trust_remote_code``: the models are a user's that run their own
    code (``model.trust_remote_code``)."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    if settings.dtype == "auto":  # the flow resolves it per run (checkpoints.resolve_dtype); here: the tiny model's
        settings = dataclasses.replace(settings, dtype="float32")
    engine = engine or EvalEngine()

    # One request per sample, each with its own seeded generator (vLLM's per-request seed), instead of
    # n=k requests drawing from the global torch generator: there, a sample's noise depends on its row in
    # every batch, hence on the other prompts. See sample_seed.
    def params(name: str, prompt: int, sample: int) -> SamplingParams:
        seed = sample_seed(settings.seed, name, prompt, sample)
        return SamplingParams(temperature=settings.temperature, max_tokens=settings.max_tokens, seed=seed)

    rows = {name: pd.read_parquet(path) for name, path in benchmarks.items()}
    llm, loaded, all_results = None, None, {}
    for model_dir, out_dir in jobs:
        signature = _signature(model_dir)
        if signature == loaded:
            llm.collective_rpc("reload_weights", kwargs={"weights_path": str(model_dir)})
            print(f"[eval] {model_dir}: weights reloaded into the running engine", flush=True)
        else:
            llm = None
            gc.collect()
            llm = LLM(
                str(model_dir),
                dtype=settings.dtype,
                enforce_eager=True,
                gpu_memory_utilization=engine.gpu_memory_utilization or 0.2,
                tensor_parallel_size=engine.tensor_parallel_size,
                max_model_len=engine.max_model_len,
                seed=settings.seed,
                trust_remote_code=trust_remote_code,
                enable_prefix_caching=False,  # cached KV would outlive a weight reload
                # A chunked prefill discards its sampled token and rewinds the request's seeded generator,
                # which CPU generators cannot do: prompts * k over one step's token budget (4096 on CPU)
                # crashed ("CPU Generator does not use offset"). Unchunked, a prompt that does not fit waits
                # for the next step. CUDA generators can rewind.
                enable_chunked_prefill=not cpu_env.on_cpu(),
            )
            loaded = signature
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        all_results[out_dir] = {}
        for name, bench in rows.items():
            prompts = [
                tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True)
                for p in bench["prompt"]
            ]
            k = settings.k
            requests = [(i, j) for i in range(len(prompts)) for j in range(k)]  # prompt-major: i * k + j
            generations = llm.generate(
                [prompts[i] for i, _ in requests], [params(name, i, j) for i, j in requests], use_tqdm=False
            )
            texts = [g.outputs[0].text for g in generations]  # (prompts * k,), in request order
            results, samples = score_samples(bench, [texts[i * k : (i + 1) * k] for i in range(len(prompts))], reward)
            results.update(benchmark=name, model=str(model_dir), settings=asdict(settings), engine=asdict(engine))
            if reward is not None:  # a stored result is reused only with the same reward (the built-in's: absent)
                results["reward"] = reward.identity()
            bench_dir = out_dir / name
            bench_dir.mkdir(parents=True, exist_ok=True)
            (bench_dir / "samples.jsonl").write_text("".join(json.dumps(s, default=str) + "\n" for s in samples))
            (bench_dir / "results.json").write_text(json.dumps(results, indent=1))  # last: marks completion
            all_results[out_dir][name] = results
            score, stderr = results[f"avg@{k}"], results[f"avg@{k}_stderr"]
            stderr_text = "n/a" if stderr is None else f"{stderr:.3f}"
            print(f"[eval] {model_dir} {name}: avg@{k}={score:.3f} (stderr {stderr_text})", flush=True)
    return all_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True, help="HF model directory (repeatable)")
    parser.add_argument("--out", type=Path, action="append", required=True, help="output directory, one per --model")
    parser.add_argument("--bench", action="append", required=True, help="name=path.parquet (repeatable)")
    defaults = EvalSettings()
    parser.add_argument("--k", type=int, default=defaults.k)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--trust-remote-code", action="store_true", help="run the models' own code (auto_map)")
    parser.add_argument("--dtype", default=defaults.dtype, choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--engine", default=None, help="the vLLM engine layout as EvalEngine JSON")
    parser.add_argument("--reward", default=None, help="the reward as RewardFn JSON (default: the built-in task's)")
    args = parser.parse_args(argv)
    if len(args.model) != len(args.out):
        parser.error("give one --out per --model")
    benchmarks = {name: Path(path) for name, path in (b.split("=", 1) for b in args.bench)}
    settings = EvalSettings(
        k=args.k, temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed, dtype=args.dtype
    )
    engine = EvalEngine(**json.loads(args.engine)) if args.engine else None
    reward = RewardFn.model_validate_json(args.reward) if args.reward else None
    jobs = list(zip(args.model, args.out, strict=True))
    evaluate(jobs, benchmarks, settings, reward, engine, trust_remote_code=args.trust_remote_code)
    return 0


def eval_args(
    jobs: Sequence[tuple[PurePath, PurePath]],
    benchmarks: Mapping[str, PurePath],
    settings: EvalSettings,
    reward: RewardFn | None = None,
    engine: EvalEngine | None = None,
    trust_remote_code: bool = False,
) -> list[str]:
    """The arguments of :func:`main` over ``(model_dir, out_dir)`` jobs (this machine's paths, or a node's)."""
    models = [a for model, out in jobs for a in ("--model", str(model), "--out", str(out))]
    bench = [a for name, path in benchmarks.items() for a in ("--bench", f"{name}={path}")]
    return [
        *models,
        *bench,
        "--k",
        str(settings.k),
        "--temperature",
        str(settings.temperature),
        "--max-tokens",
        str(settings.max_tokens),
        "--seed",
        str(settings.seed),
        "--dtype",
        settings.dtype,
        *(["--engine", json.dumps(asdict(engine))] if engine is not None else []),
        *(["--reward", reward.model_dump_json()] if reward is not None else []),
        *(["--trust-remote-code"] if trust_remote_code else []),
    ]


def eval_argv(
    jobs: list[tuple[Path, Path]],
    benchmarks: dict[str, Path],
    settings: EvalSettings,
    reward: RewardFn | None = None,
    engine: EvalEngine | None = None,
    trust_remote_code: bool = False,
) -> list[str]:
    """argv that runs :func:`main` in a fresh interpreter over ``(model_dir, out_dir)`` jobs."""
    return python_module(
        "stable_verl.eval.worker", *eval_args(jobs, benchmarks, settings, reward, engine, trust_remote_code)
    )


def eval_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the evaluation process: ``base`` (default: a local verl subprocess's, :func:`~.cpu_env.verl_env`;
    a Ray Job's: :func:`~.cpu_env.cluster_env`), with vLLM's engine in-process (seconds, not ~20 s, to start)."""
    return {**(cpu_env.verl_env() if base is None else base), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


if __name__ == "__main__":
    sys.exit(main())
