"""core.significance against values derived by hand (closed forms and textbook tables)."""

from __future__ import annotations

import math

import pytest

from stable_verl.core import significance as sig


def test_t_distribution_closed_forms_and_tables():
    # df = 1 is Cauchy: F(t) = 1/2 + atan(t)/pi, so F(1) = 0.75 and the 0.975 quantile is tan(0.475 pi) = 12.7062
    assert sig.t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)
    assert sig.t_ppf(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-9)
    # df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so q_p = (2p - 1) sqrt(2 / (1 - (2p - 1)^2)): q_.975 = 4.3027
    assert sig.t_ppf(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95**2)), rel=1e-9)
    assert sig.t_cdf(-2.0, 2) == pytest.approx(0.5 - 2 / (2 * math.sqrt(6)), abs=1e-12)
    assert sig.t_ppf(0.975, 25) == pytest.approx(2.0595, abs=1e-4)  # printed t tables
    assert sig.t_ppf(0.80, 25) == pytest.approx(0.8562, abs=1e-4)
    assert sig.t_ppf(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert sig.t_ppf(0.025, 7) == pytest.approx(-sig.t_ppf(0.975, 7), abs=1e-10)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
        sig.t_ppf(1.0, 3)


def test_paired_welch_and_pooled_differences_by_hand():
    # d = [1, 2, 2]: mean 5/3, SD sqrt(((-2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3), SE 1/3, df 2
    d = sig.paired_difference([1, 2, 3], [0, 0, 1])
    assert (d.estimate, d.se, d.df) == pytest.approx((5 / 3, 1 / 3, 2))
    lo, hi = d.ci()
    assert hi - d.estimate == pytest.approx(4.302653 / 3, rel=1e-6)
    assert d.p_two_sided() == pytest.approx(2 * (1 - sig.t_cdf(5.0, 2)))  # t = (5/3) / (1/3) = 5
    # Welch: var a = 2 (n 2), var b = 3 (n 3): SE^2 = 1 + 1 = 2; df = 4 / (1/1 + 1/2) = 8/3
    w = sig.welch_difference([1, 3], [2, 2, 5])
    assert (w.estimate, w.se, w.df) == pytest.approx((2 - 3, math.sqrt(2), 8 / 3))
    # pooled over groups [1, 3] (SS 2) and [2, 2, 5] (SS 6): SD sqrt(8 / 3), df 3
    sd, df = sig.pooled_sd([[1, 3], [2, 2, 5], [7]])
    assert (sd, df) == pytest.approx((math.sqrt(8 / 3), 3))
    p = sig.pooled_difference([1, 3], [2, 2, 5], sd, df)
    assert p.se == pytest.approx(math.sqrt(8 / 3) * math.sqrt(1 / 2 + 1 / 3))
    with pytest.raises(ValueError, match="no pooled SD"):
        sig.pooled_sd([[1], [2]])


def test_mdd_and_one_sided_p_by_hand():
    # df = inf: MDD = (z_.975 + z_.80) SE = (1.959964 + 0.841621) SE
    assert sig.Difference(0.0, 0.01, math.inf).mdd() == pytest.approx(0.0280159, abs=1e-6)
    # non-inferiority at margin 0.02 with diff -0.01, SE 0.01, df inf: p = 1 - Phi(1) = 0.158655
    assert sig.Difference(-0.01, 0.01, math.inf).p_greater(0.02) == pytest.approx(0.158655, abs=1e-6)
    # no spread at all: a nonzero difference is certain, a zero one untestable
    assert sig.Difference(0.1, 0.0, 3).p_two_sided() == 0.0 and math.isnan(sig.Difference(0.0, 0.0, 3).p_two_sided())


def test_per_prompt_pairing():
    a = sig.per_prompt_means([{"prompt": "x", "acc": 1}, {"prompt": "x", "acc": 0}, {"prompt": "y", "acc": 1}])
    assert a == {"x": 0.5, "y": 1.0}
    d = sig.paired_prompts(a, {"x": 0.0, "y": 0.5, "z": 1.0})  # z only in b: left out; d = [0.5, 0.5]
    assert (d.estimate, d.se, d.df) == (0.5, 0.0, 1)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert sig.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert sig.holm([0.5, math.nan, 0.01]) == pytest.approx([0.5, math.nan, 0.02], nan_ok=True)
    assert sig.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_fisher_exact_by_hand():
    assert sig.fisher_one_sided(2, 2, 0, 2) == pytest.approx(1 / 6)  # 1 / C(4, 2)
    assert sig.fisher_one_sided(4, 4, 0, 4) == pytest.approx(1 / 70)  # 1 / C(8, 4)
    # 3/4 vs 1/4: 4 of 8 collapsed; P(X >= 3) = (C(4,3) C(4,1) + C(4,4) C(4,0)) / C(8,4) = 17/70
    assert sig.fisher_one_sided(3, 4, 1, 4) == pytest.approx(17 / 70)
    assert sig.fisher_one_sided(0, 4, 0, 4) == 1.0
    assert sig.fisher_min_detectable(2, 2) is None  # even 2/2 vs 0/2 has p = 1/6
    assert sig.fisher_min_detectable(3, 3) is None  # 3/3 vs 0/3: 1/20 = 0.05, not below
    assert sig.fisher_min_detectable(4, 4) == 1.0  # 3/4 vs 0/4: 4/35 = 0.114; 4/4: 0.014
    # 8 vs 8: 3/8 vs 0/8 has C(13,5) / C(16,8) = 1287/12870 = 0.1; 4/8: C(12,4) / C(16,8) = 495/12870 = 0.038
    assert sig.fisher_min_detectable(8, 8) == 4 / 8
