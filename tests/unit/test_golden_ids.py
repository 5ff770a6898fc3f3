"""Run ids are content addresses of what was trained: a change that adds a setting must not move the ids of runs
that already exist in users' stores. ``golden/run_ids.json`` holds the ids ``stable-verl plan`` gave at df919b5
(before user models, user data and the stress recipes) for the shipped configs and the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stable_verl.config.params import ColdstartParams, StabilityGridParams
from stable_verl.train.plan import plan_coldstart, plan_stability_grid

GOLDEN = json.loads((Path(__file__).parent / "golden" / "run_ids.json").read_text())

PLANS = {
    "coldstart": lambda: plan_coldstart(ColdstartParams.from_config("configs/coldstart.yaml", [])),
    "stability_grid": lambda: plan_stability_grid(StabilityGridParams.from_config("configs/stability_grid.yaml", [])),
    "coldstart_defaults": lambda: plan_coldstart(ColdstartParams.from_config(None, [])),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_run_ids_unchanged(name):
    assert [stage.run_id for stage in PLANS[name]()] == GOLDEN[name]
