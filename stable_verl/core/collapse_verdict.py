"""A collapse verdict that is an outcome: the training reward fell and stayed down, judged per pass over the prompts.

Collapse is an outcome, not a mechanism. The verdict reads only the training reward, averaged per *pass* over the
RL prompts (W = n_rl_train / train_batch_size steps), so each window scores the same prompts and batch difficulty
cancels. With E_k the mean reward of pass k (0-based, full passes only; a trailing partial pass is dropped):

    sigma   = median_k SD(r_t : t in pass k) / sqrt(W)   SD of one pass mean from the step rewards inside each pass,
                                                       the median over passes (robust to a pass that holds a fall);
                                                       an upper bound, as batch difficulty (in the step SD) cancels
                                                       in a pass mean, which sees every prompt once
    delta   = max(DELTA_FLOOR, DELTA_SIGMAS * sigma)   = max(0.10, 4 sigma)
    B_k     = max_{j<k} E_j                            best EARLIER pass
    down_k  = B_k - E_k > delta
    onset   = first k <= K-3 with down_k and B_k - E_{k+1} > delta   (two consecutive passes down; a third pass
                                                       after them exists to show the fall persists)

    verdict = "diverged"   a non-finite reward (or loss / grad-norm, from ``judge_run``): collapsed at that step
              "too short"  K < MIN_PASSES = 4 full passes
              "collapsed"  an onset k with the last pass still below B_k - delta/2
              "censored"   no such onset, but the last pass is down, or the one before it is and the last is still
                           below its B - delta/2 (a fall in the last two passes only: too late to tell from a dip)
              "recovered"  an onset whose fall did not last to the end (transient instability, not a collapse)
              "stable"     otherwise

Why not the MAD of successive pass-mean differences / sqrt(2): with ~17 differences (MAD efficiency 37%) it
underestimates sigma often enough that a first run of the synthetic suite gave 1.1-2.0% false positives on its
noisy-healthy case; the within-pass SD has K (W - 1) degrees of freedom and errs high (0.3%).

4 sigma is about 3 SE of a difference of two pass means plus the upward bias of a running best over ~20 passes
(E[max of 20 normals] ~ 1.9 sigma); 0.10 reward points is ~40% of this task's RL gain. These constants were fixed
before any result (issue 26; notes/grid-science.md §1.4). The held-out confirmation (:func:`heldout_fall`) and the
mechanism tags (``collapse_tags``) are separate: a tag alone never makes a verdict.

Everything here is numpy over a batch of runs, ``(R, K)`` pass means, so the synthetic suite judges thousands of
simulated runs at once; :func:`judge_rewards` is the one-run entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DELTA_FLOOR = 0.10
"""Smallest fall (reward points, 0..1) that can count as a collapse."""
DELTA_SIGMAS = 4.0
"""A fall must also exceed this many SDs of a pass mean."""
MIN_PASSES = 4
"""Fewer full passes than this: "too short" (two passes down plus one to show it lasts, after a best)."""
HELDOUT_Z = 2.0
"""A held-out fall counts when it exceeds this many SEs of the difference (paired where per-prompt data exist)."""

STABLE, COLLAPSED, CENSORED, RECOVERED, TOO_SHORT, DIVERGED = (
    "stable",
    "collapsed",
    "censored",
    "recovered",
    "too short",
    "diverged",
)
VERDICTS = (STABLE, COLLAPSED, CENSORED, RECOVERED, TOO_SHORT, DIVERGED)
"""Index = the code :func:`judge_passes` returns."""
IS_COLLAPSE = (COLLAPSED, DIVERGED)
"""Verdicts that count as a collapse in a claim."""


def steps_per_pass(n_rl_train: int, train_batch_size: int) -> int:
    """W: steps that cover the RL prompts once (the dataloader drops a partial last batch)."""
    if train_batch_size <= 0 or n_rl_train < train_batch_size:
        raise ValueError(f"need n_rl_train >= train_batch_size > 0, got {n_rl_train} and {train_batch_size}")
    return n_rl_train // train_batch_size


def pass_means(rewards: np.ndarray, w: int) -> np.ndarray:
    """(..., T) per-step rewards -> (..., T // w) means over each full pass (a trailing partial pass is dropped)."""
    rewards = np.asarray(rewards, dtype=float)
    k = rewards.shape[-1] // w
    return rewards[..., : k * w].reshape(*rewards.shape[:-1], k, w).mean(axis=-1)


def pass_noise(rewards: np.ndarray, w: int) -> np.ndarray:
    """(R, T) per-step rewards -> (R,) SD of one pass mean: median over full passes of the step rewards' SD inside
    the pass, / sqrt(w) (module docstring); NaN with w < 2 or no full pass."""
    r = np.atleast_2d(np.asarray(rewards, dtype=float))
    k = r.shape[1] // w
    if w < 2 or k == 0:
        return np.full(r.shape[0], np.nan)
    sd = r[:, : k * w].reshape(r.shape[0], k, w).std(axis=2, ddof=1)  # (R, K)
    return np.median(sd, axis=1) / math.sqrt(w)


@dataclass(frozen=True)
class PassVerdicts:
    """:func:`judge_passes` for R runs: each array is (R,)."""

    code: np.ndarray
    """Index into VERDICTS."""
    onset: np.ndarray
    """0-based pass of the onset (collapsed, recovered; the first non-finite pass if diverged; the first down pass
    of the last two if censored); -1: none."""
    best: np.ndarray
    """B at the onset (NaN: none)."""
    fall: np.ndarray
    """B at the onset minus the last pass mean; for a censored run B minus its last pass (NaN: none)."""
    delta: np.ndarray
    sigma: np.ndarray

    def names(self) -> list[str]:
        return [VERDICTS[c] for c in self.code]


def judge_steps(rewards: np.ndarray, w: int) -> PassVerdicts:
    """Judge (R, T) per-step training rewards of R runs (steps 1..T) in passes of ``w`` steps."""
    r = np.atleast_2d(np.asarray(rewards, dtype=float))
    return judge_passes(pass_means(r, w), pass_noise(np.where(np.isfinite(r), r, 0.0), w))


def judge_passes(means: np.ndarray, sigma: np.ndarray) -> PassVerdicts:
    """Judge (R, K) pass means (one row per run; K equal across rows) with (R,) pass-mean SDs by the module's rule
    (a NaN sigma: delta is the floor)."""
    e = np.atleast_2d(np.asarray(means, dtype=float))  # (R, K)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (e.shape[0],))
    r, k = e.shape
    code = np.full(r, VERDICTS.index(STABLE))
    onset = np.full(r, -1)
    best, fall = np.full(r, np.nan), np.full(r, np.nan)
    finite = np.isfinite(e)
    delta = np.maximum(DELTA_FLOOR, DELTA_SIGMAS * np.nan_to_num(sigma, nan=0.0))  # (R,)
    if k < MIN_PASSES:
        code[:] = VERDICTS.index(TOO_SHORT)
    else:
        b = np.maximum.accumulate(e, axis=1)  # (R, K) best up to and including k
        b = np.concatenate([np.full((r, 1), np.nan), b[:, :-1]], axis=1)  # (R, K) best EARLIER: B_k
        with np.errstate(invalid="ignore"):
            down = b - e > delta[:, None]  # (R, K); False at k = 0 (NaN)
            nxt = np.zeros_like(down)
            nxt[:, :-1] = b[:, :-1] - e[:, 1:] > delta[:, None]  # B_k - E_{k+1} > delta
            cand = down & nxt
            cand[:, k - 2 :] = False  # onsets need a later pass to show persistence
            stays = e[:, -1:] < b - delta[:, None] / 2  # (R, K): last pass still below B_k - delta/2
        hit = cand & stays
        rows = np.arange(r)
        first_hit, first_cand = hit.argmax(axis=1), cand.argmax(axis=1)
        is_coll, is_cand = hit.any(axis=1), cand.any(axis=1)
        censored = ~is_coll & (down[:, -1] | (down[:, -2] & stays[:, -2]))
        recovered = ~is_coll & ~censored & is_cand
        code[recovered] = VERDICTS.index(RECOVERED)
        onset[recovered] = first_cand[recovered]
        code[censored] = VERDICTS.index(CENSORED)
        onset[censored] = np.where(down[censored, -2], k - 2, k - 1)
        code[is_coll] = VERDICTS.index(COLLAPSED)
        onset[is_coll] = first_hit[is_coll]
        has = onset >= 0
        best[has] = b[rows[has], onset[has]]
        fall[has] = best[has] - e[has, -1]
    bad = ~finite.all(axis=1)  # a non-finite pass mean: diverged, whatever its length
    if bad.any():
        code[bad] = VERDICTS.index(DIVERGED)
        onset[bad] = (~finite[bad]).argmax(axis=1)
        best[bad] = fall[bad] = np.nan
    return PassVerdicts(code, onset, best, fall, delta, sigma)


@dataclass(frozen=True)
class RunVerdict:
    """One run's outcome verdict."""

    verdict: str
    passes: int
    """Full passes judged."""
    steps_per_pass: int
    onset_step: int | None = None
    """First step of the onset pass (collapsed / recovered / censored), or the first non-finite step (diverged)."""
    best: float = math.nan
    """Best earlier pass mean at the onset."""
    fall: float = math.nan
    """Best earlier pass mean minus the last pass mean."""
    delta: float = math.nan
    sigma: float = math.nan
    pass_means: tuple[float, ...] = ()

    @property
    def is_collapse(self) -> bool:
        return self.verdict in IS_COLLAPSE

    def __str__(self) -> str:
        text = f"{self.verdict} ({self.passes} passes of {self.steps_per_pass} steps"
        if self.onset_step is not None:
            text += f"; onset step {self.onset_step}"
        if not math.isnan(self.fall):
            text += f"; fall {self.fall:.3f} vs delta {self.delta:.3f}"
        return text + ")"


def judge_rewards(rewards: Sequence[float], w: int, diverged_step: int | None = None) -> RunVerdict:
    """One run's per-step training rewards (steps 1..T in order) -> its verdict; ``diverged_step``: the first step
    with a non-finite loss or grad-norm (a divergence, whatever the reward says)."""
    values = np.asarray(rewards, dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    first_bad = [s for s in (diverged_step, int(bad[0]) + 1 if bad.size else None) if s is not None]
    means = pass_means(values, w)
    k = means.shape[-1]
    if first_bad:
        return RunVerdict(DIVERGED, k, w, min(first_bad), pass_means=tuple(means.tolist()))
    v = judge_steps(values[None, :], w)
    onset = int(v.onset[0])
    return RunVerdict(
        v.names()[0],
        k,
        w,
        onset * w + 1 if onset >= 0 else None,
        float(v.best[0]),
        float(v.fall[0]),
        float(v.delta[0]),
        float(v.sigma[0]),
        tuple(means.tolist()),
    )


# ------------------------------------------------------------------------------------------ held-out check
@dataclass(frozen=True)
class HeldoutFall:
    """The largest fall of a held-out score after its best (up to ``until``), in SEs of the difference."""

    best_step: int
    step: int
    fall: float
    se: float

    @property
    def confirmed(self) -> bool:
        """The fall exceeds HELDOUT_Z SEs of the difference."""
        return not math.isnan(self.se) and self.fall > HELDOUT_Z * self.se

    def __str__(self) -> str:
        return f"held-out {self.fall:+.3f} fall from step {self.best_step} to {self.step} (SE {self.se:.3f})"


def heldout_fall(
    steps: Sequence[int],
    scores: Sequence[float],
    diff_se: Callable[[int, int], float],
    until: int | None = None,
) -> HeldoutFall | None:
    """The largest fall from the best checkpoint at or before ``until`` (None: any) to any later checkpoint.

    ``diff_se(i, j)``: the SE of ``scores[i] - scores[j]`` (indices): paired per prompt and sample seed where
    per-prompt results exist (``significance.paired_difference``), else sqrt(SE_i^2 + SE_j^2). None when no
    checkpoint lies after the best. A collapse verdict is confirmed when the fall from the best up to its onset
    is ``confirmed``; a confirmed fall without a training-reward collapse is overfitting, reported apart.
    """
    idx = [i for i, s in enumerate(steps) if until is None or s <= until]
    if not idx:
        return None
    b = max(idx, key=lambda i: scores[i])
    later = [j for j in range(b + 1, len(steps))]
    if not later:
        return None
    j = min(later, key=lambda j: scores[j])
    return HeldoutFall(steps[b], steps[j], scores[b] - scores[j], diff_se(b, j))
