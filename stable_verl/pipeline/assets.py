"""A stage's locally built inputs: the tokenizer, the tiny base model and the task's parquet splits.

Plain Python (no Prefect, no store): :mod:`.train_stages` builds them once per spec under the work directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

from stable_verl.artifacts import config_hash
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.models.tokenizer import train_tokenizer
from stable_verl.pipeline.task_data import Task, assets_identity, corpus, split_names, write_splits
from stable_verl.tasks.datasets import split_path


@dataclass(frozen=True)
class Assets:
    """The locally built starting point: a tiny HF model directory and the task's parquet splits."""

    model_dir: Path
    data: dict[str, Path]


def build_assets(workdir: Path, model: TinyModelSpec, task: Task, seed: int) -> Assets:
    """Train the tokenizer, build the tiny model and write the task splits (generated for the built-in task, the
    user's files normalised for :class:`~.task_data.TaskData`; all deterministic)."""
    tokenizer = train_tokenizer(corpus(task))
    model_dir = save_tiny_model(workdir / "models" / f"tiny-{model.kind}", model, tokenizer, seed=seed)
    data = write_splits(workdir / "data", task)
    return Assets(model_dir=model_dir, data=data)


def _spec(model: TinyModelSpec, task: Task, seed: int) -> dict:
    return {"model": dataclasses.asdict(model), "task": assets_identity(task), "seed": seed}


def planned_assets(workdir: Path, model: TinyModelSpec, task: Task, seed: int) -> Assets:
    """Where :func:`prepare_assets` puts (or finds) the assets of this spec, without building anything."""
    root = workdir / "assets" / config_hash(_spec(model, task, seed))
    data = {name: split_path(root / "data", name) for name in split_names(task)}
    return Assets(model_dir=root / "models" / f"tiny-{model.kind}", data=data)


def prepare_assets(workdir: Path, model: TinyModelSpec, task: Task, seed: int) -> Assets:
    """Tokenizer, base model and task splits under ``workdir/assets/<hash>``, built once (marker written last).

    A file lock makes stages started side by side (the cold-start SFTs) build them once and wait for it."""
    spec = _spec(model, task, seed)
    root = workdir / "assets" / config_hash(spec)
    marker = root / "assets.json"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f"{root.name}.lock"):
        if marker.exists():
            saved = json.loads(marker.read_text())
            return Assets(Path(saved["model_dir"]), {k: Path(v) for k, v in saved["data"].items()})
        assets = build_assets(root, model, task, seed)
        data = {k: str(v) for k, v in assets.data.items()}
        marker.write_text(json.dumps({"model_dir": str(assets.model_dir), "data": data, "spec": spec}, indent=1))
        return assets


def seeded_sft_file(train_file: Path, seed: int, out_dir: Path) -> Path:
    """The SFT training file whose row order carries ``seed``.

    verl's SFT trainer (0.9.1) shuffles with its sampler's fixed seed 0 whatever ``trainer.seed`` says, so SFT
    seeds would give identical weights. Seed 0 keeps the file as written; seed s > 0 gets a copy with its rows
    permuted by s (in ``out_dir``), so each seed sees its own data order.
    """
    target = seeded_sft_path(train_file, seed, out_dir)
    if target == train_file:
        return train_file
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.read_parquet(train_file).sample(frac=1.0, random_state=seed).to_parquet(target, index=False)
    return target


def seeded_sft_path(train_file: Path, seed: int, out_dir: Path) -> Path:
    """Where :func:`seeded_sft_file` puts the file of ``seed`` (the file itself for seed 0); writes nothing."""
    return train_file if seed == 0 else out_dir / f"{train_file.stem}_seed{seed}.parquet"
