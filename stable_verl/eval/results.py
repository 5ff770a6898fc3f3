"""A checkpoint's evaluation results in the store: what is evaluated (:class:`EvalTarget`) and how one benchmark's
results go up (:func:`upload_result`), the same from the flow's machine and from a cluster's node."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stable_verl.artifacts import ArtifactStore, RunLayout


@dataclass(frozen=True)
class EvalTarget:
    run_id: str
    step: int


def upload_result(store: ArtifactStore, target: EvalTarget, bench: str, local: Path) -> dict:
    """The worker's folder of one benchmark (``local``: ``<out>/<benchmark>/``) to ``runs/<id>/eval/global_step_N/
    <benchmark>/`` in ``store``, manifest last; its results.json names the store's checkpoint, not the folder the
    worker read. Returns the results."""
    run = RunLayout(store, target.run_id)
    path = local / "results.json"
    scored = json.loads(path.read_text())
    scored["model"] = run.uri(run.checkpoint(target.step))
    path.write_text(json.dumps(scored, indent=1))
    store.put_dir(local, run.eval_dir(target.step, bench), metadata={"run_id": target.run_id, "step": target.step})
    return scored
