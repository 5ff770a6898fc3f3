"""stable-verl's routing replay inside verl: registration, config checks and the per-step routing metrics."""

from __future__ import annotations

import pytest
import torch
import verl  # noqa: F401  (first: loads stable-verl's verl plugin, which registers the engine)

from stable_verl.verl_ext import routing_engine as re_
from stable_verl.verl_ext.trainer.routing import routing_metrics


def test_engine_takes_the_fsdp_slot_in_verls_registry():
    from verl.workers.engine import EngineRegistry

    for backend in ("fsdp", "fsdp2"):
        assert EngineRegistry._engines["language_model"][backend]["cuda"] is re_.RoutingReplayFSDPEngine
    assert EngineRegistry._engines["value_model"]["fsdp2"]["cuda"] is not re_.RoutingReplayFSDPEngine


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("R3", False, "fsdp2"), "rollout.enable_rollout_routing_replay is false"),
        (("R2", True, "megatron"), "runs in the FSDP engine; actor.strategy is 'megatron'"),
        (("R2", False, "fsdp2", 2), "ulysses_sequence_parallel_size=1, got 2"),
    ],
)
def test_bad_replay_configs_fail_before_training(args, message):
    with pytest.raises(ValueError, match=message):
        re_.check_replay_config(*args)


def test_good_replay_configs_pass():
    re_.check_replay_config("disabled", False, "megatron")  # nothing asked of us
    re_.check_replay_config("R2", False, "fsdp2")
    re_.check_replay_config("R3", True, "fsdp")


def test_replay_mode_reads_verls_config():
    from verl.workers.config import FSDPEngineConfig

    assert re_.replay_mode(FSDPEngineConfig()) == "disabled"
    assert re_.replay_mode(FSDPEngineConfig(router_replay={"mode": "R3"})) == "R3"


def _nested(rows: list[list[float]], dtype=torch.float32) -> torch.Tensor:
    return torch.nested.nested_tensor([torch.tensor(r, dtype=dtype) for r in rows], layout=torch.jagged)


def test_routing_metrics_average_routed_tokens_only():
    fields = {
        re_.MISMATCH: _nested([[0.0, 0.5, -1.0], [1.0, -1.0]]),  # -1: a token vLLM never routed
        re_.MISMATCH_REPLAYED: _nested([[0.0, 0.0, -1.0], [0.0, -1.0]]),
        re_.TRAIN_ROUTES: torch.nested.nested_tensor(
            [torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(2, 2, 2, dtype=torch.uint8)], layout=torch.jagged
        ),
    }
    metrics = routing_metrics(fields, "R3")
    assert metrics["routing/mismatch_rate"] == pytest.approx(0.5)  # (0 + 0.5 + 1) / 3
    assert metrics["routing/mismatch_rate_replayed"] == 0.0
    assert metrics["routing/routed_tokens"] == 3
    assert metrics["routing/bytes_per_token"] == 4  # 2 layers x top-2 x 1 byte
    assert (metrics["routing/replay_r2"], metrics["routing/replay_r3"]) == (0.0, 1.0)


def test_routing_metrics_without_vllm_routes():
    routes = torch.nested.nested_tensor([torch.zeros(4, 3, 8, dtype=torch.uint8)], layout=torch.jagged)
    fields = {re_.TRAIN_ROUTES: routes}
    assert routing_metrics(fields, "R2") == {
        "routing/bytes_per_token": 24.0,
        "routing/replay_r2": 1.0,
        "routing/replay_r3": 0.0,
    }
    assert routing_metrics({}, "disabled") == {}
