"""Real verl SFT and RL stages with ``logging.backends=[tensorboard,mlflow]``: the trackers get every step with the
values the store's metrics hold, the store still gets every step, and a tracker credential in the environment
reaches no artifact."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from stable_verl.artifacts import RunLayout
from stable_verl.config.params import RLFlowParams, SFTFlowParams
from stable_verl.train.stages import run_rl_stage, run_sft_stage
from tests.integration.conftest import RL_SETTINGS, SFT_SETTINGS

SECRET = "wandb-key-never-stored-0123456789"


def _compared(rows: list[dict]) -> list[str]:
    """Metric names every store row has as a finite number (the ones both trackers must hold too)."""
    names = set.intersection(*(set(r) for r in rows)) - {"step"}
    ok = [n for n in sorted(names) if all(isinstance(r[n], int | float) and math.isfinite(r[n]) for r in rows)]
    return [n for n in ok if "@" not in n][:5]


def _check_trackers(run: RunLayout, steps: int, tb_root: Path, mlflow) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = run.read_metrics()
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # the store still has every step
    names = _compared(rows)
    assert names, rows[0]
    events = EventAccumulator(str(tb_root / "stable-verl" / run.run_id), size_guidance={"scalars": 0})
    events.Reload()
    # the env's store, not a tracking URI an earlier test set in this process (mlflow keeps it globally)
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    (mlrun,) = client.search_runs(
        [client.get_experiment_by_name("stable-verl").experiment_id], f"attributes.run_name = '{run.run_id}'"
    )
    for name in names:
        stored = [(r["step"], pytest.approx(r[name], rel=1e-5, abs=1e-7)) for r in rows]
        assert [(e.step, e.value) for e in events.Scalars(name)] == stored, name
        history = sorted((m.step, m.value) for m in client.get_metric_history(mlrun.info.run_id, name))
        assert history == stored, name


def test_sft_and_rl_stages_log_to_tensorboard_and_mlflow(small_regime, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is in infra/requirements-cpu.lock: reinstall it")
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    common = [*small_regime.common, f"store.root={tmp_path / 'store'}", "logging.backends=[tensorboard,mlflow]"]
    sft = SFTFlowParams.from_config(None, [*common, *SFT_SETTINGS, "sft.steps=4"])
    store = sft.store.open()
    sft_run = run_sft_stage(sft, store).run_id
    rl = RLFlowParams.from_config(
        None, [*common, *RL_SETTINGS, "rl.total_steps=2", "rl.save_freq=2", f"init_run={sft_run}"]
    )
    rl_run = run_rl_stage(rl, store).run_id

    _check_trackers(RunLayout(store, sft_run), 4, tmp_path / "tb", mlflow)
    _check_trackers(RunLayout(store, rl_run), 2, tmp_path / "tb", mlflow)
    command = store.read_text(RunLayout(store, rl_run).command_json)
    assert "trainer.logger=[console,file,tensorboard,mlflow]" in command
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if SECRET.encode() in p.read_bytes()]
