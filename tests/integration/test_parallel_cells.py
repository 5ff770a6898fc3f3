"""Cells side by side as Ray Jobs on a real two-node Ray cluster (tests/support/ray_cluster.py).

Four stand-in cells (tests/support/standin_cells.py: tracked runs whose trainer sleeps per step, as Ray Jobs)
at ``max_concurrent=2`` against 1, timed from Ray's own job records (each job's start and end): at 1 no two jobs
overlap, at 2 exactly two run at once and the grid takes well under the serial wall time. A failed cell leaves the
others running and the flow names every outcome; a flow killed (SIGTERM) with two cells running and two queued
leaves no job running, and its rerun resumes the two from their checkpoints and runs the two that never started.
``pytest -s`` prints the measured numbers (docs/results/2026-12-04-parallel-cells.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flows.cells import CellsFailed, max_concurrent, sft_concurrency
from stable_verl.artifacts import RunLayout
from stable_verl.config.params import LauncherParams, StoreParams
from stable_verl.launch import procs
from stable_verl.launch.ray_job import cluster_gpus
from tests.support import progress
from tests.support.cluster_runs import run_jobs, timeline
from tests.support.ray_cluster import LocalRayCluster
from tests.support.standin_cells import StandinCell, StandinGrid, standin_grid

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)

ROOT = Path(__file__).resolve().parents[2]
STEPS, SLEEP_S = 4, 4.0  # 16 s asleep per cell: the jobs' own time dominates submission and bookkeeping
RATIO_MAX = 0.75  # 2 at once: about half the serial wall time (0.5 + start-up costs); 1 would give about 1


def _grid(moto_s3, cluster: LocalRayCluster, tmp_path: Path, concurrency: int, cells: list[StandinCell]):
    store = StoreParams(root=f"s3://{moto_s3.bucket}/cells-{uuid.uuid4().hex[:8]}", endpoint_url=moto_s3.endpoint_url)
    return StandinGrid(
        store=store, ray_address=cluster.dashboard_url, workdir=str(tmp_path), cells=cells, max_concurrent=concurrency
    )


def _cells(n: int, steps: int = STEPS, sleep_s: float = SLEEP_S, die: int | None = None) -> list[StandinCell]:
    return [
        StandinCell(run_id=f"rl-cell{i}-{i:08d}", steps=steps, sleep_s=sleep_s, die_at=2 if i == die else 0)
        for i in range(n)
    ]


def _jobs(cluster: LocalRayCluster, grid: StandinGrid) -> dict[str, list]:
    """Ray's records of each cell's jobs (its attempts), by run id."""
    return run_jobs(cluster, grid.store.open(), [c.run_id for c in grid.cells])


def _timeline(cluster: LocalRayCluster, grid: StandinGrid) -> dict:
    """The grid's timeline from Ray's job records (tests/support/cluster_runs.py); one successful job a cell."""
    jobs = [j for attempts in _jobs(cluster, grid).values() for j in attempts]
    assert len(jobs) == len(grid.cells) and all(str(j.status) == "SUCCEEDED" for j in jobs), jobs
    return timeline(jobs)


def test_four_cells_two_at_a_time_take_about_half_the_wall_time(prefect_harness, moto_s3, cluster, tmp_path):
    # The test cluster's worker declares 1 GPU: by default, one stage at a time there.
    assert cluster_gpus(cluster.dashboard_url) == 1.0
    on_cluster = LauncherParams(kind="ray_job", ray_address=cluster.dashboard_url)
    assert max_concurrent(on_cluster, gpus_per_stage=1) == 1
    assert sft_concurrency(on_cluster, gpus_per_stage=1, stages=4) == 1  # the cold-start SFTs too (locally: 4)

    measured = {}
    for concurrency in (1, 2):
        grid = _grid(moto_s3, cluster, tmp_path / f"c{concurrency}", concurrency, _cells(4))
        start = time.monotonic()
        results = standin_grid(grid)
        flow_s = time.monotonic() - start
        assert [r["checkpoints"] for r in results] == [list(range(1, STEPS + 1))] * 4
        measured[concurrency] = {**_timeline(cluster, grid), "flow_s": flow_s}

    serial, parallel = measured[1], measured[2]
    assert serial["most_at_once"] == 1 and serial["overlap_s"] == 0.0
    assert parallel["most_at_once"] == 2 and parallel["overlap_s"] > 2 * STEPS * SLEEP_S * 0.5
    ratio = parallel["wall_s"] / serial["wall_s"]
    print("\nPARALLEL-CELLS " + json.dumps({"ratio": ratio, "by_max_concurrent": measured}))
    assert ratio < RATIO_MAX, measured


def test_a_failed_cell_leaves_the_others_running(prefect_harness, moto_s3, cluster, tmp_path):
    grid = _grid(moto_s3, cluster, tmp_path, 2, _cells(3, steps=3, sleep_s=1.0, die=0))  # the first dies at step 2
    with pytest.raises(CellsFailed) as failed:
        standin_grid(grid)
    message = str(failed.value)
    assert message.startswith("1 of 3 standin-grid cell(s) failed"), message
    assert "rl-cell0-00000000: failed (verl rl Ray job " in message and "FAILED" in message
    assert "rl-cell1-00000001: complete; rl-cell2-00000002: complete" in message
    store = grid.store.open()
    statuses = [RunLayout(store, c.run_id).read_run()["status"] for c in grid.cells]
    assert statuses == ["failed", "complete", "complete"]
    assert RunLayout(store, "rl-cell0-00000000").checkpoint_steps() == [1]


def _active(cluster: LocalRayCluster) -> list[str]:
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(cluster.dashboard_url).list_jobs()
    return [j.submission_id for j in jobs if str(j.status) in ("PENDING", "RUNNING")]


def test_a_killed_flow_resumes_every_unfinished_cell(prefect_harness, moto_s3, cluster, tmp_path):
    from prefect.settings import PREFECT_API_URL

    grid = _grid(moto_s3, cluster, tmp_path, 2, _cells(4, steps=4, sleep_s=3.0))
    store = grid.store.open()
    runs = [RunLayout(store, c.run_id) for c in grid.cells]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    argv = [sys.executable, "-m", "tests.support.standin_cells", grid.model_dump_json()]
    log = tmp_path / "flow.log"
    with open(log, "w") as out:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def two_checkpointed() -> bool:  # the first two cells: a checkpoint each in S3
        assert child.poll() is None, log.read_text()[-3000:]
        return all(r.checkpoint_steps() for r in runs[:2])

    try:
        # Progress: the flow's log grows (its cells' steps, one every 3 s while the trainers sleep) or its tree,
        # or the nodes' (the jobs' drivers), works.
        watch = [child.pid, *(node.pid for node in cluster.nodes)]
        size = lambda: log.stat().st_size  # noqa: E731
        progress.wait_for(two_checkpointed, what="two cells' first checkpoints", watch_pids=watch, progress=size)
        child.send_signal(signal.SIGTERM)  # Prefect's cancellation
        exited = lambda: child.poll() is not None  # noqa: E731
        progress.wait_for(exited, what="the flow to exit on SIGTERM", watch_pids=[child.pid], progress=size)
        assert child.returncode != 0, log.read_text()[-3000:]
    finally:
        procs.kill_tree(child.pid, grace_s=0)
        child.wait()
    assert _active(cluster) == [], "a job outlived its cancelled flow"
    killed = {r.run_id: r.read_run()["status"] for r in runs[:2]}
    assert killed == {r.run_id: "failed" for r in runs[:2]}, killed
    assert all(0 < r.checkpoint_steps()[-1] < 4 for r in runs[:2])
    assert [r.read_run() for r in runs[2:]] == [None, None]  # queued: never started

    results = standin_grid(grid)  # the rerun

    assert [r["resumed_from"] > 0 for r in results] == [True, True, False, False]
    assert not any(r["skipped"] for r in results)
    for run in runs:
        assert [m["step"] for m in run.read_metrics()] == [1, 2, 3, 4]  # each step exactly once
        assert run.read_run()["status"] == "complete"
    attempts = {run: len(jobs) for run, jobs in _jobs(cluster, grid).items()}
    assert list(attempts.values()) == [2, 2, 1, 1], attempts
