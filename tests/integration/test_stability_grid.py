"""A tiny stability grid end to end: real verl + vLLM (CPU) + Prefect (test harness), a local store.

2 cells (minirl at N = 1, minirl_r3 at N = 2) x 1 seed x 3 steps, fp8 rollouts, from an SFT init the flow builds.
The per-N arm lists (``arms_by_n``, as the real grid has them) keep the test at two RL runs (three verl start-ups
with the resume, ~70 s each on 2 cores).

1. attempt 1: the second cell's verl tree is SIGKILLed once its first checkpoint is in the store; the flow fails;
2. attempt 2: the first cell is skipped (complete), the killed one resumes from its checkpoint,
   checkpoints are evaluated, the report is written;
3. attempt 3: nothing runs; the same report.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pandas as pd
import pytest

from flows.stability_grid import stability_grid_flow, summary
from stable_verl.artifacts import ArtifactStore, ComparisonLayout, RunLayout, list_runs
from stable_verl.pipeline import claims
from stable_verl.pipeline.launch import procs
from stable_verl.pipeline.params import StabilityGridParams
from tests.integration.interrupted import run_while_killing

pytestmark = pytest.mark.slow

SETTINGS = [  # every value pinned here (no YAML), whatever configs/stability_grid.yaml (the real grid) sets
    "seed=0",
    "arms=[minirl,minirl_r3]",
    "minibatches=[1,2]",
    "arms_by_n={1:[minirl],2:[minirl_r3]}",
    "seeds=[0]",
    "model.kind=moe",
    "model.num_layers=2",
    "task.difficulty=1",
    "task.max_operand=null",
    "task.n_sft=256",
    "task.n_rl_train=64",
    "task.n_bench=32",
    "sft.teacher=stepwise",
    "sft.steps=40",
    "sft.batch_size=16",
    "sft.micro_batch_size=8",
    "sft.lr=1e-3",
    "rl.total_steps=3",
    "rl.train_batch_size=8",
    "rl.rollout_n=4",
    "rl.micro_batch_size=16",
    "rl.lr=1e-4",
    "rl.rollout_precision=fp8",
    "rl.format_bonus=0.1",
    "rl.save_freq=1",
    "eval.benchmarks=[bench_id,bench_hard]",
    "eval.k=2",
    "eval.n_prompts=8",
    "eval.steps=[2]",
]


@dataclass
class Grid:
    params: StabilityGridParams
    store: ArtifactStore
    first_error: BaseException | None = None
    killed_run: str | None = None
    results: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _kill_second_cell(store: ArtifactStore, grid: Grid, stop: threading.Event) -> None:
    """Once a cell that is not complete has a checkpoint in the store and one cell is complete, kill its verl."""
    while not stop.wait(0.5):
        status = {r["run_id"]: r["status"] for r in list_runs(store, "rl")}
        done = [rid for rid, s in status.items() if s == "complete"]
        running = [rid for rid, s in status.items() if s != "complete"]
        with_ckpt = [rid for rid in running if RunLayout(store, rid).latest_checkpoint()]
        leaders = [pid for pid, name in procs.active().items() if name == "verl rl"]
        if done and with_ckpt and leaders:
            for pid in leaders:
                procs.kill_tree(pid, grace_s=0)
            grid.killed_run = with_ckpt[0]
            return


@pytest.fixture(scope="module")
def tiny_grid(prefect_harness, tmp_path_factory) -> Grid:
    tmp = tmp_path_factory.mktemp("grid")
    params = StabilityGridParams.from_config(
        None, [f"workdir={tmp / 'work'}", f"store.root={tmp / 'store'}", *SETTINGS]
    )
    grid = Grid(params, params.store.open())
    grid.first_error, seconds = run_while_killing(stability_grid_flow, params, _kill_second_cell, grid.store, grid)
    grid.seconds.append(seconds)
    for _ in range(2):
        t0 = time.monotonic()
        grid.results.append(stability_grid_flow(params))
        grid.seconds.append(time.monotonic() - t0)
    print(f"\ntiny grid attempts: {[round(s) for s in grid.seconds]} s\n{summary(grid.results[0])}")
    return grid


def test_killed_cell_fails_the_flow(tiny_grid):
    assert tiny_grid.killed_run is not None, "no cell's verl tree was killed"
    assert tiny_grid.first_error is not None and "exited with code -9" in str(tiny_grid.first_error)


def test_rerun_skips_the_complete_cell_and_resumes_the_killed_one(tiny_grid):
    cells = tiny_grid.results[0]["cells"]
    assert [c["cell"] for c in cells] == [
        "minirl@N=1/seed0",
        "minirl_r3@N=2/seed0",
    ]
    assert [c["skipped"] for c in cells] == [True, False]
    resumed = cells[1]
    assert resumed["run_id"] == tiny_grid.killed_run and resumed["resumed_from"] >= 1
    for c in cells:  # every step once, even in the resumed run
        assert [r["step"] for r in RunLayout(tiny_grid.store, c["run_id"]).read_metrics()] == [1, 2, 3], c["cell"]


def test_third_run_skips_everything_and_writes_the_same_report(tiny_grid):
    second, third = tiny_grid.results
    assert all(c["skipped"] for c in third["cells"])
    assert [c["run_id"] for c in third["cells"]] == [c["run_id"] for c in second["cells"]]
    assert third["comparison_id"] == second["comparison_id"] and third["eval"]["evaluated"] == 0


def test_report_shape(tiny_grid):
    store, result = tiny_grid.store, tiny_grid.results[0]
    layout = ComparisonLayout(store, result["comparison_id"])
    for name in ("plots/regime_N1.png", "plots/regime_N2.png", "plots/crossover.png", "report.md", "grid.json"):
        assert store.exists(f"{layout.prefix}/{name}"), name
    local = tiny_grid.params.workdir + f"/comparisons/{result['comparison_id']}"
    table, claims_csv = pd.read_csv(f"{local}/table.csv"), pd.read_csv(f"{local}/claims.csv")
    assert len(table) == 2 and table["peak"].notna().all() and (table["steps_s"] > 0).all()
    assert claims_csv["claim"].tolist() == [c.text for c in claims.CLAIMS]
    assert set(claims_csv["verdict"]) == {claims.INCONCLUSIVE}  # one seed: nothing can be held or rejected
    print("\n" + table[["arm", "N", "verl_s", "steps_s", "startup_s"]].to_string())
