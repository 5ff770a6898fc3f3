"""Rollout-precision rounding, against values worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stable_verl.core.precision import round_model_weights, round_weight


def test_fp8_per_row_rounding_by_hand():
    # row 0: amax = 1 -> scale = 1/448; w/scale = [448, -224, 134.4]. e4m3 has 3 mantissa bits: in [128, 256)
    # the grid step is 16, so 134.4 -> 128 (6.4 away, vs 9.6 to 144); 448 and 224 are on the grid.
    # row 1 has its own scale (amax 2 -> 2/448): w/scale = [448, 44.8, 0] -> 44.8 -> 44 (step 4 in [32, 64)).
    w = torch.tensor([[1.0, -0.5, 0.3], [2.0, 0.2, 0.0]])
    expected = torch.tensor([[1.0, -0.5, 128 / 448], [2.0, 44 * 2 / 448, 0.0]])
    torch.testing.assert_close(round_weight(w, "fp8"), expected)
    # stacking rows (as vLLM fuses q/k/v) does not change any row's rounding
    torch.testing.assert_close(round_weight(w[1:], "fp8"), expected[1:])
    # rounding twice changes nothing (amax is kept), so repeated weight syncs do not drift
    torch.testing.assert_close(round_weight(round_weight(w, "fp8"), "fp8"), round_weight(w, "fp8"))


def test_int4_per_row_rounding_by_hand():
    # row 0: amax 1 -> scale 1/7; w/scale = [7, -3.85, 2.1, 0] -> nearest integers [7, -4, 2, 0] -> q/7
    # row 1: amax 2 -> scale 2/7; w/scale = [7, -0.875, 1.75, -7] -> [7, -1, 2, -7] -> q * 2/7
    w = torch.tensor([[1.0, -0.55, 0.3, 0.0], [2.0, -0.25, 0.5, -2.0]])
    expected = torch.tensor([[1.0, -4 / 7, 2 / 7, 0.0], [2.0, -2 / 7, 4 / 7, -2.0]])
    torch.testing.assert_close(round_weight(w, "int4"), expected)
    torch.testing.assert_close(round_weight(w[1:], "int4"), expected[1:])  # per row: fusing rows changes nothing
    torch.testing.assert_close(round_weight(round_weight(w, "int4"), "int4"), expected)  # idempotent
    assert round_weight(w.double(), "int4").dtype == torch.float64  # returned in the weight's dtype
    # coarser than fp8: on a random matrix the int4 error is several times fp8's
    g = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    assert (round_weight(g, "int4") - g).abs().mean() > 5 * (round_weight(g, "fp8") - g).abs().mean()


def test_rollout_precision_setting_accepts_int4():
    from stable_verl.config.stages import RLStage

    assert RLStage(rollout_precision="int4").rollout_precision == "int4"
    with pytest.raises(ValueError, match="rl.rollout_precision must be one of"):
        RLStage(rollout_precision="int3")


def test_bf16_rounding_by_hand():
    # 1/3 in bf16 (8 significant bits): 0.333984375 = 171/512
    assert round_weight(torch.tensor([1 / 3]), "bf16").item() == 171 / 512
    assert round_weight(torch.tensor([1 / 3]), "native").item() == pytest.approx(1 / 3)


def test_model_rounding_skips_embeddings_head_and_norms():
    model = nn.ModuleDict(
        {
            "embed_tokens": nn.Embedding(4, 3),
            "proj": nn.Linear(3, 3),
            "norm": nn.LayerNorm(3),
            "lm_head": nn.Linear(3, 4),
        }
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert round_model_weights(model, "fp8") == 1  # proj.weight only
    after = model.state_dict()
    assert not torch.equal(after["proj.weight"], before["proj.weight"])
    for key in ("embed_tokens.weight", "norm.weight", "lm_head.weight", "proj.bias"):
        assert torch.equal(after[key], before[key]), key
    with pytest.raises(ValueError, match="rollout precision"):
        round_model_weights(model, "int3")
