"""Cells side by side (flows/cells.py): the progress counts, the concurrency a flow picks, the failure summary.

The cells running on Prefect's thread-pool runner, as Ray Jobs on a two-node cluster, are
tests/integration/test_parallel_cells.py.
"""

from __future__ import annotations

import pytest

from flows.cells import (
    CellCounts,
    CellOutcome,
    CellsFailed,
    max_concurrent,
    one_line,
    raise_if_failed,
    sft_concurrency,
)
from stable_verl.config.params import LauncherParams, StabilityGridParams


def test_counts_show_running_queued_and_done_cells():
    c = CellCounts(total=4, concurrency=2)
    c.start()
    c.start()
    assert (c.running, c.queued, c.done) == (2, 2, 0)
    assert c.line("grid", "started b") == (
        "grid: 2 running, 2 queued, 0/4 done (at most 2 at once; started b); estimated time left unknown"
    )
    c.finish(100.0, failed=False, skipped=False)
    c.start()
    c.finish(30.0, failed=True, skipped=False)  # a failed cell: counted, not in the time estimate
    assert (c.running, c.queued, c.done, c.failed) == (1, 1, 2, 1)
    assert c.eta_s == pytest.approx(100.0 * 2 / 2)  # mean 100 s x 2 cells left / 2 at once
    assert "1 running, 1 queued, 2/4 done, 1 failed" in c.line("grid", "c FAILED: boom")


def test_counts_estimate_only_the_cells_left_to_run():
    # 6 cells, 4 complete at the start (skipped in a second each), 2 at once
    c = CellCounts(total=6, concurrency=2, to_run=2)
    for _ in range(2):
        c.start()
        c.finish(1.0, failed=False, skipped=True)
    c.start()
    c.finish(120.0, failed=False, skipped=False)
    assert c.eta_s == pytest.approx(120.0 * 1 / 2)  # not 120 x 3 cells not done
    for wall, skipped in ((1.0, True), (1.0, True), (80.0, False)):
        c.start()
        c.finish(wall, failed=False, skipped=skipped)
    assert c.eta_s == 0.0 and c.done == 6 and c.skipped == 4


def test_one_at_a_time_locally_unless_asked():
    assert max_concurrent(LauncherParams(), gpus_per_stage=1) == 1
    assert max_concurrent(LauncherParams(max_concurrent=3), gpus_per_stage=1) == 3
    on_cluster = LauncherParams(kind="ray_job", ray_address="http://127.0.0.1:1", max_concurrent=8)
    assert max_concurrent(on_cluster, gpus_per_stage=4) == 8  # given: the cluster is not asked
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        LauncherParams(max_concurrent=0)


def test_sft_inits_run_all_at_once_locally_and_max_concurrent_at_once_on_a_cluster():
    # Locally every init's SFT at once (verl SFT keeps one core busy), whatever bounds the RL stages.
    assert sft_concurrency(LauncherParams(), gpus_per_stage=1, stages=3) == 3
    assert sft_concurrency(LauncherParams(max_concurrent=1), gpus_per_stage=1, stages=3) == 3
    assert sft_concurrency(LauncherParams(), gpus_per_stage=1, stages=0) == 1  # a thread pool of at least one
    # On a cluster the RL stages' bound (the default, the cluster's GPUs: tests/integration/test_parallel_cells.py).
    on_cluster = LauncherParams(kind="ray_job", ray_address="http://127.0.0.1:1", max_concurrent=2)
    assert sft_concurrency(on_cluster, gpus_per_stage=1, stages=3) == 2 == max_concurrent(on_cluster, 1)


def test_max_concurrent_is_a_grid_setting_outside_every_run_id():
    from stable_verl.train.stages import rl_run_id

    one = StabilityGridParams.from_config(None, ["init_run=sft-terse-00000000"])
    four = StabilityGridParams.from_config(None, ["init_run=sft-terse-00000000", "launcher.max_concurrent=4"])
    assert four.launcher.max_concurrent == 4
    for cell in one.cells():
        parent = "runs/sft-terse-00000000/checkpoints/global_step_1"
        assert rl_run_id(one.rl_params(cell, "x"), parent) == rl_run_id(four.rl_params(cell, "x"), parent)


def test_failed_cells_are_named_with_every_outcome():
    outcomes = [CellOutcome("a", result={"run_id": "rl-a"}), CellOutcome("b", error=one_line(RuntimeError("x\ny")))]
    with pytest.raises(
        CellsFailed, match=r"1 of 2 grid cell\(s\) failed; rerun to resume them: a: complete; b: failed \(x\)"
    ):
        raise_if_failed("grid", outcomes)
    raise_if_failed("grid", outcomes[:1])  # all complete: nothing raised
    assert one_line(KeyError()) == "KeyError"
