"""The user's task (:class:`TaskData`): SFT data per init, RL prompts, benchmarks and the reward, in verl's schemas.

Given instead of the built-in arithmetic task (``task: {rl_train: [...], ...}``); each file is a local path or an
``s3://`` object (endpoint from ``$STABLE_VERL_S3_ENDPOINT`` / ``$AWS_ENDPOINT_URL[_S3]``, credentials from the AWS
environment), parquet or JSON lines. Every split is normalised to one parquet file (:func:`normalised_splits`):

* SFT (verl's ``MultiTurnSFTDataset``, parquet only): a ``messages`` chat list per row. Rows with ``prompt`` and
  ``response`` columns instead are converted: ``messages = [{"role": "user", "content": prompt},
  {"role": "assistant", "content": response}]`` (a ``prompt`` that is already a chat list is kept as the turns
  before the response). Without ``val`` files the last 10% of the training rows (at least one) are held out.
* RL prompts and benchmarks (verl's ``RLHFDataset``): ``data_source``, ``prompt`` (a chat list; a plain string
  becomes one user turn), ``reward_model.ground_truth``, ``extra_info`` (default ``{split, index}``), ``ability``
  when given. Without ``rl_val`` files the RL validation split is the training split (stable-verl runs no verl
  validation: ``trainer.test_freq=-1``; verl only needs the file).

Identity: each split's sha256 over its normalised rows (canonical JSON), so the same data given as jsonl or parquet,
here or in S3, trains the same runs. Run ids hash the training splits and the reward, not the benchmarks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stable_verl.env import s3_endpoint
from stable_verl.tasks.datasets import BENCHMARKS, TaskSpec, sft_split, split_path, tokenizer_corpus, write_task_data
from stable_verl.tasks.reward_fn import RewardFn

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SUFFIXES = (".parquet", ".jsonl", ".json")
RL_COLUMNS = ("data_source", "prompt", "reward_model")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_file(uri: str) -> str:
    if not uri.endswith(_SUFFIXES):
        raise ValueError(f"data file {uri!r} must be .parquet, .jsonl or .json")
    return uri


class SFTFiles(_Strict):
    """One init's SFT data."""

    train: list[str] = Field(min_length=1)
    """Parquet/jsonl files, local or ``s3://``: ``messages`` rows, or ``prompt`` + ``response`` rows."""
    val: list[str] = []
    """Validation files; none: the last 10% of the training rows are held out."""

    @field_validator("train", "val")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        return [_check_file(v) for v in value]


class TaskData(_Strict):
    """Your task: SFT data per cold-start init, RL prompts, benchmarks, and one reward for training and evaluation."""

    sft: dict[str, SFTFiles] = {}
    """Init name -> its SFT data; the names are what ``teachers`` (cold start) and ``sft.teacher`` choose from."""
    rl_train: list[str] = Field(min_length=1)
    """RL prompts in verl's RL schema (data_source, prompt, reward_model.ground_truth, extra_info)."""
    rl_val: list[str] = []
    """RL validation prompts (none: the training prompts; verl needs a file, stable-verl runs no validation)."""
    benchmarks: dict[str, str] = {}
    """Benchmark name -> one file in the RL schema, scored with the reward (``eval.benchmarks`` chooses)."""
    messages_key: str = "messages"
    """Column of the SFT files' chat lists."""
    reward: RewardFn = Field(default_factory=RewardFn)
    """The reward of RL and of evaluation; default verl's ``default_compute_score`` by ``data_source``."""

    @field_validator("sft", "benchmarks")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"name {name!r} must be letters, digits, '.', '_' and '-' (it names files and runs)")
        return value

    @field_validator("rl_train", "rl_val")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        return [_check_file(v) for v in value]

    @field_validator("benchmarks")
    @classmethod
    def _bench_files(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: _check_file(v) for k, v in value.items()}

    def init_names(self) -> list[str]:
        return list(self.sft)

    def benchmark_names(self) -> list[str]:
        return list(self.benchmarks)


Task = TaskSpec | TaskData


def init_names(task: Task) -> list[str]:
    """The SFT inits a task has: the built-in teacher styles, or the user's init names."""
    from stable_verl.tasks.teachers import TEACHERS

    return list(TEACHERS) if isinstance(task, TaskSpec) else task.init_names()


