"""A stage's inputs: the task's parquet splits and the base model (the tiny one with its tokenizer, built here;
or the user's own, resolved by :mod:`.model_source`).

Plain Python (no Prefect): :mod:`~stable_verl.train.stages` builds them once per spec under the work directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

from stable_verl.artifacts import config_hash
from stable_verl.models.hf import HFModel
from stable_verl.models.spec import TinyModelSpec
from stable_verl.tasks.datasets import split_path
from stable_verl.tasks.user_task import Task, assets_identity, corpus, split_names, write_splits
from stable_verl.train.model_source import planned_model_dir, resolve_model_dir


@dataclass(frozen=True)
class Assets:
    """A stage's starting point: the base model's HF folder and the task's parquet splits."""

    model_dir: Path
    data: dict[str, Path]
    root: Path
    """The folder built here (``workdir/assets/<hash>``): the splits, and the tiny model unless a user model is
    given (then ``model_dir`` is that model's own folder)."""

    @property
    def model_built(self) -> bool:
        """Whether the base model is the tiny one built in ``root`` (else it is the user's, elsewhere)."""
        return self.model_dir.is_relative_to(self.root)


def build_assets(workdir: Path, model: TinyModelSpec | HFModel, task: Task, seed: int) -> dict[str, Path]:
    """Write the task splits (generated for the built-in task, the user's files normalised for
    :class:`~.user_task.TaskData`) and, for the tiny model, train its tokenizer on the task's text and build it (all
    deterministic). Returns what was built (``model_dir`` and split names)."""
    built = dict(write_splits(workdir / "data", task))
    if isinstance(model, TinyModelSpec):  # a user's model brings its own tokenizer
        from stable_verl.models.tiny import save_tiny_model  # torch + transformers: only to build, not to plan
        from stable_verl.models.tokenizer import train_tokenizer

        tokenizer = train_tokenizer(corpus(task))
        built["model_dir"] = save_tiny_model(workdir / "models" / f"tiny-{model.kind}", model, tokenizer, seed=seed)
    return built


def _spec(model: TinyModelSpec | HFModel, task: Task, seed: int) -> dict:
    if isinstance(model, HFModel):  # only the splits are built here: they depend on the task alone
        return {"task": assets_identity(task)}
    return {"model": dataclasses.asdict(model), "task": assets_identity(task), "seed": seed}


def planned_assets(
    workdir: Path, model: TinyModelSpec | HFModel, task: Task, seed: int, endpoint_url: str | None = None
) -> Assets:
    """Where :func:`prepare_assets` puts (or finds) the assets of this spec, without building or downloading."""
    root = workdir / "assets" / config_hash(_spec(model, task, seed))
    data = {name: split_path(root / "data", name) for name in split_names(task)}
    if isinstance(model, HFModel):
        return Assets(planned_model_dir(model, workdir, endpoint_url), data, root)
    return Assets(root / "models" / f"tiny-{model.kind}", data, root)


def prepare_assets(
    workdir: Path,
    model: TinyModelSpec | HFModel,
    task: Task,
    seed: int,
    endpoint_url: str | None = None,
    fetch_model: bool = True,
) -> Assets:
    """Task splits (and the tiny model) under ``workdir/assets/<hash>``, built once (marker written last); a user
    model resolved to its local folder (:func:`~.model_source.resolve_model_dir`; ``fetch_model`` False: only where
    it would be, for a model the nodes take from the store itself).

    A file lock makes stages started side by side (the cold-start SFTs) build them once and wait for it."""
    spec = _spec(model, task, seed)
    root = workdir / "assets" / config_hash(spec)
    marker = root / "assets.json"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f"{root.name}.lock"):
        if not marker.exists():
            built = {k: str(v) for k, v in build_assets(root, model, task, seed).items()}
            model_dir = built.pop("model_dir", None)
            marker.write_text(json.dumps({"model_dir": model_dir, "data": built, "spec": spec}, indent=1))
        saved = json.loads(marker.read_text())
    data = {k: Path(v) for k, v in saved["data"].items()}
    if isinstance(model, HFModel):
        resolve = resolve_model_dir if fetch_model else planned_model_dir
        return Assets(resolve(model, workdir, endpoint_url), data, root)
    return Assets(Path(saved["model_dir"]), data, root)


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
