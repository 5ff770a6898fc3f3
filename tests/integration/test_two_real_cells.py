"""Two real RL cells at once on the two-node test cluster (issue 28, point 3): a stability grid as Ray Jobs.

The cluster's worker declares 2 logical GPUs (``two_gpu_cluster``): one per RL stage. The grid flow runs with
``launcher.kind=ray_job`` and ``launcher.max_concurrent=2``: its init's short SFT (a Ray Job), then its two cells
(GRPO at N = 1, seeds 0 and 1; real verl ``main_ppo`` with vLLM-CPU rollouts, fp8 as the grid's stress), then the
evaluation of the init and both cells (a Ray Job). Ray's job records show the two cells' jobs running at once; both
complete with every step's metrics and their last checkpoint in the store, under the run ids the experiment
declares (``stable-verl plan``). ``pytest -s`` prints the measured times (docs/results/2026-12-04-parallel-cells.md).

Memory: two verl trees at once and the cluster, about 15 GB; on the 24 GB machine, only when no other verl run is on
it (Ray's memory monitor kills the cells' workers otherwise; that results page).
"""

from __future__ import annotations

import json
import math
import time

import pytest

from flows.stability_grid import stability_grid_flow
from stable_verl.artifacts import RunLayout
from stable_verl.config.params import StabilityGridParams
from stable_verl.train.plan import plan_stability_grid
from tests.support.cluster_runs import SFT_SETTINGS, TASK, on_cluster, run_jobs, store_root, timeline

pytestmark = [
    pytest.mark.slow,
    pytest.mark.extended,  # make test-extended (Makefile)
]

STEPS = 3
GRID = [
    "minibatches=[1]",
    "arms=[grpo]",
    "seeds=[0,1]",  # two cells of one arm: GRPO at N = 1, seeds 0 and 1
    f"rl.total_steps={STEPS}",
    f"rl.save_freq={STEPS}",  # one checkpoint, the last: the cell's output
    "rl.format_bonus=0.1",
    "eval.benchmarks=[bench_id]",
    "eval.k=2",
    "eval.n_prompts=4",
    f"eval.steps=[{STEPS}]",
    "launcher.max_concurrent=2",
]


def test_two_real_cells_run_at_once_to_completion(prefect_harness, moto_s3, two_gpu_cluster, tmp_path):
    settings = on_cluster(moto_s3, tmp_path, two_gpu_cluster, store_root(moto_s3, "two-cells"))
    params = StabilityGridParams.from_config(None, [*settings, *SFT_SETTINGS, *TASK, *GRID])
    declared = plan_stability_grid(params)
    assert [s.kind for s in declared] == ["sft", "rl", "rl"]

    start = time.monotonic()
    result = stability_grid_flow(params)
    grid_s = time.monotonic() - start

    assert result["max_concurrent"] == 2 and result["init_run"] == declared[0].run_id
    runs = [c["run_id"] for c in result["cells"]]
    assert runs == [s.run_id for s in declared[1:]], runs  # each cell under the run id its experiment declares
    assert result["eval"]["evaluated"] == 3  # the init and each cell's last step

    # Ray's records: one job a cell, both succeeded, running at once for most of the shorter one's time.
    store = params.store.open()
    jobs = run_jobs(two_gpu_cluster, store, runs)
    assert [len(attempts) for attempts in jobs.values()] == [1, 1], jobs
    assert all(str(attempts[0].status) == "SUCCEEDED" for attempts in jobs.values()), jobs
    measured = timeline([attempts[0] for attempts in jobs.values()])
    assert measured["most_at_once"] == 2 and measured["overlap_s"] > 0.5 * min(measured["job_s"]), measured

    for run_id in runs:  # both complete and correct: every step's metrics once, the last checkpoint in the store
        run = RunLayout(store, run_id)
        assert run.read_run()["status"] == "complete"
        rows = run.read_metrics()
        assert [r["step"] for r in rows] == list(range(1, STEPS + 1)), run_id
        assert all(math.isfinite(r["actor/grad_norm"]) and 0.0 <= r["critic/score/mean"] <= 1.1 for r in rows), rows
        assert run.checkpoint_steps() == [STEPS]
        paths = {f.path for f in store.read_manifest(run.checkpoint(STEPS)).files}
        assert {"data.pt", "actor/model_world_size_1_rank_0.pt"} <= paths and any(
            p.startswith("actor/huggingface/") for p in paths
        ), sorted(paths)

    cells = {c["run_id"]: {k: round(c[k], 1) for k in ("flow_s", "verl_s")} for c in result["cells"]}
    print("\nTWO-REAL-CELLS " + json.dumps({**measured, "grid_s": grid_s, "cells": cells}))
