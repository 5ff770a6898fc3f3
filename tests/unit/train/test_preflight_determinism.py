"""verl's rollout.full_determinism on CPU with a MoE: refused before anything starts, since vLLM-CPU has no
batch-invariant MoE backend and its engine fails minutes in (measured: docs/results/stress-phase1.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stable_verl.config.params import RLFlowParams, StabilityGridParams
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.train import preflight
from stable_verl.train.preflight import InputError, check_inputs

ON = f"rl.overrides=[{preflight.FULL_DETERMINISM}=true]"


def _params(tmp_path: Path, *overrides: str, grid: bool = False):
    cls = StabilityGridParams if grid else RLFlowParams
    return cls.from_config(None, [f"store.root={tmp_path / 's'}", f"workdir={tmp_path / 'w'}", *overrides])


def test_refused_for_the_tiny_moe_on_cpu_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "on_cpu", lambda: True)
    with pytest.raises(InputError, match=r"full_determinism=true.*vLLM on CPU has none for a MoE model") as err:
        check_inputs(_params(tmp_path, ON))
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="full_determinism"):  # every cell of a grid, "+key" spelling too
        check_inputs(_params(tmp_path, f"rl.overrides=[+{preflight.FULL_DETERMINISM}=True]", grid=True))


def test_accepted_off_on_gpu_and_for_a_dense_model(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "on_cpu", lambda: True)
    check_inputs(_params(tmp_path, f"rl.overrides=[{preflight.FULL_DETERMINISM}=false]"))
    check_inputs(_params(tmp_path, ON, "model.kind=dense"))
    monkeypatch.setattr(preflight, "on_cpu", lambda: False)
    check_inputs(_params(tmp_path, ON))


def test_a_user_model_is_judged_by_its_config(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(preflight, "on_cpu", lambda: True)
    moe = save_tiny_model(tmp_path / "moe", TinyModelSpec(), tokenizer, seed=3)
    with pytest.raises(InputError, match="full_determinism"):
        check_inputs(_params(tmp_path, ON, f"model.path={moe}"))
    dense = save_tiny_model(tmp_path / "dense", TinyModelSpec(kind="dense"), tokenizer, seed=3)
    check_inputs(_params(tmp_path, ON, f"model.path={dense}"))
