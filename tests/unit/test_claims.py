"""The verdict rules of stable_verl/pipeline/claims.py on synthetic curves, written before any grid result.

Scores are avg@k in 0..1. Expected verdicts are derived by hand in the comments: the arm score is the seed mean of
the peaks, its SE is max(std/sqrt(m), the evaluation's SE of the mean), and two arms differ when the gap exceeds
Z = 2 times sqrt(SE_a^2 + SE_b^2).
"""

from __future__ import annotations

import math

import pytest

from stable_verl.pipeline import claims
from stable_verl.pipeline.claims import HELD, INCONCLUSIVE, NOT_HELD, RunSummary, arm_score, judge

STEPS = (2, 4, 6, 8)


def run(arm: str, n: int, seed: int, scores, se: float = 0.01, collapse: int | None = None) -> RunSummary:
    return RunSummary(arm, n, seed, STEPS, tuple(scores), tuple([se] * len(scores)), collapse, f"rl-{arm}-{n}-{seed}")


def rising(top: float, seed: int) -> tuple[float, ...]:
    """A learning curve peaking at ``top`` (+-0.005 between seeds) at the last step."""
    jitter = 0.005 if seed % 2 else -0.005
    return (top - 0.15, top - 0.1, top - 0.05, top + jitter)


COLLAPSING = (0.30, 0.35, 0.05, 0.0)  # learns, then falls to zero: the detector latched at step 6


def test_run_summary_peak_final_and_instability():
    r = run("minirl", 1, 0, COLLAPSING, collapse=6)
    assert (r.peak, r.peak_step, r.final) == (0.35, 4, 0.0)
    assert r.unstable  # collapsed
    fell = run("minirl_r2", 4, 0, (0.3, 0.5, 0.3, 0.2), se=0.02)  # 0.5 - 0.2 = 0.3 > 2 * sqrt(2) * 0.02 = 0.057
    assert fell.unstable and fell.collapse_step is None
    steady = run("minirl_r2", 4, 0, (0.3, 0.5, 0.49, 0.48), se=0.02)  # 0.02 < 0.057: evaluation noise
    assert not steady.unstable


def test_arm_score_uses_the_larger_of_seed_and_evaluation_noise():
    runs = [run("a", 1, 0, (0.4,), se=0.01), run("a", 1, 1, (0.6,), se=0.01)]
    s = arm_score(runs, "a", 1)
    # mean 0.5; std of (0.4, 0.6) = 0.1414, / sqrt(2) = 0.1; eval SE of the mean = sqrt(2 * 0.01^2) / 2 = 0.0071
    assert s.mean == pytest.approx(0.5) and s.stderr == pytest.approx(0.1) and s.seeds == 2
    one = arm_score(runs[:1], "a", 1)  # one seed: only the evaluation's SE is known
    assert one.stderr == pytest.approx(0.01) and one.seeds == 1
    assert arm_score(runs, "b", 1) is None


def test_better_held_not_held_and_within_noise():
    a = claims.ArmScore("a", 1, 0.50, 0.01, 2)
    b = claims.ArmScore("b", 1, 0.40, 0.01, 2)
    # gap 0.10 > 2 * sqrt(0.01^2 + 0.01^2) = 0.028
    assert claims.better("c", a, b).verdict == HELD
    assert claims.better("c", b, a).verdict == NOT_HELD
    close = claims.ArmScore("b", 1, 0.48, 0.01, 2)  # gap 0.02 < 0.028
    assert claims.better("c", a, close).verdict == INCONCLUSIVE
    single = claims.ArmScore("b", 1, 0.10, 0.01, 1)  # a huge gap, but one seed
    v = claims.better("c", a, single)
    assert v.verdict == INCONCLUSIVE and "fewer than 2 seeds" in v.evidence and v.seeds == 1
    assert claims.better("c", a, None, "a", "b").verdict == INCONCLUSIVE


def test_at_least_needs_a_tight_interval_to_hold():
    a = claims.ArmScore("a", 1, 0.50, 0.003, 3)
    b = claims.ArmScore("b", 1, 0.505, 0.003, 3)
    # diff -0.005, 2 SE = 0.0085: lower edge -0.0135 >= -0.02 margin -> held
    assert claims.at_least("c", a, b).verdict == HELD
    wide_a, wide_b = claims.ArmScore("a", 1, 0.50, 0.02, 3), claims.ArmScore("b", 1, 0.51, 0.02, 3)
    # diff -0.01, 2 SE = 0.057: lower edge -0.067 < -0.02, and -0.01 is within noise -> inconclusive
    assert claims.at_least("c", wide_a, wide_b).verdict == INCONCLUSIVE
    beaten = claims.ArmScore("b", 1, 0.60, 0.003, 3)  # b better by 0.1 >> 0.0085
    assert claims.at_least("c", a, beaten).verdict == NOT_HELD


