"""Routing Replay R2 and R3 in real verl runs on CPU (FSDP engine + vLLM-CPU rollouts), 3 steps each.

The rollout-precision knob rounds vLLM's weights through fp8 (per-channel e4m3) on every sync, which makes the
train-inference gap and routing flips real on CPU. Against the no-replay MiniRL run of test_minirl_run.py
(same recipe, same knob, vLLM routes fetched for the metric):
* R3: the training engine routes exactly as vLLM sampled (mismatch 0), and the train-inference KL is lower;
* R2: every update routes by the old-log-prob pass's routes, while the policy's own routing drifts.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pytest

from stable_verl.pipeline import stages

pytestmark = pytest.mark.slow

KL = "actor/train_infer_kl_k3"


def run(smoke_config, smoke_report, tmp_path_factory, recipe: str, **rl_fields) -> list[dict]:
    rl = dataclasses.replace(smoke_config.rl, recipe=recipe, **rl_fields)
    data = {p.stem: p for p in (Path(smoke_config.workdir) / "data").glob("*.parquet")}
    metrics, _ = stages.run_rl(rl, Path(smoke_report.sft_model), data, tmp_path_factory.mktemp(recipe))
    return stages.read_metrics(metrics)


@pytest.fixture(scope="module")
def r3_rows(smoke_config, smoke_report, tmp_path_factory):
    return run(smoke_config, smoke_report, tmp_path_factory, "minirl_r3", rollout_precision="fp8")


@pytest.fixture(scope="module")
def r2_rows(smoke_config, smoke_report, tmp_path_factory):
    return run(smoke_config, smoke_report, tmp_path_factory, "minirl_r2")


def test_r3_trains_on_vllms_routes(r3_rows):
    assert [r["step"] for r in r3_rows] == [1, 2, 3]
    for row in r3_rows:
        assert row["routing/replay_r3"] == 1.0
        assert row["routing/routed_tokens"] > 0
        assert row["routing/mismatch_rate_replayed"] == 0.0  # old-log-prob pass: vLLM's experts, every token
        assert row["actor/routing/replay_miss_rate"] == 0.0  # and in every update
        assert row["routing/bytes_per_token"] == 4  # 2 MoE layers x top-2 x uint8
    # fp8 weights in vLLM flip some routes; the training router would have disagreed there without replay
    assert max(r["routing/mismatch_rate"] for r in r3_rows) > 0


def test_r3_lowers_the_train_infer_kl_under_fp8(r3_rows, minirl_rows):
    no_replay, _ = minirl_rows
    assert all(r["routing/replay_r3"] == 0.0 for r in no_replay)
    assert min(r["routing/mismatch_rate"] for r in no_replay) > 0  # routing flips are real under fp8
    r3_kl = statistics.fmean(r[KL] for r in r3_rows)
    no_replay_kl = statistics.fmean(r[KL] for r in no_replay)
    assert r3_kl < no_replay_kl, f"R3 KL {r3_kl:.3g} vs no replay {no_replay_kl:.3g}"


def test_r2_replays_old_policy_routes_in_every_update(r2_rows):
    assert [r["step"] for r in r2_rows] == [1, 2, 3]
    for row in r2_rows:
        assert row["routing/replay_r2"] == 1.0
        assert row["actor/routing/replay_miss_rate"] == 0.0  # each update used the recorded experts
        assert 0.0 <= row["actor/routing/drift"] <= 1.0
        assert row["routing/mismatch_rate_replayed"] == row["routing/mismatch_rate"]  # recorded natively
    assert any(r["actor/grad_norm"] > 0 for r in r2_rows)
