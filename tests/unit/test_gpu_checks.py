"""tests/gpu/run_checks.py at toy sizes on CPU, so the GPU script cannot rot or fail only on the GPU (issue 14)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.gpu import run_checks

FIGURES = {
    "routing_replay_overhead_qwen3_30b_layer_bf16",
    "routing_replay_overhead_qwen3_30b_layer_bf16_tracked",
    "routing_replay_overhead_qwen3_30b_layer_bf16_engine",
    "routing_replay_output_diff_qwen3_30b_layer_bf16",
    "routing_replay_overhead_qwen3_30b_layer_bf16_frozen_experts",
    "routing_replay_overhead_qwen3_30b_layer_bf16_frozen_experts_tracked",
    "routing_replay_overhead_qwen3_30b_layer_bf16_frozen_experts_engine",
    "routing_replay_output_diff_qwen3_30b_layer_bf16_frozen_experts",
    "route_flip_fp32_rerun",
    "route_flip_r3_used_vs_replayed",
    "route_flip_bf16_eager",
    "route_flip_bf16_grouped",
    "route_flip_fp8_eager",
    "route_flip_fp8_grouped",
    "route_flip_fp8_bf16_gate_eager",
    "route_flip_fp8_bf16_gate_grouped",
    "route_flip_bf16_eager_vs_bf16_grouped",
    "route_flip_bf16_eager_vs_fp8_grouped",
    "route_flip_bf16_eager_vs_fp8_bf16_gate_grouped",
    "route_flip_r3_native_vs_replayed",
    "minirl_loss_vs_verl_vanilla_fp32",
    "minirl_loss_vs_unpacked_fp32",
    "minirl_loss_vs_verl_vanilla_bf16",
    "minirl_loss_vs_unpacked_bf16",
}  # peak-memory ratios are CUDA-only figures: omitted on CPU, never a placeholder


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_checks") / "toy.json"
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rc = run_checks.main(["--toy", "--device", "cpu", "--out", str(out)])
    assert rc in (0, 1), "rc 2: a section raised (see its 'error' in the JSON)"  # 1: a toy timing missed a target
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)
    return json.loads(out.read_text())


def test_every_section_ran_and_every_figure_is_reported(result: dict) -> None:
    for section in ("replay_trained", "replay_frozen_experts", "flips", "loss_fp32", "loss_bf16"):
        assert "error" not in result[section], result[section].get("traceback")
    assert {f["name"] for f in result["figures"]} == FIGURES
    assert result["device"] == "cpu" and result["sizes"]["hidden"] == run_checks.TOY.hidden


def test_timings_are_positive_with_a_spread(result: dict) -> None:
    replay, loss = ("native", "replay", "replay_tracked", "replay_engine"), ("vanilla", "minirl", "minirl_unpacked")
    for section, arms in (("replay_trained", replay), ("replay_frozen_experts", replay),
                          ("loss_fp32", loss), ("loss_bf16", loss)):  # fmt: skip
        for arm in arms:
            ms = result[section][f"{arm}_ms"]
            assert 0 < ms["min"] <= ms["median"] <= ms["max"]
            assert result[section]["peak_mib"][arm] is None  # CPU: no CUDA memory figure
        for arm in arms[1:]:
            ratio = result[section][f"ratio_{arm}"]
            assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]


def test_replay_reproduces_native_outputs_exactly(result: dict) -> None:
    # The replayed routes are the recorded native ones, and the replay gate gathers the same softmax values the
    # native top-k returns, so the block's output is bitwise the same.
    assert result["replay_trained"]["replay_vs_native_output_max_abs_diff"] == 0
    assert result["replay_frozen_experts"]["replay_vs_native_output_max_abs_diff"] == 0


def test_route_flips_are_fractions_and_the_controls_are_exact(result: dict) -> None:
    flips = result["flips"]
    layers, tokens = run_checks.TOY.flip_layers, run_checks.TOY.flip_batch * run_checks.TOY.flip_seq
    assert (flips["layers"], flips["tokens"]) == (layers, tokens)
    pairs = {k: v for k, v in flips.items() if isinstance(v, dict)}
    assert len(pairs) == 12
    for value in pairs.values():
        assert 0 <= value["frac"] <= 1 and len(value["per_layer"]) == layers
        assert value["frac"] == pytest.approx(sum(value["per_layer"]) / layers)
    assert flips["fp32_rerun"]["frac"] == 0  # the same fp32 stack twice routes identically
    assert flips["r3_used_vs_replayed"]["frac"] == 0  # under R3 the trainer uses exactly the replayed experts
    # e4m3 keeps 3 mantissa bits (up to ~6% relative error per weight): some of the 128 toy routes flip.
    assert flips["fp8_eager"]["frac"] > 0
    # fp8 with the gate kept in bf16 routes layer 0 exactly as bf16 does: the same gate sees the same input.
    assert flips["fp8_bf16_gate_eager"]["per_layer"][0] == flips["bf16_eager"]["per_layer"][0]
    # What R3 overrides is the trainer's own choice, i.e. the plain bf16-vs-fp8 mismatch at layer 0 (same input).
    assert flips["r3_native_vs_replayed"]["per_layer"][0] == flips["bf16_eager_vs_fp8_grouped"]["per_layer"][0]


def test_bad_sizes_fail_fast_with_the_flag_name(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run_checks.main(["--toy", "--out", "/dev/null", "--top-k", "1"])
    assert exc.value.code == 2 and "--top-k" in capsys.readouterr().err