def test_collapse_rule_on_a_collapsing_and_a_stable_arm():
    runs = [run("minirl_no_is", 1, s, COLLAPSING, collapse=6) for s in (0, 1)]
    runs += [run("minirl_r3_no_is", 1, s, COLLAPSING, collapse=4 + 2 * s) for s in (0, 1)]
    runs += [run("minirl", 1, s, rising(0.5, s)) for s in (0, 1)]
    v = claims.collapses("w/o IS collapses", runs, ["minirl_no_is", "minirl_r3_no_is"], [1], stable=["minirl"])
    assert v.verdict == HELD and v.seeds == 2 and "collapse steps [6, 6]" in v.evidence
    calm = [run("minirl_no_is", 1, s, rising(0.4, s)) for s in (0, 1)]
    assert claims.collapses("c", calm, ["minirl_no_is"], [1]).verdict == NOT_HELD
    half = [run("minirl_no_is", 1, 0, COLLAPSING, collapse=6), run("minirl_no_is", 1, 1, rising(0.4, 1))]
    assert claims.collapses("c", half, ["minirl_no_is"], [1]).verdict == INCONCLUSIVE
    one_seed = [run("minirl_no_is", 1, 0, COLLAPSING, collapse=6)]
    assert claims.collapses("c", one_seed, ["minirl_no_is"], [1]).verdict == INCONCLUSIVE
    # the stable reference collapsed as early: the ablation is not what made the difference
    ref_too = runs[:2] + [run("minirl", 1, s, COLLAPSING, collapse=6) for s in (0, 1)]
    assert claims.collapses("c", ref_too, ["minirl_no_is"], [1], stable=["minirl"]).verdict == INCONCLUSIVE


def paper_like_grid() -> list[RunSummary]:
    """Every §6.5 claim true, 2 seeds per arm, tight evaluations (SE 0.003)."""
    se = 0.003
    runs = []
    for s in (0, 1):
        runs += [
            run("minirl", 1, s, rising(0.60, s), se),
            run("minirl_r3", 1, s, rising(0.60, s), se),
            run("minirl_lennorm", 1, s, rising(0.45, s), se),
            run("minirl_no_is", 1, s, COLLAPSING, se, collapse=6),
            run("minirl_r3_no_is", 1, s, COLLAPSING, se, collapse=6),
        ]
        for n in (2, 4):
            runs += [
                run("minirl_offpolicy_noclip", n, s, COLLAPSING, se, collapse=4),
                run("minirl_r2_noclip", n, s, COLLAPSING, se, collapse=4),
            ]
        runs += [run("minirl_r2", 2, s, rising(0.60, s), se), run("minirl_r3", 2, s, rising(0.50, s), se)]
        runs += [run("minirl_r2", 4, s, (0.3, 0.45, 0.2, 0.1), se), run("minirl_r3", 4, s, rising(0.60, s), se)]
    return runs


def test_a_grid_where_the_paper_holds():
    verdicts = {v.claim: v for v in judge(paper_like_grid())}
    assert [v.claim for v in verdicts.values()] == [c.text for c in claims.CLAIMS]
    expected = [HELD] * 8 + [INCONCLUSIVE]  # the last: cold start, not a grid claim
    assert [v.verdict for v in verdicts.values()] == expected, {k: (v.verdict, v.evidence) for k, v in verdicts.items()}
    assert all(v.seeds == 2 for v in list(verdicts.values())[:8])


def test_a_grid_where_the_paper_fails():
    runs = []
    for s in (0, 1):
        runs += [
            run("minirl", 1, s, rising(0.40, s), 0.003),
            run("minirl_r3", 1, s, rising(0.60, s), 0.003),  # R3 clearly better on-policy: MiniRL >= R3 fails
            run("minirl_no_is", 1, s, rising(0.55, s), 0.003),  # no collapse
            run("minirl_r2", 2, s, rising(0.40, s), 0.003),
            run("minirl_r3", 2, s, rising(0.60, s), 0.003),  # R3 beats R2 at N=2
        ]
    verdicts = {v.claim: v.verdict for v in judge(runs)}
    assert verdicts["On-policy (N=1): MiniRL >= +R3 (peak score)"] == NOT_HELD
    assert verdicts["Off-policy: R2 beats R3 at N=2 (peak score)"] == NOT_HELD
    assert verdicts["On-policy (N=1): the w/o-train-infer-IS arms collapse (entropy falls while KL rises)"] == NOT_HELD
    assert verdicts["Off-policy: R3 beats R2 at N=4 and N=8 (peak score)"] == INCONCLUSIVE  # no N >= 4
    # best stable arm: R3 at both N, peaks (0.595, 0.605): mean 0.6, SE max(0.00707 / sqrt 2, 0.0021) = 0.005;
    # diff 0 and 2 * sqrt(2) * 0.005 = 0.014 <= the 0.02 margin -> held
    assert verdicts["Stable runs at different N reach similar peaks"] == HELD


def test_one_seed_is_never_enough():
    one = [r for r in paper_like_grid() if r.seed == 0]
    assert {v.verdict for v in judge(one)} == {INCONCLUSIVE}


def test_unknown_standard_errors_are_inconclusive():
    runs = [RunSummary("minirl_r2", 2, s, STEPS, rising(0.6, s), (), None) for s in (0, 1)]
    runs += [RunSummary("minirl_r3", 2, s, STEPS, rising(0.3, s), (), None) for s in (0, 1)]
    # seed SE is known (std of 0.595, 0.605 / sqrt 2 = 0.005), eval SE is NaN: the known one is used
    s = arm_score(runs, "minirl_r2", 2)
    assert s.stderr == pytest.approx(0.005) and not math.isnan(s.stderr)
    v = {v.claim: v.verdict for v in judge(runs)}
    assert v["Off-policy: R2 beats R3 at N=2 (peak score)"] == HELD
