"""Bad input that the parameters alone cannot see, found before a flow starts (no Prefect server, no stage).

The parameter models reject unknown keys, wrong types and impossible settings; this checks what needs the world:
the store answers and takes writes, the local scratch folder can be written, the runs a flow starts from or
evaluates are complete in the store, and a user task's (:class:`~.task_data.TaskData`) files exist and have verl's
columns and its reward imports and scores the first RL prompt. Each failure is one :class:`InputError` line (the
CLI exits 2 on it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stable_verl.artifacts import ArtifactStore, ArtifactStoreError, RunLayout
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.pipeline.reward_fn import load_reward, score_one
from stable_verl.pipeline.task_data import TaskData, normalised_splits


class InputError(ValueError):
    """A flow's input is unusable; found before anything ran."""


def check_inputs(params: Any) -> None:
    """Raise :class:`InputError` unless ``params``' store, workdir and input runs are usable. Writes nothing that
    stays: the store check writes, reads back and deletes one probe object."""
    store = params.store.open()
    try:
        store.check()
    except ArtifactStoreError as e:
        raise InputError(str(e)) from e
    _check_writable(Path(params.workdir))
    for run_id, what in _input_runs(params):
        _check_complete(store, run_id, what)
    task = getattr(params, "task", None)
    if isinstance(task, TaskData):
        check_task(task)


def check_task(task: TaskData) -> None:
    """Every file of ``task`` reads and has verl's columns (normalised in memory: nothing is written), and its reward
    imports and returns a number, or a dict with ``score``, on the first RL prompt (its ground truth as response)."""
    try:
        splits = normalised_splits(task)
        fn = load_reward(task.reward)
    except (ValueError, OSError, ImportError) as e:
        raise InputError(_one_line(e)) from e
    row = splits["rl_train"][0]
    truth = row["reward_model"]["ground_truth"]
    try:
        score_one(fn, task.reward.kwargs, row["data_source"], str(truth), truth, row["extra_info"])
    except Exception as e:  # the user's code: any failure is bad input
        where = "verl's default_compute_score" if task.reward.path is None else f"{task.reward.path}:{task.reward.name}"
        raise InputError(f"reward {where} failed on the first rl_train row: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, ValueError) else f"{type(e).__name__}: {text}"


def _input_runs(params: Any) -> list[tuple[str, str]]:
    runs = [(params.init_run, "init run")] if getattr(params, "init_run", None) else []
    return runs + [(run_id, "run") for run_id in getattr(params, "runs", None) or []]


def _check_writable(workdir: Path) -> None:
    """``workdir`` exists as a writable folder, or could be created in its nearest existing parent."""
    existing = workdir.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"workdir {workdir}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"workdir {workdir}: {existing} is not writable")


def _check_complete(store: ArtifactStore, run_id: str, what: str) -> None:
    try:
        record = RunRecord.read(RunLayout(store, run_id))
    except ValueError as e:  # not a valid run id
        raise InputError(f"{what} {run_id!r}: {e}") from e
    if record is None or not record.complete:
        state = "does not exist" if record is None else f"is {record.status!r}, not complete"
        raise InputError(f"{what} {run_id} {state} in {store.uri()}")
