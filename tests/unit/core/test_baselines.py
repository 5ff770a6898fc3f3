"""Appendix A baselines against hand values (eps_low = 0.2, eps_high = 0.27: clip range [0.8, 1.27]).

Example:  row 0: A = +1, r = [1.5, 0.5, 1.1], mask [1, 1, 1]
          row 1: A = -1, r = [0.5, 1.5, pad], mask [1, 1, 0]
          log pi_theta = [[-1.0, -0.5, -2.0], [-0.25, -1.5, pad]]
"""

from __future__ import annotations

import pytest
import torch

from stable_verl.core.cispo import cispo_token_loss, group_token_mean, group_token_totals
from stable_verl.core.reference import aggregate_sequences, grpo_token_loss, token_mean


def example():
    log_prob = torch.tensor([[-1.0, -0.5, -2.0], [-0.25, -1.5, 7.0]], dtype=torch.float64, requires_grad=True)
    ratio = torch.tensor([[1.5, 0.5, 1.1], [0.5, 1.5, 3.0]], dtype=torch.float64)
    old = log_prob.detach() - ratio.log()  # (2, 3) exp(log_prob - old) = r
    adv = torch.tensor([[1.0] * 3, [-1.0] * 3], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    return log_prob, old, adv, mask


def test_grpo_is_ppo_min_clipping_on_both_sides():
    log_prob, old, adv, mask = example()
    loss_mat = grpo_token_loss(log_prob, old, adv, mask, 0.2, 0.27)
    # -min(r A, clip(r) A):
    #   row 0 (A=+1): r=1.5 -> min(1.5, 1.27) = 1.27 (clipped); r=0.5 -> min(0.5, 0.8) = 0.5 (NOT clipped: A > 0
    #                 below the range keeps the pessimistic r A); r=1.1 -> 1.1
    #   row 1 (A=-1): r=0.5 -> min(-0.5, -0.8) = -0.8 (clipped); r=1.5 -> min(-1.5, -1.27) = -1.5 (NOT clipped)
    expected = torch.tensor([[-1.27, -0.5, -1.1], [0.8, 1.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    # Appendix A aggregation: (1/G) sum_i (1/|y_i|) sum_t -> ((-1.27 - 0.5 - 1.1)/3 + (0.8 + 1.5)/2) / 2 = 0.58/6
    loss = aggregate_sequences(loss_mat, mask, length_norm=True)
    assert loss.item() == pytest.approx(0.58 / 6)
    # d(-r A)/d log_prob = -r A on unclipped tokens, 0 where the clipped (constant) branch is active;
    # then / |y_i| / G: row 0: [0, -0.5/3/2, -1.1/3/2]; row 1: [0, 1.5/2/2, 0]
    (grad,) = torch.autograd.grad(loss, log_prob)
    expected_grad = torch.tensor([[0.0, -0.5 / 6, -1.1 / 6], [0.0, 1.5 / 4, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(grad, expected_grad)


def test_cispo_clips_the_weight_and_keeps_every_token():
    log_prob, old, adv, mask = example()
    loss_mat = cispo_token_loss(log_prob, old, adv, mask, 0.2, 0.27)
    # coef = clip(r, 0.8, 1.27) A: row 0: [1.27, 0.8, 1.1]; row 1: [-0.8, -1.27, pad]
    # loss = -coef log_prob: row 0: [1.27, 0.4, 2.2]; row 1: [-0.8 * 0.25, -1.27 * 1.5] = [-0.2, -1.905]
    expected = torch.tensor([[1.27, 0.4, 2.2], [-0.2, -1.905, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    loss = token_mean(loss_mat, mask)  # divided by the 5 response tokens
    assert loss.item() == pytest.approx((1.27 + 0.4 + 2.2 - 0.2 - 1.905) / 5)  # 0.353
    # gradient only through log_prob (the weight is sg): -coef / 5, nonzero even on clipped tokens
    (grad,) = torch.autograd.grad(loss, log_prob)
    expected_grad = -torch.tensor([[1.27, 0.8, 1.1], [-0.8, -1.27, 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(grad, expected_grad)


def test_token_mean_ignores_padding():
    loss_mat = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert token_mean(loss_mat, mask).item() == pytest.approx(15 / 5)


def test_cispo_appendix_a_normalises_each_group_by_its_own_tokens():
    """Two prompt groups: a = the two rows of ``example()`` (3 + 2 = 5 tokens), b = one extra row (1 token)."""
    log_prob, old, adv, mask = example()
    # row 2 (group b): A = +1, r = 1 (inside the clip range), log pi = -2, one token
    log_prob = torch.cat([log_prob.detach(), torch.tensor([[-2.0, 0.0, 0.0]], dtype=torch.float64)]).requires_grad_()
    old = torch.cat([old, torch.tensor([[-2.0, 0.0, 0.0]], dtype=torch.float64)])
    adv = torch.cat([adv, torch.ones(1, 3, dtype=torch.float64)])
    mask = torch.cat([mask, torch.tensor([[1, 0, 0]], dtype=torch.bool)])
    uids = ["a", "a", "b"]

    totals = group_token_totals(uids, mask)
    assert totals.tolist() == [5.0, 5.0, 1.0]  # sum_{j in group} |y_j|: a = 3 + 2, b = 1

    loss_mat = cispo_token_loss(log_prob, old, adv, mask, 0.2, 0.27)
    # rows 0-1 as in test_cispo_clips_the_weight_and_keeps_every_token; row 2: -(1 * 1) * (-2) = 2
    # group a: (1.27 + 0.4 + 2.2 - 0.2 - 1.905) / 5 = 1.765 / 5 = 0.353; group b: 2 / 1 = 2
    # Appendix A: mean over the 2 groups = (0.353 + 2) / 2 = 1.1765
    loss = group_token_mean(loss_mat, mask, totals, num_groups=2)
    assert loss.item() == pytest.approx(1.1765)
    # verl's token-mean over the batch divides both groups by all 6 tokens: (1.765 + 2) / 6 = 0.6275
    assert token_mean(loss_mat, mask).item() == pytest.approx(0.6275)
    # gradient: -coef / (group tokens * groups): row 0: -[1.27, 0.8, 1.1] / 10; row 1: [0.8, 1.27] / 10; row 2: -1/2
    (grad,) = torch.autograd.grad(loss, log_prob)
    expected_grad = torch.tensor(
        [[-1.27 / 10, -0.8 / 10, -1.1 / 10], [0.8 / 10, 1.27 / 10, 0.0], [-0.5, 0.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(grad, expected_grad)
    # per-token (B, T) group counts, as verl stores per-token fields, give the same loss
    per_token = group_token_mean(loss_mat, mask, totals[:, None].expand(3, 3), num_groups=2)
    assert per_token.item() == pytest.approx(1.1765)


def test_group_token_totals_checks_lengths():
    with pytest.raises(ValueError, match="2 group ids for 3 responses"):
        group_token_totals(["a", "b"], torch.ones(3, 2))
