"""Train-inference KL estimators and entropy, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from stable_verl.core.diagnostics import entropy_from_logits, train_infer_kl, train_infer_kl_from_ratio


def test_train_infer_kl_hand_values():
    old = torch.tensor([[-1.0, -2.0, float("nan")]])  # log pi_old
    rollout = torch.tensor([[-1.5, -1.0, float("-inf")]])  # log mu_old; the padding slot is garbage
    mask = torch.tensor([[1, 1, 0]])
    kl = train_infer_kl(old, rollout, mask)
    # log rho = old - rollout = [0.5, -1.0]
    # k1 = mean(rollout - old) = mean(-0.5, 1.0) = 0.25
    # k3 = mean(rho - 1 - log rho) = ((e^0.5 - 1 - 0.5) + (e^-1 - 1 + 1)) / 2 = (1.6487213 - 1.5 + 0.3678794) / 2
    assert kl["k1"].item() == pytest.approx(0.25)
    assert kl["k3"].item() == pytest.approx((math.exp(0.5) - 1.5 + math.exp(-1.0)) / 2)
    assert kl["k3"].item() == pytest.approx(0.2583004, abs=1e-6)


def test_train_infer_kl_from_the_ratio_equals_it_from_log_probs_by_hand():
    rho = torch.tensor([[math.exp(0.5), math.exp(-1.0), float("nan")]])  # pi_old / mu_old; padding slot garbage
    mask = torch.tensor([[1, 1, 0]])
    kl = train_infer_kl_from_ratio(rho, mask)
    # the hand values of the test above (log rho = [0.5, -1.0])
    assert kl["k1"].item() == pytest.approx(0.25)
    assert kl["k3"].item() == pytest.approx(0.2583004, abs=1e-6)
    torch.manual_seed(0)
    old, rollout = -torch.rand(4, 9) * 3, -torch.rand(4, 9) * 3
    mask = torch.rand(4, 9) < 0.7
    a, b = train_infer_kl(old, rollout, mask), train_infer_kl_from_ratio((old - rollout).exp(), mask)
    assert a["k1"].item() == pytest.approx(b["k1"].item(), abs=1e-6)
    assert a["k3"].item() == pytest.approx(b["k3"].item(), abs=1e-6)
    empty = train_infer_kl_from_ratio(rho, torch.zeros(1, 3))
    assert empty["k1"].item() == 0.0 and empty["k3"].item() == 0.0


def test_train_infer_kl_is_zero_when_engines_agree():
    lp = torch.tensor([[-0.3, -2.0]])
    kl = train_infer_kl(lp, lp.clone(), torch.ones(1, 2))
    assert kl["k1"].item() == 0.0 and kl["k3"].item() == 0.0


def test_entropy_uniform_is_log_vocab_and_padding_is_ignored():
    V = 7
    logits = torch.zeros(2, 3, V)  # uniform everywhere ...
    logits[1, 2] = torch.tensor([50.0, 0, 0, 0, 0, 0, 0])  # ... except a near one-hot row at a padding position
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert entropy_from_logits(logits, mask).item() == pytest.approx(math.log(V))


def test_entropy_hand_value_and_banned_tokens():
    # logits [0, ln 3] -> p = [1/4, 3/4]: H = 0.25 ln 4 + 0.75 ln(4/3) = 0.3465736 + 0.2157616 = 0.5623351
    # a third token with logit -inf (banned) has p = 0 and adds 0, and gradients stay finite
    logits = torch.tensor([[[0.0, math.log(3), -math.inf]]], dtype=torch.float64, requires_grad=True)
    h = entropy_from_logits(logits, torch.ones(1, 1))
    assert h.item() == pytest.approx(0.5623351, abs=1e-7)
    (grad,) = torch.autograd.grad(h, logits)
    assert torch.isfinite(grad).all()
