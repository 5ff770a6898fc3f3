"""Bad input that the parameters alone cannot see, found before a flow starts (no Prefect server, no stage).

The parameter models reject unknown keys, wrong types and impossible settings; this checks what needs the world:
the store answers and takes writes, the local scratch folder can be written, and the runs a flow starts from or
evaluates are complete in the store. Each failure is one :class:`InputError` line (the CLI exits 2 on it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stable_verl.artifacts import ArtifactStore, ArtifactStoreError, RunLayout
from stable_verl.artifacts.run_record import RunRecord


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
