"""verl trains a user's own model: a Qwen3-MoE folder written with ``save_pretrained`` (weights, tokenizer, chat
template), given as ``model.path`` with ``trust_remote_code`` and a chat template file, trained by one tracked RL
stage (verl + vLLM on CPU, 2 steps) and read back through the store. SFT of a user's folder with its chat
template file is checked on the cold-start run of tests/integration/test_user_inputs_coldstart.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.config.params import RLFlowParams
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.models.tokenizer import CHAT_TEMPLATE
from stable_verl.train.stages import rl_run_id, run_rl_stage
from tests.integration.conftest import COMMON_SETTINGS, RL_SETTINGS, read_rl_run

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)

STEPS = 2


def test_rl_trains_a_user_model_folder(tmp_path, tokenizer):
    model = save_tiny_model(tmp_path / "my-model", TinyModelSpec(), tokenizer, seed=5)  # what a user hands over
    template = tmp_path / "chatml.jinja"
    template.write_text("{# my template #}" + CHAT_TEMPLATE)  # ChatML, told apart by a comment that renders nothing
    task = [s for s in COMMON_SETTINGS if not s.startswith("model.")]  # the tiny model's shape does not apply
    rl = [s for s in RL_SETTINGS if not s.startswith(("rl.total_steps=", "rl.save_freq="))]
    params = RLFlowParams.from_config(
        None,
        [
            f"workdir={tmp_path / 'work'}",
            f"store.root={tmp_path / 'store'}",
            *task,
            *rl,
            f"rl.total_steps={STEPS}",
            f"rl.save_freq={STEPS}",
            f"model.path={model}",
            "model.trust_remote_code=true",
            f"model.chat_template={template}",
        ],
    )
    store = ArtifactStore(str(tmp_path / "store"))
    before = {p: p.stat().st_size for p in model.rglob("*")}

    result = run_rl_stage(params, store)

    assert result.run_id == rl_run_id(params, None)
    run = read_rl_run(store, result.run_id, tmp_path / "work")
    assert run.steps == list(range(1, STEPS + 1))
    assert f"actor_rollout_ref.model.path={model}" in run.command
    assert "actor_rollout_ref.model.trust_remote_code=True" in run.command
    assert "actor_rollout_ref.model.custom_chat_template=${oc.env:STABLE_VERL_CHAT_TEMPLATE}" in run.command
    hf = Path(run.checkpoint) / "actor" / "huggingface"
    assert json.loads((hf / "config.json").read_text())["model_type"] == "qwen3_moe"
    assert {p: p.stat().st_size for p in model.rglob("*")} == before  # the user's folder is read, never written
    assert RunLayout(store, result.run_id).latest_checkpoint() == STEPS
    assert not list((tmp_path / "work" / "assets").glob("*/models"))  # no tiny model (nor tokenizer) was built
    saved = "".join(p.read_text() for p in hf.glob("*") if p.name in ("chat_template.jinja", "tokenizer_config.json"))
    assert "my template" in saved  # verl trained with the user's template and saved it with the weights
