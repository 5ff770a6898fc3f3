"""MiniRL token loss (paper Eq. 7) against values worked out by hand.

The shared 2x3 example (eps_low = 0.2, eps_high = 0.27, C = 5):

    row 0: A = +1, mask [1, 1, 1]     r = [1.25, 1.5, 1.1]   f = pi_old/mu_old = [8, 1, 2]
    row 1: A = -1, mask [1, 1, 0]     r = [0.5,  1.2, pad]   f = [1, 4.5, pad]
    log pi_theta = [[-1.0, -0.5, -2.0], [-0.25, -1.5, pad]]

    M (staleness mask): row 0 t1 has A > 0 and r = 1.5 > 1.27 -> 0; row 1 t0 has A < 0 and r = 0.5 < 0.8 -> 0;
    every other token keeps M = 1 (1.25 <= 1.27, 1.1 <= 1.27, 1.2 >= 0.8).
"""

from __future__ import annotations

import math

import pytest
import torch

from stable_verl.core.minirl import MiniRLConfig, minirl_token_loss
from stable_verl.core.reference import aggregate_sequences

NAN = float("nan")
LOG_PROB = [[-1.0, -0.5, -2.0], [-0.25, -1.5, 0.0]]
RATIO = [[1.25, 1.5, 1.1], [0.5, 1.2, 1.0]]
IS_RATIO = [[8.0, 1.0, 2.0], [1.0, 4.5, 1.0]]


def example(pad=0.0, on_policy=False):
    """(log_prob, old_log_prob, advantages, mask, is_ratio), float64; ``pad`` goes into every padding slot."""
    log_prob = torch.tensor(LOG_PROB, dtype=torch.float64)  # (2, 3)
    ratio = torch.ones(2, 3, dtype=torch.float64) if on_policy else torch.tensor(RATIO, dtype=torch.float64)
    old = log_prob - ratio.log()  # (2, 3) so that exp(log_prob - old) = r
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)[:, None].expand(2, 3).clone()  # (2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    is_ratio = torch.tensor(IS_RATIO, dtype=torch.float64)
    for t in (log_prob, old, adv, is_ratio):
        t[1, 2] = pad
    return log_prob, old, adv, mask, is_ratio


def loss_of(cfg, pad=0.0, on_policy=False, with_is=True):
    log_prob, old, adv, mask, is_ratio = example(pad, on_policy)
    loss_mat, stats = minirl_token_loss(log_prob, old, adv, mask, cfg, is_ratio if with_is else None)
    return loss_mat, stats, aggregate_sequences(loss_mat, mask)


