"""Datasets in verl's parquet schemas: RL prompts, SFT conversations per teacher, held-out benchmarks.

* RL (``verl.utils.dataset.rl_dataset``): ``prompt`` (chat list), ``data_source``, ``ability``,
  ``reward_model = {"style": "rule", "ground_truth": str}``, ``extra_info``.
* SFT (``verl.trainer.sft_trainer``'s multi-turn dataset): ``messages`` (chat list).
* Benchmarks reuse the RL schema; ``benchmark_id`` is in-distribution, ``benchmark_hard`` is harder.
All splits are disjoint by expression.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stable_verl.tasks.arithmetic import Problem, sample_problems
from stable_verl.tasks.spec import TaskSpec
from stable_verl.tasks.teachers import TEACHERS, direct, solution

__all__ = ["DATA_SOURCE", "TaskSpec"]

DATA_SOURCE = "stable_verl/arith"
BENCHMARKS = ("bench_id", "bench_hard")  # the held-out splits, in-distribution and harder


def rl_rows(problems: list[Problem], split: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": p.prompt}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(p.answer)},
                "extra_info": {"split": split, "index": i, "difficulty": p.difficulty, "expression": p.expression},
            }
            for i, p in enumerate(problems)
        ]
    )


def sft_rows(problems: list[Problem], teacher: str, shortcut_rate: float = 0.0, samples: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "messages": [
                    {"role": "user", "content": p.prompt},
                    {"role": "assistant", "content": solution(teacher, p, shortcut_rate, i)},
                ]
            }
            for p in problems
            for i in range(samples)
        ]
    )


def sft_split(teacher: str, part: str) -> str:
    """Name of a teacher's SFT split: ``sft_<teacher>_train`` or ``sft_<teacher>_val``."""
    return f"sft_{teacher}_{part}"


def split_names() -> list[str]:
    """Every split :func:`write_task_data` writes: the benchmarks, the RL prompts, each teacher's SFT data."""
    sft = [sft_split(teacher, part) for teacher in TEACHERS for part in ("train", "val")]
    return [*BENCHMARKS, "rl_val", "rl_train", *sft]


def split_path(out_dir: str | Path, name: str) -> Path:
    """The parquet file of split ``name`` under ``out_dir``."""
    return Path(out_dir) / f"{name}.parquet"


def write_task_data(out_dir: str | Path, spec: TaskSpec) -> dict[str, Path]:
    """Write every split as parquet under ``out_dir``; returns split name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()

    def draw(n: int, difficulty: int, salt: int) -> list[Problem]:
        max_operand = spec.max_operand if difficulty == spec.difficulty else None
        problems = sample_problems(n, difficulty, seed=spec.seed * 1000 + salt, exclude=seen, max_operand=max_operand)
        seen.update(p.expression for p in problems)
        return problems

    # Held-out benchmarks are drawn first so that no train/SFT problem can shadow them.
    frames = {
        "bench_id": rl_rows(draw(spec.n_bench, spec.difficulty, 1), "bench_id"),
        "bench_hard": rl_rows(draw(spec.n_bench, spec.hard_difficulty, 2), "bench_hard"),
        "rl_val": rl_rows(draw(spec.n_rl_val, spec.difficulty, 3), "rl_val"),
        "rl_train": rl_rows(draw(spec.n_rl_train, spec.difficulty, 4), "rl_train"),
    }
    sft_problems = draw(spec.n_sft, spec.difficulty, 5)
    sft_val = draw(max(8, spec.n_sft // 8), spec.difficulty, 6)
    for teacher in TEACHERS:
        frames[sft_split(teacher, "train")] = sft_rows(sft_problems, teacher, spec.shortcut_rate, spec.sft_samples)
        frames[sft_split(teacher, "val")] = sft_rows(sft_val, teacher, spec.shortcut_rate, spec.sft_samples)
    paths = {}
    for name, frame in frames.items():
        paths[name] = split_path(out, name)
        frame.to_parquet(paths[name], index=False)
    return paths


def tokenizer_corpus(spec: TaskSpec, n: int = 1500) -> list[str]:
    """Text the tokenizer is trained on: prompts and every teacher's solutions, both difficulties."""
    texts: list[str] = []
    for difficulty in (spec.difficulty, spec.hard_difficulty, spec.hard_difficulty + 1):
        max_operand = spec.max_operand if difficulty == spec.difficulty else None
        for p in sample_problems(n // 3, difficulty, seed=10_000 + spec.seed, max_operand=max_operand):
            texts.append(p.prompt)
            texts.extend(solve(p) for solve in (direct, *TEACHERS.values()))
    return texts
