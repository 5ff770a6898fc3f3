"""Which checkpoints to evaluate when no run ids are given: a selector over the runs in the store.

``EvaluateFlowParams.select = {}`` means "every complete checkpoint in the store that has no evaluation yet";
``kind``, ``recipe`` and ``max_age_h`` narrow it. The nightly deployment in prefect.yaml uses it, so its schedule
needs no editing: each night evaluates what was saved since the last one.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stable_verl.artifacts import ArtifactStore, RunLayout, list_runs
from stable_verl.artifacts.run_record import RunRecord

Steps = Literal["last", "all"] | list[int]


class RunSelector(BaseModel):
    """Runs (and their checkpoints) picked from the store: all of them unless narrowed."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    pending: bool = True
    """Only checkpoints with no complete evaluation on one of the benchmarks yet (False: re-check them all)."""
    kind: Literal["sft", "rl"] | None = None
    """Only runs of this kind."""
    recipe: str | None = None
    """Only runs with this name in run.json: the recipe of an RL run, the teacher style of an SFT run."""
    max_age_h: float | None = Field(None, gt=0)
    """Only runs whose run.json was updated within the last this many hours."""

    def runs(self, store: ArtifactStore, now: float | None = None) -> list[str]:
        """Ids of the runs in the store that match, oldest first."""
        now = time.time() if now is None else now
        picked = []
        for entry in list_runs(store, self.kind):
            if self.recipe is not None and entry.get("name") != self.recipe:
                continue
            if self.max_age_h is not None and now - _epoch(entry.get("updated_at")) > self.max_age_h * 3600:
                continue
            picked.append(entry["run_id"])
        return picked

    def checkpoints(self, store: ArtifactStore, steps: Steps, benchmarks: list[str]) -> list[tuple[str, int]]:
        """(run id, step) of every selected run's chosen complete checkpoints (``pending``: not yet evaluated)."""
        found = []
        for rid in self.runs(store):
            run = RunLayout(store, rid)
            for step in choose_steps(run, run.checkpoint_steps(), steps, strict=False):
                if not self.pending or not all(store.is_complete(run.eval_dir(step, b)) for b in benchmarks):
                    found.append((rid, step))
        return found


def choose_steps(run: RunLayout, available: list[int], steps: Steps, strict: bool = True) -> list[int]:
    """Of a run's complete checkpoints, the ones ``steps`` names ('last', 'all', a list); SFT runs: their last.

    ``strict``: listed steps the run lacks are a ValueError (else they are left out).
    """
    if not available:
        return []
    record = RunRecord.read(run)
    if steps == "last" or (record is not None and record.kind == "sft"):
        return available[-1:]
    if steps == "all":
        return available
    missing = sorted(set(steps) - set(available))
    if missing and strict:
        raise ValueError(f"run {run.run_id} has no complete checkpoint(s) {missing}; it has {available}")
    return sorted(set(steps) & set(available))


def _epoch(iso: object) -> float:
    """Epoch seconds of an ISO-8601 time (``...Z``); 0 for a missing or bad one (so an age filter drops it)."""
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