def benchmark_names(task: Task) -> list[str]:
    """The benchmarks a task has: the built-in held-out splits, or the user's names."""
    return list(BENCHMARKS) if isinstance(task, TaskSpec) else task.benchmark_names()


def benchmark_split(name: str) -> str:
    """The split name of a user benchmark in the assets folder."""
    return f"benchmark_{name}"


def sources(task: TaskData) -> dict[str, tuple[str, list[str]]]:
    """Split name -> (schema 'sft' | 'sft_val' | 'rl', source files); 'sft_val' with no files: held out of train."""
    out: dict[str, tuple[str, list[str]]] = {}
    for init, files in task.sft.items():
        out[sft_split(init, "train")] = ("sft", files.train)
        out[sft_split(init, "val")] = ("sft_val", files.val)
    out["rl_train"] = ("rl", task.rl_train)
    out["rl_val"] = ("rl", task.rl_val or task.rl_train)
    for name, file in task.benchmarks.items():
        out[benchmark_split(name)] = ("rl", [file])
    return out


# ---------------------------------------------------------------------------------------------------- reading
def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options of ``uri``: an ``s3://`` object gets the configured endpoint (MinIO, moto), if any."""
    if fsspec.core.split_protocol(uri)[0] not in ("s3", "s3a"):
        return {}
    endpoint = s3_endpoint()
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def read_rows(uri: str) -> list[dict]:
    """The rows of one parquet or JSON-lines file (a ``.json`` file may also hold one JSON array)."""
    try:
        with fsspec.open(uri, "rb", **storage_options(uri)) as f:
            blob = f.read()
    except FileNotFoundError:
        raise ValueError(f"task data file {uri} does not exist") from None
    if uri.endswith(".parquet"):
        return pq.read_table(io.BytesIO(blob)).to_pylist()
    text = blob.decode()
    if uri.endswith(".json") and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _chat(value: Any, where: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise ValueError(f"{where}: expected a string or a list of {{role, content}} messages")


def sft_row(row: dict, messages_key: str, where: str) -> dict:
    """verl's SFT row ``{"messages": [...]}`` from a ``messages_key`` row or a ``prompt`` + ``response`` row."""
    if messages_key in row:
        return {"messages": _chat(row[messages_key], f"{where} column {messages_key!r}")}
    if "prompt" in row and "response" in row:
        response = {"role": "assistant", "content": str(row["response"])}
        return {"messages": [*_chat(row["prompt"], f"{where} column 'prompt'"), response]}
    raise ValueError(
        f"{where} has columns {sorted(row)}: an SFT file needs {messages_key!r} (chat list) or 'prompt' + 'response'"
    )


def rl_row(row: dict, split: str, index: int, where: str) -> dict:
    """verl's RL row from a row with data_source, prompt and reward_model.ground_truth."""
    missing = [c for c in RL_COLUMNS if c not in row]
    if missing or not isinstance(row["reward_model"], dict) or "ground_truth" not in row["reward_model"]:
        raise ValueError(
            f"{where} has columns {sorted(row)}: verl's RL schema needs data_source, prompt, "
            "reward_model.ground_truth (and optionally extra_info, ability)"
        )
    out = {
        "data_source": str(row["data_source"]),
        "prompt": _chat(row["prompt"], f"{where} column 'prompt'"),
        "reward_model": {
            "style": row["reward_model"].get("style") or "rule",
            "ground_truth": row["reward_model"]["ground_truth"],
        },
        "extra_info": row.get("extra_info") or {"split": split, "index": index},
    }
    if row.get("ability") is not None:
        out["ability"] = str(row["ability"])
    return out


def normalise(split: str, schema: str, files: list[str], messages_key: str) -> list[dict]:
    """The rows of one split in verl's schema (see the module docstring); ValueError naming the file and column."""
    rows = []
    for uri in files:
        read = read_rows(uri)
        if not read:
            raise ValueError(f"task data file {uri} has no rows")
        for i, row in enumerate(read):
            where = f"task data file {uri} row {i}"
            rows.append(rl_row(row, split, len(rows), where) if schema == "rl" else sft_row(row, messages_key, where))
    return rows


def normalised_benchmark(task: TaskData, name: str) -> list[dict]:
    """The rows of benchmark ``name`` in verl's RL schema (only that file is read)."""
    return normalise(benchmark_split(name), "rl", [task.benchmarks[name]], task.messages_key)


def _held_out(train: list[dict]) -> tuple[list[dict], list[dict]]:
    n_val = max(1, len(train) // 10)
    if len(train) < 2:
        raise ValueError("an SFT init without val files needs at least 2 training rows (the last 10% are held out)")
    return train[:-n_val], train[-n_val:]


def digest(rows: list[dict]) -> str:
    """sha256 of the rows as canonical JSON: the split's identity, whatever file format it came in."""
    blob = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


_CACHE: dict[tuple, dict[str, list[dict]]] = {}


def _stamp(uri: str) -> tuple:
    """A local file's size and mtime (a changed file is read again); remote objects are read once per process."""
    path = Path(uri)
    return (uri, path.stat().st_size, path.stat().st_mtime_ns) if "://" not in uri and path.exists() else (uri,)


def normalised_splits(task: TaskData) -> dict[str, list[dict]]:
    """Every split of ``task`` normalised (read once per process while the files are unchanged)."""
    src = sources(task)
    key = (task.model_dump_json(), tuple(_stamp(u) for _, files in src.values() for u in files))
    if key not in _CACHE:
        splits: dict[str, list[dict]] = {}
        for split, (schema, files) in src.items():
            if schema != "sft_val":
                splits[split] = normalise(split, schema, files, task.messages_key)
        for split, (schema, files) in src.items():
            if schema == "sft_val":
                train = split.removesuffix("_val") + "_train"
                if files:
                    splits[split] = normalise(split, "sft", files, task.messages_key)
                else:
                    splits[train], splits[split] = _held_out(splits[train])
        _CACHE[key] = splits
    return _CACHE[key]


# -------------------------------------------------------------------------------------------- identity, files
def task_identity(task: Task) -> Any:
    """What run ids hash of the task: the built-in spec itself (ids as before), or the user's training splits'
    digests and the reward's identity (benchmarks are left out: they train nothing)."""
    if isinstance(task, TaskSpec):
        return task
    splits = normalised_splits(task)
    data = {k: digest(v) for k, v in splits.items() if not k.startswith("benchmark_")}
    return {"data": data, "reward": task.reward.identity()}


def assets_identity(task: Task) -> dict:
    """The task's part of the assets folder's hash (the built-in spec's fields, as before; else its identity)."""
    return dataclasses.asdict(task) if isinstance(task, TaskSpec) else task_identity(task)


def split_names(task: Task) -> list[str]:
    """Every split :func:`write_splits` writes for ``task``."""
    from stable_verl.tasks.datasets import split_names as builtin_splits

    return builtin_splits() if isinstance(task, TaskSpec) else list(sources(task))


def write_splits(out_dir: Path, task: Task) -> dict[str, Path]:
    """Every split of ``task`` as parquet under ``out_dir`` (the built-in task generates them); name -> path."""
    if isinstance(task, TaskSpec):
        return write_task_data(out_dir, task)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in normalised_splits(task).items():
        paths[split] = split_path(out_dir, split)
        pq.write_table(pa.Table.from_pylist(rows), paths[split])
    return paths


def corpus(task: Task) -> list[str]:
    """Text a tiny model's tokenizer is trained on: the built-in task's, or the user's SFT and RL text."""
    if isinstance(task, TaskSpec):
        return tokenizer_corpus(task)
    texts = []
    for split, rows in normalised_splits(task).items():
        if not split.startswith("benchmark_"):
            texts += [m["content"] for row in rows for m in row.get("messages") or row["prompt"]]
    return texts


def describe(task: TaskData) -> list[str]:
    """What ``stable-verl plan`` shows of a user task: each normalised split (rows, digest, sources) and the reward."""
    src = sources(task)
    lines = ["# TASK your data, normalised to verl's schemas (split: rows, sha256, from)"]
    splits = normalised_splits(task)
    for split in src:
        rows = splits[split]
        origin = ", ".join(src[split][1]) or f"held out of {split.removesuffix('_val')}_train"
        lines.append(f"#   {split}: {len(rows)} rows, {digest(rows)[:12]}, from {origin}")
    reward = task.reward
    what = "verl default_compute_score by data_source" if reward.path is None else f"{reward.path}:{reward.name}"
    lines.append(f"# REWARD {what}, kwargs {reward.kwargs}")
    return lines
