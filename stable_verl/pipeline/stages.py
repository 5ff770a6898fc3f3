"""Stage runners on a local work directory: build assets, verl SFT, verl RL, read metrics.

Each function is plain Python (no Prefect), so flows and tests call the same code.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.models.tokenizer import train_tokenizer
from stable_verl.pipeline import cpu_env, verl_command
from stable_verl.pipeline.config import RLStage, SFTStage
from stable_verl.pipeline.runner import RunResult, run_streaming
from stable_verl.tasks.datasets import TaskSpec, tokenizer_corpus, write_task_data
from stable_verl.verl_ext import rollout_precision

# verl's console logger prints "step:N - key:value - ..."; the SFT trainer prints the same shape.
_STEP_LINE = re.compile(r"\bstep:(\d+)\b")
# A Python traceback or a raised exception, possibly behind Ray's "(pid=...)" prefix.
_ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^(\(\S+ pid=\d+\)\s*)?\w*(Error|Exception): ")


@dataclass(frozen=True)
class Assets:
    """The locally built starting point: a tiny HF model directory and the task's parquet splits."""

    model_dir: Path
    data: dict[str, Path]


def build_assets(workdir: Path, model: TinyModelSpec, task: TaskSpec, seed: int) -> Assets:
    """Train the tokenizer, build the tiny model and write the task splits (all deterministic)."""
    tokenizer = train_tokenizer(tokenizer_corpus(task))
    model_dir = save_tiny_model(workdir / "models" / f"tiny-{model.kind}", model, tokenizer, seed=seed)
    data = write_task_data(workdir / "data", task)
    return Assets(model_dir=model_dir, data=data)


# What verl is doing before its first step (Ray, workers, vLLM, weight sync take ~80 s on 2 CPU cores): the first
# log line matching each pattern is echoed once, as "[rl] starting: <phase> (<seconds> s)".
STARTUP_PHASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), phase)
    for pattern, phase in (
        (r"Started a local Ray instance|Connected to Ray cluster", "Ray is up"),
        (r"TaskRunner", "verl task runner started"),
        (r"contains [\d.]+[KMB]? parameters", "model built, wrapping it in FSDP"),
        (r"vLLMHttpServer", "vLLM rollout server starting"),
        (r"Loading safetensors checkpoint shards", "vLLM loading weights"),
        (r"update_weights done", "actor weights synced into vLLM"),
        (r"AgentLoopWorker", "agent-loop workers starting, then step 1"),
    )
)


def progress_printer(
    stage: str,
    total_steps: int,
    echo: Callable[[str], None] = print,
    on_step: Callable[[int], None] | None = None,
) -> Callable[[str], None]:
    """An ``on_line`` callback that echoes verl's start-up phases once each, then one short line per training
    step (and calls ``on_step(step)``)."""

    last_step = 0
    start = time.monotonic()
    seen: set[str] = set()

    def on_line(line: str) -> None:
        nonlocal last_step
        if last_step == 0:
            for pattern, phase in STARTUP_PHASES:
                if phase not in seen and pattern.search(line):
                    seen.add(phase)
                    echo(f"[{stage}] starting: {phase} ({time.monotonic() - start:.0f} s)")
        m = _STEP_LINE.search(line)
        if m and ("loss" in line or "reward" in line) and int(m.group(1)) > last_step:
            last_step = int(m.group(1))
            echo(f"[{stage}] step {last_step}/{total_steps}")
            if on_step is not None:
                on_step(last_step)
        elif _ERROR_LINE.search(line):
            echo(f"[{stage}] {line[:200]}")

    return on_line


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The highest ``global_step_N`` directory under ``ckpt_root``, if any."""
    steps = [(int(p.name.rsplit("_", 1)[1]), p) for p in ckpt_root.glob("global_step_*") if p.is_dir()]
    return max(steps)[1] if steps else None


def seeded_sft_file(train_file: Path, seed: int, out_dir: Path) -> Path:
    """The SFT training file whose row order carries ``seed``.

    verl's SFT trainer (0.9.1) shuffles with its sampler's fixed seed 0 whatever ``trainer.seed`` says, so SFT
    seeds would give identical weights. Seed 0 keeps the file as written; seed s > 0 gets a copy with its rows
    permuted by s (in ``out_dir``), so each seed sees its own data order.
    """
    if seed == 0:
        return train_file
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{train_file.stem}_seed{seed}.parquet"
    pd.read_parquet(train_file).sample(frac=1.0, random_state=seed).to_parquet(target, index=False)
    return target


def run_sft(
    sft: SFTStage, model_dir: Path, data: dict[str, Path], out_dir: Path, seed: int, on_line=None
) -> tuple[Path, RunResult]:
    """verl SFT on one teacher's data; returns the HF directory of the final checkpoint."""
    train = seeded_sft_file(data[f"sft_{sft.teacher}_train"], seed, out_dir)
    argv = verl_command.sft_argv(sft, model_dir, train, data[f"sft_{sft.teacher}_val"], out_dir / "checkpoints", seed)
    result = run_streaming(
        argv, out_dir / "sft.log", cpu_env.verl_env(), sft.timeout_s, cwd=out_dir, on_line=on_line, name="verl SFT"
    )
    ckpt = latest_checkpoint(out_dir / "checkpoints")
    hf_dir = ckpt / "huggingface" if ckpt else None
    if hf_dir is None or not (hf_dir / "config.json").exists():
        raise FileNotFoundError(f"verl SFT finished but wrote no HF checkpoint under {out_dir / 'checkpoints'}")
    return hf_dir, result


def run_rl(
    rl: RLStage, model_dir: Path, data: dict[str, Path], out_dir: Path, on_line=None, seed: int | None = None
) -> tuple[Path, RunResult]:
    """verl ``main_ppo`` with vLLM rollouts; returns the metrics file (one JSON line per step).

    ``seed`` (if given) seeds the data order and vLLM's sampling, as the tracked RL stage does with its ``rl_seed``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = out_dir / "metrics.jsonl"
    overrides = verl_command.ppo_overrides(
        rl, model_dir, data["rl_train"], data["rl_val"], out_dir / "checkpoints", seed
    )
    (out_dir / "command.json").write_text(json.dumps({"overrides": overrides}, indent=1))
    env = cpu_env.verl_env()
    env["VERL_FILE_LOGGER_PATH"] = str(metrics)
    env[rollout_precision.ENV] = rl.rollout_precision  # read by the vLLM plugin in the rollout workers
    result = run_streaming(
        verl_command.ppo_argv(overrides),
        out_dir / "rl.log",
        env,
        rl.timeout_s,
        cwd=out_dir,
        on_line=on_line,
        name="verl main_ppo",
    )
    return metrics, result


def read_metrics(path: Path) -> list[dict]:
    """verl's file-logger lines as ``[{"step": n, **metrics}, ...]``."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            rows.append({"step": rec["step"], **rec["data"]})
    return rows