def test_full_truncation_hand_values():
    # w = min(f r, 5): row 0: [min(10, 5), 1.5, 2.2] = [5, 1.5, 2.2]; row 1: [0.5, min(5.4, 5)] = [0.5, 5]
    # coef = M w A: row 0: [5, 0, 2.2]; row 1: [0, -5]
    # loss = -coef * log_prob: row 0: [-5*-1, 0, -2.2*-2] = [5, 0, 4.4]; row 1: [0, -(-5)(-1.5)] = [0, -7.5]
    loss_mat, stats, loss = loss_of(MiniRLConfig())
    expected = torch.tensor([[5.0, 0.0, 4.4], [0.0, -7.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    assert loss.item() == pytest.approx((5 + 4.4 - 7.5) / 2)  # 0.95, divided by B = 2 responses
    # masked tokens: 5. w = [5, 1.5, 2.2, 0.5, 5] -> mean 14.2 / 5 = 2.84, max 5
    assert stats["is_weight_mean"].item() == pytest.approx(2.84)
    assert stats["is_weight_max"].item() == pytest.approx(5.0)
    assert stats["is_truncated_frac"].item() == pytest.approx(2 / 5)  # f r = 10 and 5.4 exceed 5
    assert stats["clip_frac"].item() == pytest.approx(2 / 5)
    assert stats["clip_frac_pos_adv"].item() == pytest.approx(1 / 3)  # 1 of the 3 A > 0 tokens
    assert stats["clip_frac_neg_adv"].item() == pytest.approx(1 / 2)  # 1 of the 2 A < 0 tokens
    # |log r| = [ln 1.25, ln 1.5, ln 1.1, ln 2, ln 1.2]: mean = ln(1.25 * 1.5 * 1.1 * 2 * 1.2) / 5 = ln(4.95) / 5
    assert stats["staleness_log_ratio_abs_mean"].item() == pytest.approx(math.log(4.95) / 5)
    assert stats["staleness_log_ratio_abs_max"].item() == pytest.approx(math.log(2))
    # k3 = mean(r - 1 - ln r): sum(r - 1) = 0.25 + 0.5 + 0.1 - 0.5 + 0.2 = 0.55,
    # sum(ln r) = ln(1.25 * 1.5 * 1.1 * 0.5 * 1.2) = ln(1.2375)
    assert stats["staleness_kl_k3"].item() == pytest.approx((0.55 - math.log(1.2375)) / 5)
    for value in stats.values():
        assert value.dim() == 0 and not value.requires_grad


def test_decoupled_truncation_differs_off_policy():
    # w = min(f, 5) r: row 0: [5 * 1.25, 1.5, 2 * 1.1] = [6.25, 1.5, 2.2]; row 1: [0.5, 4.5 * 1.2] = [0.5, 5.4]
    # loss: row 0: [6.25, 0, 4.4]; row 1: [0, -(-5.4)(-1.5)] = [0, -8.1]
    loss_mat, stats, loss = loss_of(MiniRLConfig(truncation="decoupled"))
    expected = torch.tensor([[6.25, 0.0, 4.4], [0.0, -8.1, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    assert loss.item() == pytest.approx((6.25 + 4.4 - 8.1) / 2)  # 1.275, vs 0.95 for "full"
    assert stats["is_weight_mean"].item() == pytest.approx((6.25 + 1.5 + 2.2 + 0.5 + 5.4) / 5)  # 3.17
    assert stats["is_weight_max"].item() == pytest.approx(6.25)
    assert stats["is_truncated_frac"].item() == pytest.approx(1 / 5)  # only f = 8 > 5 (f = 4.5 is not capped)


def test_full_and_decoupled_agree_on_policy():
    # r = 1 everywhere: both give w = min(f, 5) = [5, 1, 2, 1, 4.5], and nothing is masked.
    # coef = A w = [5, 1, 2, -1, -4.5]; loss = -coef log_prob = [5, 0.5, 4, -0.25, -6.75]
    full, full_stats, full_loss = loss_of(MiniRLConfig(truncation="full"), on_policy=True)
    dec, _, dec_loss = loss_of(MiniRLConfig(truncation="decoupled"), on_policy=True)
    expected = torch.tensor([[5.0, 0.5, 4.0], [-0.25, -6.75, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(dec, expected)
    assert full_loss.item() == pytest.approx(dec_loss.item()) and full_loss.item() == pytest.approx(2.5 / 2)
    assert full_stats["clip_frac"].item() == 0.0
    assert full_stats["staleness_kl_k3"].item() == 0.0


def test_no_clipping_keeps_every_token():
    # M = 1: adds row 0 t1 (w = 1.5, loss -1.5 * -0.5 = 0.75) and row 1 t0 (coef -0.5, loss -(-0.5)(-0.25) = -0.125)
    loss_mat, stats, loss = loss_of(MiniRLConfig(clipping=False))
    expected = torch.tensor([[5.0, 0.75, 4.4], [-0.125, -7.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    assert loss.item() == pytest.approx((5 + 0.75 + 4.4 - 0.125 - 7.5) / 2)  # 1.2625
    assert stats["clip_frac"].item() == 0.0
    assert stats["clip_frac_pos_adv"].item() == 0.0 and stats["clip_frac_neg_adv"].item() == 0.0


@pytest.mark.parametrize(("cfg", "with_is"), [(MiniRLConfig(train_infer_is=False), True), (MiniRLConfig(), False)])
def test_without_train_infer_is_the_factor_is_one(cfg, with_is):
    # f = 1: w = min(r, 5) = r = [1.25, 1.5, 1.1, 0.5, 1.2]; M as before = [1, 0, 1, 0, 1]
    # loss: row 0: [-1.25 * -1, 0, -1.1 * -2] = [1.25, 0, 2.2]; row 1: [0, -(-1.2)(-1.5)] = [0, -1.8]
    loss_mat, stats, loss = loss_of(cfg, with_is=with_is)
    expected = torch.tensor([[1.25, 0.0, 2.2], [0.0, -1.8, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    assert loss.item() == pytest.approx((1.25 + 2.2 - 1.8) / 2)  # 0.825
    assert stats["is_truncated_frac"].item() == 0.0


def test_pg_stale_is_plain_reinforce_on_stale_samples():
    # pg_stale: f := 1, r := 1 in the weight, M = 1 -> w = 1 on every token, loss = -A * log_prob
    # row 0 (A = +1): [-(-1), -(-0.5), -(-2)] = [1, 0.5, 2]; row 1 (A = -1): [-0.25, -1.5, pad]
    cfg = MiniRLConfig(train_infer_is=False, staleness_is=False, clipping=False)
    loss_mat, stats, loss = loss_of(cfg)
    expected = torch.tensor([[1.0, 0.5, 2.0], [-0.25, -1.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)
    assert loss.item() == pytest.approx((1 + 0.5 + 2 - 0.25 - 1.5) / 2)  # 0.875
    assert stats["is_weight_mean"].item() == 1.0 and stats["clip_frac"].item() == 0.0
    # the staleness statistics still describe r: |log r| of [1.25, 1.5, 1.1, 0.5, 1.2]
    abs_log_r = [abs(math.log(r)) for r in (1.25, 1.5, 1.1, 0.5, 1.2)]
    assert stats["staleness_log_ratio_abs_mean"].item() == pytest.approx(sum(abs_log_r) / 5)


def test_without_staleness_is_the_weight_is_the_capped_discrepancy():
    # r := 1 in w, f kept: w = min(f, 5) = [5, 1, 2, 1, 4.5]; M as before = [1, 0, 1, 0, 1]
    # loss: row 0: [-5 * -1, 0, -2 * -2] = [5, 0, 4]; row 1: [0, -(-4.5)(-1.5)] = [0, -6.75]
    loss_mat, _, _ = loss_of(MiniRLConfig(staleness_is=False))
    expected = torch.tensor([[5.0, 0.0, 4.0], [0.0, -6.75, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss_mat, expected)


@pytest.mark.parametrize("pad", [0.0, 123.0, NAN, float("inf"), -float("inf")])
def test_padding_contributes_nothing(pad):
    log_prob, old, adv, mask, is_ratio = example(pad)
    log_prob.requires_grad_()
    for cfg in (MiniRLConfig(), MiniRLConfig(truncation="decoupled"), MiniRLConfig(clipping=False)):
        loss_mat, stats = minirl_token_loss(log_prob, old, adv, mask, cfg, is_ratio)
        reference, reference_stats, _ = loss_of(cfg)  # same tokens, finite padding
        torch.testing.assert_close(loss_mat, reference)
        assert loss_mat[1, 2].item() == 0.0
        for key, value in stats.items():
            torch.testing.assert_close(value, reference_stats[key], msg=key)
        (grad,) = torch.autograd.grad(aggregate_sequences(loss_mat, mask), log_prob)
        assert torch.isfinite(grad).all() and grad[1, 2].item() == 0.0


def test_aggregate_sequences_token_sum_and_length_norm():
    loss_mat = torch.tensor([[5.0, 0.0, 4.4], [0.0, -7.5, 99.0]], dtype=torch.float64)  # 99 sits in padding
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # token sum: (9.4 + -7.5) / 2 = 0.95; length norm: (9.4 / 3 + -7.5 / 2) / 2 = (3.1333.. - 3.75) / 2 = -0.308333..
    assert aggregate_sequences(loss_mat, mask).item() == pytest.approx(0.95)
    assert aggregate_sequences(loss_mat, mask, length_norm=True).item() == pytest.approx((9.4 / 3 - 3.75) / 2)
    assert aggregate_sequences(loss_mat, mask, num_sequences=19).item() == pytest.approx(1.9 / 19)
    with pytest.raises(ValueError, match="num_sequences"):
        aggregate_sequences(loss_mat, mask, num_sequences=0)


def test_gradient_matches_analytic_policy_gradient():
    """d loss / d logits = -(1/B) M w A (onehot(y) - softmax(logits)) at response tokens, 0 on padding."""
    B, T, V = 2, 3, 4
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, V, (B, T), generator=g)
    log_prob = torch.log_softmax(logits, dim=-1).gather(-1, y[..., None]).squeeze(-1)  # (B, T)
    _, _, adv, mask, is_ratio = example()
    old = log_prob.detach() - torch.tensor(RATIO, dtype=torch.float64).log()  # r = RATIO, as in the hand example
    loss_mat, _ = minirl_token_loss(log_prob, old, adv, mask, MiniRLConfig(), is_ratio)
    (grad,) = torch.autograd.grad(aggregate_sequences(loss_mat, mask), logits)

    # M w A from the hand example ("full"): row 0: [1*5*1, 0, 1*2.2*1]; row 1: [0, 1*5*(-1), padding 0]
    coef = torch.tensor([[5.0, 0.0, 2.2], [0.0, -5.0, 0.0]], dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(y, V).to(torch.float64)  # (B, T, V)
    analytic = -(1 / B) * coef[..., None] * (onehot - torch.softmax(logits.detach(), dim=-1))  # (B, T, V)
    torch.testing.assert_close(grad, analytic, atol=1e-6, rtol=0)
    assert grad[1, 2].abs().max().item() == 0.0 and grad[0, 1].abs().max().item() == 0.0


def test_defaults_are_the_papers():
    cfg = MiniRLConfig()
    assert (cfg.tis_cap, cfg.eps_low, cfg.eps_high, cfg.truncation) == (5.0, 0.2, 0.27, "full")
    assert cfg.train_infer_is and cfg.clipping


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tis_cap": 0}, r"tis_cap must be > 0 \(paper: 5\), got 0"),
        ({"tis_cap": -1.0}, "tis_cap"),
        ({"tis_cap": NAN}, "tis_cap"),
        ({"eps_low": 0.0}, "eps_low must be in"),
        ({"eps_low": 1.5}, "eps_low.*got 1.5"),
        ({"eps_high": 0.0}, "eps_high must be > 0"),
        ({"truncation": "sometimes"}, "truncation must be one of.*'sometimes'"),
        ({"train_infer_is": "yes"}, "train_infer_is"),
        ({"clipping": 1}, "clipping"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MiniRLConfig(**kwargs)


# -- the packed statistics against the formulas, one masked mean at a time ------------------------------------------


def reference_stats(log_prob, old, adv, mask, cfg, is_ratio):
    """Every statistic straight from its definition (the docstring of ``minirl_token_loss``), each its own masked
    reduction over the response tokens, in the inputs' dtype."""
    mask = mask.bool()
    log_r = torch.where(mask, log_prob - old, 0.0)  # log r_t = log pi_theta - log pi_old
    r = log_r.exp()  # r_t
    f = torch.where(mask, is_ratio, 1.0) if cfg.train_infer_is and is_ratio is not None else torch.ones_like(r)
    stale = r if cfg.staleness_is else torch.ones_like(r)
    if cfg.truncation == "full":
        w, truncated = (f * stale).clamp(max=cfg.tis_cap), f * stale > cfg.tis_cap
    else:
        w, truncated = f.clamp(max=cfg.tis_cap) * stale, f > cfg.tis_cap
    clipped = ((adv > 0) & (r > 1 + cfg.eps_high)) | ((adv < 0) & (r < 1 - cfg.eps_low))
    clipped &= cfg.clipping
    pos, neg = (adv > 0) & mask, (adv < 0) & mask

    def mean(x, over=mask):
        return torch.where(over, x, 0.0).sum() / over.sum().clamp_min(1).to(x.dtype)

    def frac(flag, over=mask):
        return (flag & over).sum().to(w.dtype) / over.sum().clamp_min(1).to(w.dtype)

    stats = {
        "is_weight_mean": mean(w),
        "is_weight_max": torch.where(mask, w, 0.0).max(),
        "is_truncated_frac": frac(truncated),
        "clip_frac": frac(clipped),
        "clip_frac_pos_adv": frac(clipped, pos),
        "clip_frac_neg_adv": frac(clipped, neg),
        "staleness_log_ratio_abs_mean": mean(log_r.abs()),
        "staleness_log_ratio_abs_max": torch.where(mask, log_r.abs(), 0.0).max(),
        "staleness_kl_k3": mean(r - 1 - log_r),
    }
    if is_ratio is not None:
        rho = torch.where(mask, is_ratio, 1.0)
        stats["train_infer_kl_k1"] = mean(-rho.log())
        stats["train_infer_kl_k3"] = mean(rho - 1 - rho.log())
    return stats


def random_batch(dtype, seed, B=6, T=50):
    """Random (log_prob, old, adv, mask, is_ratio) with some r and f past the clip range and the cap, zero
    advantages, an empty response, and NaN / inf in every padding slot."""
    g = torch.Generator().manual_seed(seed)
    old = -3 * torch.rand(B, T, generator=g, dtype=torch.float64)
    log_prob = old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, 1, generator=g, dtype=torch.float64).expand(B, T).clone()
    adv[1] = 0.0  # neither A > 0 nor A < 0
    is_ratio = torch.exp(1.2 * torch.randn(B, T, generator=g, dtype=torch.float64))  # some above C = 5
    mask = torch.rand(B, T, generator=g) < 0.8
    mask[2] = False  # an empty response
    for t, pad in ((log_prob, float("nan")), (old, float("inf")), (adv, float("nan")), (is_ratio, float("nan"))):
        t[~mask] = pad
    return tuple(t.to(dtype) for t in (log_prob, old, adv)) + (mask, is_ratio.to(dtype))


CONFIGS = [
    MiniRLConfig(),
    MiniRLConfig(truncation="decoupled"),
    MiniRLConfig(clipping=False),
    MiniRLConfig(train_infer_is=False),
    MiniRLConfig(train_infer_is=False, staleness_is=False, clipping=False),
    MiniRLConfig(tis_cap=0.5, eps_low=0.05, eps_high=0.05),  # a cap below 1 binds on padding's w = 1 too
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.truncation}-{c.train_infer_is}-{c.clipping}-{c.tis_cap}")
@pytest.mark.parametrize("with_is", [True, False])
def test_packed_stats_equal_the_formulas(dtype, cfg, with_is):
    from stable_verl.core.minirl import minirl_token_loss_packed

    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    for seed in range(3):
        log_prob, old, adv, mask, is_ratio = random_batch(dtype, seed)
        is_ratio = is_ratio if with_is else None
        loss_mat, packed = minirl_token_loss_packed(log_prob, old, adv, mask, cfg, is_ratio, train_infer_kl=with_is)
        expected = reference_stats(log_prob, old, adv, mask, cfg, is_ratio)
        got = packed.tensors()
        assert list(got) == list(packed.keys) and set(got) == set(expected)
        assert packed.values.dtype == dtype and not packed.values.requires_grad
        assert_stats_close(got, expected, rtol)
        assert packed.floats() == {key: value.item() for key, value in got.items()}
        # the dict form: the same statistics without the KL, and the same loss
        loss_dict, stats = minirl_token_loss(log_prob, old, adv, mask, cfg, is_ratio)
        assert set(stats) == set(expected) - {"train_infer_kl_k1", "train_infer_kl_k3"}
        assert all(value.dim() == 0 for value in stats.values())
        assert_stats_close(stats, expected, rtol)
        torch.testing.assert_close(loss_dict, loss_mat, rtol=0, atol=0)


def assert_stats_close(got, expected, rtol):
    """Token fractions and maxima exactly (no summation order in them), masked means to ``rtol``."""
    for key, value in got.items():
        exact = key.endswith(("_frac", "_adv", "_max"))
        torch.testing.assert_close(value, expected[key], rtol=0 if exact else rtol, atol=0, msg=key)


def test_packed_train_infer_kl_is_the_diagnostics_estimate():
    from stable_verl.core.diagnostics import train_infer_kl, train_infer_kl_from_ratio
    from stable_verl.core.minirl import minirl_token_loss_packed

    log_prob, old, adv, mask, is_ratio = random_batch(torch.float64, seed=7)
    rollout = torch.where(mask, old - is_ratio.log(), 0.0)  # log mu_old, so that pi_old / mu_old = is_ratio
    _, packed = minirl_token_loss_packed(log_prob, old, adv, mask, MiniRLConfig(), is_ratio, train_infer_kl=True)
    stats = packed.tensors()
    for kl in (train_infer_kl_from_ratio(is_ratio, mask), train_infer_kl(torch.where(mask, old, 0.0), rollout, mask)):
        torch.testing.assert_close(stats["train_infer_kl_k1"], kl["k1"], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(stats["train_infer_kl_k3"], kl["k3"], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="train_infer_kl needs is_ratio"):
        minirl_token_loss_packed(log_prob, old, adv, mask, MiniRLConfig(), None, train_infer_kl=True)
