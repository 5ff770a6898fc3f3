"""A grid of stand-in cells run by flows/cells.py as Ray Jobs: what test_parallel_cells.py measures.

Each cell is a stage subflow like ``rl_flow``: one tracked run (its own run id, lease, resume from the store) whose
trainer is the stand-in of tests/unit/test_tracked_stage.py (verl's file contract; it sleeps per step, using no
CPU), submitted as a Ray Job. The grid flow runs its cells as the stability grid does (``run_cells``, then
``raise_if_failed``). ``python -m tests.support.standin_cells '<StandinGrid as JSON>'`` runs it in a process of
its own (the kill test's flow).
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from flows.cells import Cell, raise_if_failed, run_cells
from flows.tasks import kill_verl
from stable_verl.artifacts import RunLayout
from stable_verl.config.params import StoreParams
from stable_verl.launch import procs
from stable_verl.launch.ray_job import RayJobLauncher
from stable_verl.train.lifecycle import VerlJob, run_tracked
from tests.support.standin import TRAINER


class StandinCell(BaseModel):
    run_id: str
    steps: int
    sleep_s: float
    """Per step."""
    die_at: int = 0
    """The trainer kills itself at this step (0: never)."""


class StandinGrid(BaseModel):
    store: StoreParams
    ray_address: str
    workdir: str
    cells: list[StandinCell]
    max_concurrent: int


class StandinStage(BaseModel):
    grid: StandinGrid
    cell: StandinCell


@flow(name="standin-stage")
def standin_stage(params: StandinStage) -> dict:
    """One stand-in cell as a tracked run, its trainer a Ray Job (what ``rl_flow`` is to a real cell)."""
    cell, grid = params.cell, params.grid
    job = VerlJob(
        kind="rl",
        name="stand-in",
        total_steps=cell.steps,
        argv=lambda root: [
            sys.executable,
            "-c",
            TRAINER,
            str(root),
            str(cell.steps),
            str(cell.die_at),
            str(cell.sleep_s),
        ],
        env={},
        timeout_s=None,  # the stall rule's default applies (launch/stall.py)
        config={"steps": cell.steps, "sleep_s": cell.sleep_s},
        launcher=lambda: RayJobLauncher(grid.ray_address),
    )
    run = RunLayout(grid.store.open(), cell.run_id)
    return run_tracked(run, job, Path(grid.workdir) / cell.run_id, echo=get_run_logger().info).as_dict()


@flow(name="standin-grid", on_cancellation=[kill_verl], on_crashed=[kill_verl], on_failure=[kill_verl])
def standin_grid(params: StandinGrid) -> list[dict]:
    """Every cell, ``max_concurrent`` at once; fails naming every outcome if any cell failed."""
    procs.install_sigterm_handler()  # as every flow's preflight: running jobs are stopped on SIGTERM
    cells = [Cell(c.run_id, standin_stage, StandinStage(grid=params, cell=c)) for c in params.cells]
    outcomes = run_cells("standin-grid", cells, params.max_concurrent)
    raise_if_failed("standin-grid", outcomes)
    return [o.result for o in outcomes]


if __name__ == "__main__":
    standin_grid(StandinGrid.model_validate_json(sys.argv[1]))
