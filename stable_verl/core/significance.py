"""Tests that use the grid's design: paired differences, t-quantiles, Holm, Fisher's exact test, detectable effects.

Every arm of a grid is evaluated on the same prompts with the same per-sample seeds, so prompt difficulty cancels in
a difference taken per prompt (:func:`paired_difference`); across training seeds, arms are compared on their runs'
final scores (a step fixed in advance, never the peak: the max of noisy checkpoints is biased up) with an SD pooled
over every cell (:func:`pooled_sd`, :func:`pooled_difference`) or Welch's unpooled SE. Intervals and p-values use
Student's t (:func:`t_ppf`; no scipy here: the regularized incomplete beta by its continued fraction, Numerical
Recipes §6.4). A family of claims is corrected with Holm (:func:`holm`); a collapse-rate claim uses Fisher's exact test
(:func:`fisher_one_sided`); each claim shows the smallest difference its design could detect (:attr:`Difference.mdd`,
:func:`fisher_min_detectable`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
"""Two-sided level of every interval and test (Holm keeps the family's error at this level)."""
POWER = 0.80
"""Power at which a minimum detectable difference is quoted."""


# --------------------------------------------------------------------------------------------- Student t
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df = inf: the normal)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if math.isinf(df):
        return statistics.NormalDist().cdf(t)
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on :func:`t_cdf` to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if math.isinf(df):
        return statistics.NormalDist().inv_cdf(p)
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    while hi - lo > 1e-12 * max(1.0, abs(lo)):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------------------- differences
@dataclass(frozen=True)
class Difference:
    """An estimated difference a - b with its standard error and degrees of freedom."""

    estimate: float
    se: float
    df: float
    kind: str = ""
    """How the SE was made: 'paired', 'pooled', 'welch'."""

    def ci(self, alpha: float = ALPHA) -> tuple[float, float]:
        half = t_ppf(1 - alpha / 2, self.df) * self.se
        return self.estimate - half, self.estimate + half

    def _t(self, x: float) -> float:
        """x / se; with se = 0 (no spread at all): +-inf, NaN for x = 0."""
        if self.se > 0:
            return x / self.se
        return math.nan if x == 0 else math.copysign(math.inf, x)

    @property
    def t(self) -> float:
        return self._t(self.estimate)

    def p_two_sided(self) -> float:
        t = self.t
        return math.nan if math.isnan(t) else 2.0 * (1.0 - t_cdf(abs(t), self.df))

    def p_greater(self, margin: float = 0.0) -> float:
        """One-sided p of H0: true difference <= -margin (margin 0: 'a beats b'; > 0: non-inferiority)."""
        t = self._t(self.estimate + margin)
        return math.nan if math.isnan(t) else 1.0 - t_cdf(t, self.df)

    def mdd(self, alpha: float = ALPHA, power: float = POWER) -> float:
        """Minimum detectable difference: the true |a - b| a two-sided level-alpha test finds with this power."""
        return (t_ppf(1 - alpha / 2, self.df) + t_ppf(power, self.df)) * self.se

    def __str__(self) -> str:
        lo, hi = self.ci()
        return f"{self.estimate:+.3f} [{lo:+.3f}, {hi:+.3f}] (SE {self.se:.3f}, {self.kind} df {self.df:.3g})"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Mean of a_i - b_i over matched units (the same prompt and sample seeds, or the same training seed)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need >= 2 matched pairs, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b, strict=True)]
    return Difference(statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d) - 1, "paired")


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """mean(a) - mean(b), unpooled SE, Welch-Satterthwaite df."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need >= 2 values per group, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else math.inf
    return Difference(statistics.fmean(a) - statistics.fmean(b), se, df, "welch")


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """SD pooled over groups (sum of squared deviations from each group's mean / sum (n_g - 1)) and its df."""
    ss = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups if len(g) > 1)
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    if df == 0:
        raise ValueError("no group has two values: no pooled SD")
    return math.sqrt(ss / df), df


def pooled_difference(a: Sequence[float], b: Sequence[float], sd: float, df: int) -> Difference:
    """mean(a) - mean(b) with SE = sd * sqrt(1/n_a + 1/n_b), ``sd`` pooled over the grid's cells (``df``)."""
    return Difference(statistics.fmean(a) - statistics.fmean(b), sd * math.sqrt(1 / len(a) + 1 / len(b)), df, "pooled")


def per_prompt_means(samples: Sequence[dict], key: str = "acc") -> dict[str, float]:
    """An evaluation's ``samples.jsonl`` rows -> prompt -> mean of ``key`` over its samples (for pairing)."""
    groups: dict[str, list[float]] = {}
    for s in samples:
        groups.setdefault(s["prompt"], []).append(float(s[key]))
    return {p: statistics.fmean(v) for p, v in groups.items()}


def paired_prompts(a: dict[str, float], b: dict[str, float]) -> Difference:
    """Paired difference over the prompts both evaluations scored (same prompts, same per-sample seeds)."""
    shared = sorted(set(a) & set(b))
    return paired_difference([a[p] for p in shared], [b[p] for p in shared])


# ------------------------------------------------------------------------------------- families and rates
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN entries are not tests: kept NaN, not counted in the family)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, out, running = len(tested), [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def fisher_one_sided(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """One-sided Fisher exact p that group a's rate exceeds b's: P(X >= hits_a), X hypergeometric given the
    margins (hits_a + hits_b collapsed among n_a + n_b runs, n_a of them in a)."""
    total, hits = n_a + n_b, hits_a + hits_b
    denom = math.comb(total, n_a)
    top = min(hits, n_a)
    return sum(math.comb(hits, x) * math.comb(total - hits, n_a - x) for x in range(hits_a, top + 1)) / denom


def fisher_min_detectable(n_a: int, n_b: int, alpha: float = ALPHA) -> float | None:
    """The smallest collapse rate of a (b: none collapsed) with one-sided Fisher p < alpha; None: unreachable."""
    return next((k / n_a for k in range(1, n_a + 1) if fisher_one_sided(k, n_a, 0, n_b) < alpha), None)
