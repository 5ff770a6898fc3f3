"""A tiny stability grid end to end: real verl + vLLM (CPU) + Prefect (test harness), a local store.

The ``tiny_grid`` fixture (conftest): 2 cells (cispo at N = 1, minirl_r2 at N = 2) x 1 seed x 3 steps, fp8 rollouts,
from the small regime's SFT run given as ``init_run``; checkpoints scored at the last step beside the init.
1. attempt 1: both cells run, their checkpoints are evaluated, the report is written;
2. attempt 2: nothing runs (every cell complete); the same report.

A killed cell resumes through the same RL stage flow as the cold-start comparison's, whose e2e test kills and
resumes it (test_coldstart_flow.py): CI keeps one kill point. The cells' method checks are test_cispo_run.py and
test_routing_replay_run.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from stable_verl.artifacts import ComparisonLayout, RunLayout, list_runs
from stable_verl.reports import claims

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)


def test_every_cell_runs_once_from_the_given_init(tiny_grid, sft_run):
    first = tiny_grid.results[0]
    assert first["init_run"] == sft_run
    assert [r["run_id"] for r in list_runs(tiny_grid.store, "sft")] == [sft_run]  # no SFT of its own: it was given
    cells = first["cells"]
    assert [c["cell"] for c in cells] == ["cispo@N=1/seed0", "minirl_r2@N=2/seed0"]
    assert [c["skipped"] for c in cells] == [False, False] and [c["resumed_from"] for c in cells] == [0, 0]
    for c in cells:
        assert [r["step"] for r in RunLayout(tiny_grid.store, c["run_id"]).read_metrics()] == [1, 2, 3], c["cell"]
    assert first["eval"]["evaluated"] == 3  # the init and each cell's step 3


def test_rerun_skips_everything_and_writes_the_same_report(tiny_grid):
    first, second = tiny_grid.results
    assert all(c["skipped"] for c in second["cells"])
    assert [c["run_id"] for c in second["cells"]] == [c["run_id"] for c in first["cells"]]
    assert second["comparison_id"] == first["comparison_id"] and second["eval"]["evaluated"] == 0
    assert second["report"] == first["report"]


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
