"""The outcome collapse verdict (core.collapse_verdict) and its mechanism tags (core.collapse_tags).

Hand cases check the rule's arithmetic; the synthetic suite simulates 1,000 seeded runs per case with a known truth
(healthy, noisy, dips, slow overfit, KL-only spikes, entropy sharpening, hard collapse, slow decline, a late
collapse, a short run) and measures how often the verdict calls a collapse. Run with -s to print the rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stable_verl.core import collapse_tags as tags
from stable_verl.core import collapse_verdict as cv
from stable_verl.core.collapse import CollapseDetector

# ----------------------------------------------------------------------------------------------- by hand


def test_pass_means_and_noise_by_hand():
    # 2 passes of W=3 and a partial pass (dropped): (0+.3+.6)/3 = .3, (.9+.9+.9)/3 = .9
    assert cv.pass_means([0.0, 0.3, 0.6, 0.9, 0.9, 0.9, 0.5], 3).tolist() == pytest.approx([0.3, 0.9])
    # pass SDs (ddof 1): [0, .3, .6] -> .3; [.9, .9, .9] -> 0; [.2, .4, .6] -> .2; median .2, / sqrt(3)
    rewards = np.array([[0.0, 0.3, 0.6, 0.9, 0.9, 0.9, 0.2, 0.4, 0.6, 0.1]])
    assert cv.pass_noise(rewards, 3)[0] == pytest.approx(0.2 / math.sqrt(3))
    assert math.isnan(cv.pass_noise(rewards[:, :2], 3)[0])  # no full pass
    assert cv.steps_per_pass(256, 32) == 8
    with pytest.raises(ValueError, match="n_rl_train >= train_batch_size"):
        cv.steps_per_pass(16, 32)


def test_verdicts_by_hand():
    # sigma 0.01 (4 sigma = 0.04): delta is the 0.10 floor throughout.
    cases = {
        (0.5, 0.6, 0.6, 0.6, 0.6, 0.6): cv.STABLE,
        # best earlier 0.6; passes 3,4 at 0.45 (0.15 down), last 0.48 < 0.6 - 0.05: collapsed at pass 3
        (0.5, 0.6, 0.6, 0.45, 0.45, 0.48): cv.COLLAPSED,
        # the same fall but the last pass is back to 0.58 > 0.55: recovered
        (0.5, 0.6, 0.6, 0.45, 0.45, 0.58): cv.RECOVERED,
        # down in the last two passes only: censored; down in the last one only: censored
        (0.5, 0.6, 0.6, 0.6, 0.45, 0.45): cv.CENSORED,
        (0.5, 0.6, 0.6, 0.6, 0.6, 0.45): cv.CENSORED,
        # one pass down 0.15 then back: a dip, stable
        (0.5, 0.6, 0.6, 0.45, 0.6, 0.6): cv.STABLE,
        # a fall of 0.09 < delta never counts
        (0.5, 0.6, 0.6, 0.51, 0.51, 0.51): cv.STABLE,
    }
    v = cv.judge_passes(np.array(list(cases)), 0.01)
    assert v.names() == list(cases.values())
    assert v.onset.tolist() == [-1, 3, 3, 4, 5, -1, -1]
    assert v.delta.tolist() == pytest.approx([0.10] * 7)
    assert v.fall[1] == pytest.approx(0.6 - 0.48)
    # sigma 0.05: delta = 4 sigma = 0.2, so the 0.15 fall of the "collapsed" case is noise
    assert cv.judge_passes(np.array([[0.5, 0.6, 0.6, 0.45, 0.45, 0.48]]), 0.05).names() == [cv.STABLE]
    assert cv.judge_passes(np.array([[0.5, 0.6, 0.6]]), 0.01).names() == [cv.TOO_SHORT]
    assert cv.judge_passes(np.array([[0.5, 0.6, math.nan, 0.6]]), 0.01).names() == [cv.DIVERGED]


def test_judge_rewards_one_run():
    w = 2
    rewards = [0.5, 0.5, 0.7, 0.7, 0.7, 0.7, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]  # passes .5 .7 .7 .4 .4 .4
    v = cv.judge_rewards(rewards, w)
    assert (v.verdict, v.onset_step, v.passes) == (cv.COLLAPSED, 7, 6)  # pass 3 starts at step 3*2+1
    assert v.fall == pytest.approx(0.3) and v.is_collapse
    assert cv.judge_rewards(rewards[:6] + [math.inf] + rewards[7:], w).onset_step == 7
    assert cv.judge_rewards(rewards, w, diverged_step=5).verdict == cv.DIVERGED
    assert cv.judge_rewards(rewards[:6], w).verdict == cv.TOO_SHORT
    assert cv.judge_rewards(rewards[:1], w).verdict == cv.TOO_SHORT  # not even one full pass


def test_heldout_fall_by_hand():
    steps, scores, se = [10, 20, 30, 40], [0.60, 0.70, 0.62, 0.50], [0.03, 0.03, 0.04, 0.04]

    def unpaired(i: int, j: int) -> float:
        return math.hypot(se[i], se[j])

    f = cv.heldout_fall(steps, scores, unpaired, until=30)
    assert (f.best_step, f.step) == (20, 40) and f.fall == pytest.approx(0.20)
    assert f.se == pytest.approx(0.05) and f.confirmed  # 0.20 > 2 * 0.05
    assert not cv.heldout_fall(steps, [0.6, 0.7, 0.68, 0.66], unpaired).confirmed  # 0.04 < 0.10
    assert cv.heldout_fall(steps, scores, unpaired, until=5) is None  # no checkpoint before
    assert cv.heldout_fall([10], [0.6], unpaired) is None  # nothing after the best


def test_tags_by_hand():
    w = 4
    kl = np.array([[1e-2, 1e-2, 1e-2, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 2e-3, 2e-3, 2e-3, 2e-3]])
    # reference: median of the W=4 steps after the 3 warm-up steps (steps 4-7: 1e-4); pass 2's median 2e-3 >
    # max(10 x 1e-4, 1e-3) = 1e-3; pass 1 (1e-4) is not
    assert tags.kl_blowup(kl, w).tolist() == [9]
    assert tags.kl_blowup(kl[:, :8], w).tolist() == [0]
    g = np.array([[1.0] * 5 + [20.0, 1.0, 30.0]])  # spikes at steps 6 and 8 (> 10 x median 1): pass 1, first at 6
    assert tags.grad_spike(g, w).tolist() == [6]
    assert tags.grad_spike(g[:, :7], w).tolist() == [0]  # one spike in a pass is not enough
    ent = np.array([[1.0] * 4 + [0.5] * 4 + [0.8] * 4])  # smallest earlier pass 0.5; 0.8 > 1.5 x 0.5 at pass 2
    assert tags.entropy_explosion(ent, w).tolist() == [9]
    sharp = np.array([[1.0] * 4 + [0.2] * 8])
    assert tags.entropy_sharpened(sharp, w, np.array([[False, False, True]])).tolist() == [9]
    assert tags.entropy_sharpened(sharp, w, np.array([[False] * 3])).tolist() == [0]  # reward fine: learning
    length = np.array([[10.0] * 4 + [25.0] * 4 + [45.0] * 4])
    assert tags.length_blowup(length, w, None).tolist() == [5]  # 25 > 2 x 10
    assert tags.length_blowup(length[:, [0, 1, 2, 3, 0, 1, 2, 3, 8, 9, 10, 11]] * 0 + 44, w, 48).tolist() == [1]
    assert tags.is_blowup(np.array([[0.0] * 4 + [0.02] * 4]), w).tolist() == [5]
    rows = [{"step": s + 1, "actor/train_infer_kl_k3": float(kl[0, s]), "actor/grad_norm": 1.0} for s in range(12)]
    assert [str(t) for t in tags.collapse_tags(rows, w)] == ["kl@9"]


# ------------------------------------------------------------------------------------------ synthetic suite
T, W, RUNS = 150, 8, 1000


def simulate(case: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """RUNS runs of T steps: reward (logistic 0.45 -> ~0.72 by step 30, then a plateau, the run's own level +-0.02),
    per-step batch-difficulty offsets that cancel over a pass (each pass sees every prompt once, in a new order),
    sampling noise; KL log-normal (0.45 decades around 4e-4); entropy sharpening 0.17 -> 0.06 (tau 5 steps);
    grad-norm log-normal around 1; response length ~20 tokens."""
    t = np.arange(1, T + 1)[None, :]  # (1, T)
    n = RUNS
    plateau = 0.72 + rng.normal(0, 0.02, (n, 1))
    reward = 0.45 + (plateau - 0.45) / (1 + np.exp(-(t - 15) / 4))  # (n, T)
    noise, offset_sd = (0.10, 0.08) if case == "noisy" else (0.03, 0.05)
    offsets = rng.normal(0, offset_sd, (n, W))
    offsets -= offsets.mean(axis=1, keepdims=True)  # a pass's batch offsets sum to 0
    order = np.argsort(rng.random((n, T // W + 1, W)), axis=2).reshape(n, -1)[:, :T]  # a new order each pass
    reward = reward + np.take_along_axis(offsets, order, axis=1) + rng.normal(0, noise, (n, T))
    kl = 4e-4 * 10 ** rng.normal(0, 0.45, (n, T))
    kl[:, :2] *= 5  # the first steps' raised KL, as in every panel of the grid
    entropy = 0.06 + 0.11 * np.exp(-t / 5.0) + rng.normal(0, 0.003, (n, T))
    grad = 10 ** rng.normal(0, 0.15, (n, T))
    length = 20 + rng.normal(0, 1.0, (n, T))
    start = rng.integers(60, 121, (n, 1))  # a dip's first step, anywhere on the plateau
    if case in ("dip10", "dip3"):
        width = 10 if case == "dip10" else 3
        reward = reward - 0.20 * ((t >= start) & (t < start + width))
    elif case == "slow overfit":  # training reward drifts down 0.05 over the last 80 steps (below the floor)
        reward = reward - 0.05 * np.clip((t - 70) / 80, 0, 1)
    elif case == "KL-only spikes":
        kl = kl * np.where(t >= 60, 100.0, 1.0)
    elif case == "entropy sharpening":  # the policy sharpens 4x further than learning does here; reward fine
        entropy = 0.02 + 0.15 * np.exp(-t / 20.0) + rng.normal(0, 0.002, (n, T))
    elif case == "hard collapse":  # reward -> 0.10 over 5 steps from step 90; KL x30 from 80; grad spikes
        reward = reward + (0.10 - reward) * np.clip((t - 89) / 5, 0, 1)
        kl = kl * np.where(t >= 80, 30.0, 1.0)
        grad = grad * np.where(t >= 90, 50.0, 1.0)
    elif case == "slow decline":  # 0.72 -> 0.50 linearly from step 70 to 150
        reward = reward - 0.22 * np.clip((t - 70) / 80, 0, 1)
    elif case == "late collapse":  # collapse at step 140 of 150: only the last pass (137-144) can see it
        reward = reward + (0.10 - reward) * np.clip((t - 139) / 3, 0, 1)
    return {"reward": np.clip(reward, 0, 1), "kl": kl, "entropy": entropy, "grad": grad, "length": length}


# case: (truth, what the test requires)
SUITE = {
    "healthy": "healthy",
    "noisy": "healthy",
    "dip3": "healthy",
    "dip10": "healthy",
    "slow overfit": "healthy",
    "KL-only spikes": "healthy",
    "entropy sharpening": "healthy",
    "hard collapse": "collapse",
    "slow decline": "collapse",
    "late collapse": "censored",
}
MAX_FALSE_POSITIVES, MIN_DETECTION = 0.01, 0.95


def old_warning_rate(sim: dict[str, np.ndarray], runs: int = 200) -> float:
    """The entropy+KL early warning (core.collapse, the old verdict) on the first ``runs`` runs, for comparison."""
    fired = 0
    for ent, kl in zip(sim["entropy"][:runs], sim["kl"][:runs], strict=True):
        d = CollapseDetector()
        fired += any(d.update(float(e), float(k)) for e, k in zip(ent, kl, strict=True))
    return fired / runs


def test_synthetic_suite(capsys):
    rng = np.random.default_rng(20261203)
    rows, failures = [], []
    for case, truth in SUITE.items():
        sim = simulate(case, rng)
        v = cv.judge_steps(sim["reward"], W)
        names = np.array(v.names())
        rate = {name: float(np.mean(names == name)) for name in cv.VERDICTS}
        collapse = rate[cv.COLLAPSED] + rate[cv.DIVERGED]
        onset = v.onset[names == cv.COLLAPSED] * W + 1
        kl_tag = float(np.mean(tags.kl_blowup(sim["kl"], W) > 0))
        grad_tag = float(np.mean(tags.grad_spike(sim["grad"], W) > 0))
        down = np.zeros((RUNS, T // W), dtype=bool)
        down[names == cv.COLLAPSED, :] = True  # the sharpened-entropy tag only counts where reward fell
        ent_tag = float(np.mean(tags.entropy_sharpened(sim["entropy"], W, down) > 0))
        rows.append(
            f"{case:20s} {truth:9s} collapsed {collapse:.3f}  censored {rate[cv.CENSORED]:.3f}  "
            f"recovered {rate[cv.RECOVERED]:.3f}  stable {rate[cv.STABLE]:.3f}  "
            f"median onset {np.median(onset) if onset.size else float('nan'):5.0f}  "
            f"tags kl {kl_tag:.2f} grad {grad_tag:.2f} entropy- {ent_tag:.2f}  old warning {old_warning_rate(sim):.2f}"
        )
        if truth == "healthy" and collapse > MAX_FALSE_POSITIVES:
            failures.append(f"{case}: false positives {collapse:.3f} > {MAX_FALSE_POSITIVES}")
        if truth == "collapse" and collapse < MIN_DETECTION:
            failures.append(f"{case}: detection {collapse:.3f} < {MIN_DETECTION}")
        if truth == "censored" and (rate[cv.CENSORED] < MIN_DETECTION or collapse > MAX_FALSE_POSITIVES):
            failures.append(f"{case}: censored {rate[cv.CENSORED]:.3f}, collapsed {collapse:.3f}")
        if case == "hard collapse" and not np.all(np.abs(onset - 89) <= W):  # onset within one pass of the truth
            failures.append(f"{case}: onsets {sorted(set(onset.tolist()))} not within one pass of step 89")
        if case == "KL-only spikes" and kl_tag < MIN_DETECTION:
            failures.append(f"{case}: KL tag on {kl_tag:.2f}")
        if case in ("healthy", "noisy") and max(kl_tag, grad_tag, ent_tag) > MAX_FALSE_POSITIVES:
            failures.append(f"{case}: a tag fired on healthy runs (kl {kl_tag}, grad {grad_tag}, entropy {ent_tag})")
    short = cv.judge_steps(simulate("hard collapse", rng)["reward"][:, :16], W)
    rows.append(f"{'16-step run':20s} {'-':9s} too short {np.mean(np.array(short.names()) == cv.TOO_SHORT):.3f}")
    with capsys.disabled():
        print(f"\nsynthetic suite: {RUNS} runs per case, {T} steps, W = {W}")
        print("\n".join(rows))
    assert np.all(short.code == cv.VERDICTS.index(cv.TOO_SHORT))
    assert not failures, failures
