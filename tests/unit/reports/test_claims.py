"""The verdict rules of stable_verl/reports/claims.py on synthetic runs, expected values derived by hand.

Score claims: final scores, SD pooled over the grid's (arm, N) cells, Student t, Holm across the claims. Collapse
claims: outcome verdicts only, one reference arm, one-sided Fisher exact test, >= 4 seeds.
"""

from __future__ import annotations

import math

import pytest

from stable_verl.core import collapse_verdict as cv
from stable_verl.reports import claims
from stable_verl.reports.claims import HELD, INCONCLUSIVE, NOT_HELD, RunSummary, judge

STEPS = (4, 8, 12, 16)


def run(arm: str, n: int, seed: int, final: float, verdict: str | None = cv.STABLE, **kw) -> RunSummary:
    scores = (final - 0.1, final - 0.05, final - 0.02, final)
    return RunSummary(arm, n, seed, STEPS, scores, (0.04,) * 4, verdict=verdict, run_id=f"rl-{arm}-{n}-{seed}", **kw)


def t3_cdf(t: float) -> float:
    """Student t, 3 df, closed form: 1/2 + (x / (1 + x^2) + atan x) / pi with x = t / sqrt 3."""
    x = t / math.sqrt(3)
    return 0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi


def grid_n1() -> list[RunSummary]:
    # finals: minirl and minirl_r3 [0.70, 0.72], minirl_lennorm [0.60, 0.62]: each cell's SS = 2 x 0.01^2,
    # pooled SD = sqrt(6e-4 / 3) = 0.014142 with 3 df; SE of a 2-vs-2 difference = SD x sqrt(1/2 + 1/2) = 0.014142
    return [
        run(arm, 1, seed, top + 0.02 * seed)
        for arm, top in (("minirl", 0.70), ("minirl_r3", 0.70), ("minirl_lennorm", 0.60))
        for seed in (0, 1)
    ]


def test_final_not_peak_and_pooled_difference():
    runs = grid_n1()
    runs[0] = RunSummary("minirl", 1, 0, STEPS, (0.9, 0.8, 0.75, 0.70), (0.04,) * 4, verdict=cv.STABLE)
    assert runs[0].peak == 0.9 and runs[0].final == 0.70  # the claims read 0.70
    sd, df = claims.pooled_final_sd(runs)
    assert (sd, df) == pytest.approx((math.sqrt(2e-4), 3))
    d = claims.arm_difference(runs, "minirl_r3", "minirl_lennorm", 1)
    assert (d.estimate, d.se, d.df) == pytest.approx((0.10, math.sqrt(2e-4), 3))
    assert "fewer than 2 seeds" in claims.arm_difference(runs[:1] + runs[2:], "minirl", "minirl_r3", 1)
    assert "not in this grid: grpo" in claims.arm_difference(runs, "grpo", "minirl", 1)


def test_judge_with_holm_by_hand():
    v = {x.claim: x for x in judge(grid_n1())}
    beats = v["On-policy (N=1): +R3 > +len-norm (final score)"]
    # t = 0.10 / 0.014142 = 7.071, df 3: two-sided p = 2 (1 - F3(7.071)) = 0.00562
    assert beats.p == pytest.approx(2 * (1 - t3_cdf(0.1 / math.sqrt(2e-4))), rel=1e-6)
    at_least = v["On-policy (N=1): MiniRL >= +R3 (final score)"]
    # diff 0; non-inferiority p = 1 - F3(0.02 / 0.014142 = 1.4142) = 0.12611
    assert at_least.p == pytest.approx(1 - t3_cdf(0.02 / math.sqrt(2e-4)), rel=1e-6)
    # Holm over the two tested claims: 0.00562 x 2 = 0.0112 -> held; max(0.0112, 0.12611 x 1) -> inconclusive
    assert beats.p_holm == pytest.approx(2 * beats.p) and beats.verdict == HELD
    assert at_least.p_holm == pytest.approx(at_least.p) and at_least.verdict == INCONCLUSIVE
    # CI of the difference: 0.10 +- t(0.975, 3) = 3.18245 x 0.014142; MDD (3.18245 + t(0.8, 3) = 0.97847) x SE
    assert (beats.ci_low, beats.ci_high) == pytest.approx((0.10 - 0.045007, 0.10 + 0.045007), abs=1e-5)
    assert float(beats.mdd) == pytest.approx(4.16092 * math.sqrt(2e-4), abs=1e-3)
    # absent arms: untested (no p), never held
    assert math.isnan(v["Off-policy: R2 beats R3 at N=2 (final score)"].p)
    assert {x.verdict for c, x in v.items() if "final score" not in c or "R2" in c} == {INCONCLUSIVE}


def test_beats_not_held_when_the_difference_goes_the_other_way():
    runs = [r for r in grid_n1() if r.arm != "minirl"]
    flipped = [run("minirl_lennorm" if r.arm == "minirl_r3" else "minirl_r3", 1, r.seed, r.final) for r in runs]
    v = {x.claim: x for x in judge(flipped)}["On-policy (N=1): +R3 > +len-norm (final score)"]
    assert v.estimate == pytest.approx(-0.10) and v.verdict == NOT_HELD


def test_at_least_not_held_when_b_is_clearly_better():
    runs = grid_n1()
    runs = [run("minirl", 1, r.seed, r.final - 0.2) if r.arm == "minirl" else r for r in runs]
    v = claims.at_least("c", runs, "minirl", "minirl_r3", 1)
    assert v.verdict == NOT_HELD and v.ci_high < 0 and math.isnan(v.p)


