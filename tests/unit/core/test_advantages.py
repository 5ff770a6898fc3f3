"""Group-mean advantages (paper §4.1: no std division) and GRPO's std-normalized variant, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stable_verl.core.advantages import group_mean_advantage


def test_single_group_binary_rewards():
    # mean = 2/4 = 0.5 -> [1 - 0.5, 0 - 0.5, 0 - 0.5, 1 - 0.5]
    adv = group_mean_advantage(torch.tensor([1.0, 0.0, 0.0, 1.0]), ["p"] * 4)
    assert adv.tolist() == [0.5, -0.5, -0.5, 0.5]


def test_mixed_groups_and_singleton():
    # a = {1, 3}: mean 2 -> -1, +1;  b = {2, 6}: mean 4 -> -2, +2;  c = {7}: singleton -> 0
    adv = group_mean_advantage(torch.tensor([1.0, 2.0, 3.0, 6.0, 7.0]), np.array(["a", "b", "a", "b", "c"]))
    assert adv.tolist() == [-1.0, -2.0, 1.0, 2.0, 0.0]


def test_integer_scores_and_ids():
    adv = group_mean_advantage(torch.tensor([3, 1, 5]), np.array([7, 7, 8]))  # {3, 1}: mean 2; {5}: singleton
    assert adv.dtype.is_floating_point and adv.tolist() == [1.0, -1.0, 0.0]


def test_std_normalize_hand_values():
    # group p = {1, 0, 0, 1}: deviations +-0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std = 1/sqrt(3)
    #   -> +-0.5 * sqrt(3) = +-0.8660254
    # group q = {0, 2}: deviations +-1, unbiased var = 2 / 1 = 2, std = sqrt(2) -> +-1/sqrt(2) = +-0.7071068
    # group r = {5}: singleton -> 0 (no NaN from the undefined std)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 2.0, 5.0], dtype=torch.float64)
    ids = ["p", "p", "p", "p", "q", "q", "r"]
    adv = group_mean_advantage(scores, ids, std_normalize=True, eps=0.0)
    h, s = math.sqrt(3) / 2, 1 / math.sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([h, -h, -h, h, -s, s, 0.0], dtype=torch.float64))
    # default eps = 1e-6 is added to the std: 0.5 / (1/sqrt(3) + 1e-6)
    adv_eps = group_mean_advantage(scores, ids, std_normalize=True)
    assert adv_eps[0].item() == pytest.approx(0.5 / (1 / math.sqrt(3) + 1e-6), rel=1e-12)


def test_constant_group_gives_zero_even_with_std():
    adv = group_mean_advantage(torch.tensor([1.0, 1.0, 1.0]), [0, 0, 0], std_normalize=True)
    assert adv.tolist() == [0.0, 0.0, 0.0]  # 0 / (0 + eps)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one entry per score"):
        group_mean_advantage(torch.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="1-D"):
        group_mean_advantage(torch.zeros(2, 2), ["a", "b"])