def _collapse_grid(x_verdicts, ref_verdicts) -> list[RunSummary]:
    runs = [run("minirl_no_is", 1, s, 0.6 + 0.01 * s, v) for s, v in enumerate(x_verdicts)]
    return runs + [run("minirl", 1, s, 0.7 + 0.01 * s, v) for s, v in enumerate(ref_verdicts)]


def test_collapse_rate_claims_read_outcomes_only():
    pairs = [("minirl_no_is", "minirl", 1)]
    c, s = cv.COLLAPSED, cv.STABLE
    held = claims.rate_contrast("c", _collapse_grid([c] * 4, [s] * 4), pairs, claims._collapsed)
    # 4/4 vs 0/4: one-sided Fisher p = 1 / C(8, 4) = 1/70; judge() then applies Holm
    assert held.p == pytest.approx(1 / 70) and held.estimate == 1.0 and held.mdd == "rate 1.00 vs 0"
    assert held.verdict == INCONCLUSIVE  # until judge() adjusts for the family
    # 1 of 4 collapsed over a judged run: not held; 2/2 vs 0/2: fewer than 4 seeds (p would be 1/6 at best)
    assert (
        claims.rate_contrast("c", _collapse_grid([c, s, s, s], [s] * 4), pairs, claims._collapsed).verdict == NOT_HELD
    )
    few = claims.rate_contrast("c", _collapse_grid([c, c], [s, s]), pairs, claims._collapsed)
    assert few.verdict == INCONCLUSIVE and "fewer than 4 seeds" in few.evidence and few.mdd.startswith("unreachable")
    # a warning never counts: every run warned at step 5, none collapsed -> not held, not "held on flags"
    warned = [RunSummary(**{**r.__dict__, "warning_step": 5}) for r in _collapse_grid([s] * 4, [s] * 4)]
    assert claims.rate_contrast("c", warned, pairs, claims._collapsed).verdict == NOT_HELD
    short = claims.rate_contrast("c", _collapse_grid([cv.TOO_SHORT] * 4, [cv.TOO_SHORT] * 4), pairs, claims._collapsed)
    assert short.verdict == INCONCLUSIVE and "too short" in short.evidence
    unjudged = claims.rate_contrast("c", _collapse_grid([None] * 4, [s] * 4), pairs, claims._collapsed)
    assert unjudged.verdict == INCONCLUSIVE and "no outcome verdict" in unjudged.evidence


def test_collapse_claim_held_through_judge():
    c, s = cv.COLLAPSED, cv.STABLE
    runs = _collapse_grid([c] * 4, [s] * 4)
    runs += [run("minirl_r3_no_is", 1, k, 0.6, c) for k in range(4)] + [
        run("minirl_r3", 1, k, 0.7, s) for k in range(4)
    ]
    v = {x.claim: x for x in judge(runs)}
    collapse = next(x for k, x in v.items() if k.startswith("On-policy (N=1): the w/o-train-infer-IS"))
    assert collapse.p == pytest.approx(1 / 70) and collapse.verdict == HELD
    assert collapse.p_holm < claims.ALPHA


def test_unstable_is_an_outcome_or_a_heldout_fall():
    fell = RunSummary("minirl_r2", 4, 0, STEPS, (0.3, 0.5, 0.3, 0.2), (0.02,) * 4, verdict=cv.STABLE)
    assert fell.heldout_fell and fell.unstable  # 0.5 -> 0.2: 0.3 > 2 x sqrt(2) x 0.02 = 0.057
    steady = RunSummary("minirl_r2", 4, 0, STEPS, (0.3, 0.5, 0.49, 0.48), (0.02,) * 4, verdict=cv.STABLE)
    assert not steady.unstable  # 0.02 < 0.057 unpaired
    paired = RunSummary(**{**steady.__dict__, "fall_se": 0.005})
    assert paired.unstable  # 0.02 > 2 x 0.005 paired
    assert RunSummary("a", 1, 0, STEPS, (0.3, 0.5, 0.5, 0.5), (0.02,) * 4, verdict=cv.COLLAPSED).unstable
    warned = RunSummary("a", 1, 0, STEPS, (0.3, 0.5, 0.5, 0.5), (0.02,) * 4, verdict=cv.STABLE, warning_step=3)
    assert not warned.unstable  # a warning is not instability


def test_every_claim_is_judged_on_an_empty_grid():
    verdicts = judge([])
    assert [v.claim for v in verdicts] == [c.text for c in claims.CLAIMS]
    assert {v.verdict for v in verdicts} == {INCONCLUSIVE}


def test_collapse_claim_judges_the_pairs_the_grid_ran():
    """Phase 1 runs the no-clip twin of MiniRL at N=8, not R2's: the claim stands on the pair that ran."""
    c, s = cv.COLLAPSED, cv.STABLE
    pairs = [("minirl_no_is", "minirl", 1), ("minirl_r3_no_is", "minirl_r3", 1)]
    v = claims.rate_contrast("c", _collapse_grid([c] * 4, [s] * 4), pairs, claims._collapsed)
    assert v.p == pytest.approx(1 / 70) and v.seeds == 4
    assert "(not in this grid: minirl_r3_no_is/minirl_r3@N=1)" in v.evidence
    none = claims.rate_contrast("c", _collapse_grid([c] * 4, [s] * 4), pairs[1:], claims._collapsed)
    assert none.verdict == INCONCLUSIVE and none.evidence == "not in this grid: minirl_r3_no_is/minirl_r3@N=1"
