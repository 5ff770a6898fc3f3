"""Mechanism tags: which blow-up came with a run's fall, and from which step. Never a verdict on their own.

Each tag is judged per pass of W steps (as the verdict, ``collapse_verdict``) and reports the first step of the first
pass where it holds (a grad spike: the step of the pass's first spike). Rules (notes/grid-science.md §1.4, fixed
before any result):

  kl        median train-inference k3 over a pass (after the first) > max(KL_RATIO x its median over the W steps
            after the warm-up steps, KL_FLOOR)
  is        mean IS-weight truncation fraction over a pass > IS_TRUNCATED
  grad      grad-norm > GRAD_RATIO x the median of every earlier step, on >= 2 steps of one pass
  entropy+  pass-mean per-token entropy > ENTROPY_UP x the smallest earlier pass mean (explosion)
  entropy-  pass-mean entropy < ENTROPY_DOWN x the first pass's, at a pass whose reward is down (``down``)
  length    pass-mean response length > LENGTH_CAP x max_response_length, or > 2 x the previous pass's

Arrays are (R, T) per-step values of R runs (NaN: not logged that step); each function returns (R,) first steps,
0 where the tag never holds, so a suite can tag thousands of simulated runs at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stable_verl.core.metric_keys import ENTROPY_KEYS, GRAD_NORM, IS_TRUNCATED_FRAC, KL_K3_KEYS, LENGTH_KEYS

WARMUP_STEPS = 3
KL_RATIO, KL_FLOOR = 10.0, 1e-3
IS_TRUNCATED = 0.01
GRAD_RATIO, GRAD_SPIKES = 10.0, 2
ENTROPY_UP, ENTROPY_DOWN = 1.5, 0.25
LENGTH_CAP, LENGTH_JUMP = 0.9, 2.0


def _passes(values: np.ndarray, w: int) -> np.ndarray:
    """(R, T) -> (R, K, w), full passes only."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    k = v.shape[1] // w
    return v[:, : k * w].reshape(v.shape[0], k, w)


def _first(mask: np.ndarray, w: int) -> np.ndarray:
    """(R, K) pass mask -> (R,) first step of the first True pass (1-based), 0 when none."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1) * w + 1, 0)


def _nanreduce(fn, values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN pass (metric not logged) is NaN, and compares False
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(values, axis=axis)


def kl_blowup(kl: np.ndarray, w: int) -> np.ndarray:
    p = _passes(kl, w)
    med = _nanreduce(np.nanmedian, p, 2)  # (R, K)
    v = np.atleast_2d(np.asarray(kl, dtype=float))
    ref = _nanreduce(np.nanmedian, v[:, WARMUP_STEPS : WARMUP_STEPS + w], 1)  # (R,) the W steps after warm-up
    mask = med > np.maximum(KL_RATIO * ref, KL_FLOOR)[:, None]
    mask[:, 0] = False
    return _first(mask, w)


def is_blowup(truncated_frac: np.ndarray, w: int) -> np.ndarray:
    return _first(_nanreduce(np.nanmean, _passes(truncated_frac, w), 2) > IS_TRUNCATED, w)


def grad_spike(grad_norm: np.ndarray, w: int) -> np.ndarray:
    g = np.atleast_2d(np.asarray(grad_norm, dtype=float))  # (R, T)
    r, t = g.shape
    spike = np.zeros_like(g, dtype=bool)
    for i in range(WARMUP_STEPS, t):  # the median of every earlier step (at least the warm-up's)
        ref = _nanreduce(np.nanmedian, g[:, :i], 1)
        spike[:, i] = g[:, i] > GRAD_RATIO * ref
    k = t // w
    per_pass = spike[:, : k * w].reshape(r, k, w)
    hit = per_pass.sum(axis=2) >= GRAD_SPIKES  # (R, K)
    first_pass = hit.argmax(axis=1)
    first_in_pass = per_pass[np.arange(r), first_pass].argmax(axis=1)
    return np.where(hit.any(axis=1), first_pass * w + first_in_pass + 1, 0)


def entropy_explosion(entropy: np.ndarray, w: int) -> np.ndarray:
    m = _nanreduce(np.nanmean, _passes(entropy, w), 2)  # (R, K)
    low = np.fmin.accumulate(m, axis=1)
    low = np.concatenate([np.full((m.shape[0], 1), np.nan), low[:, :-1]], axis=1)  # smallest EARLIER pass
    return _first(m > ENTROPY_UP * low, w)


def entropy_sharpened(entropy: np.ndarray, w: int, down: np.ndarray) -> np.ndarray:
    """``down``: (R, K) passes whose reward is more than delta below the best earlier pass."""
    m = _nanreduce(np.nanmean, _passes(entropy, w), 2)
    return _first((m < ENTROPY_DOWN * m[:, :1]) & down, w)


def length_blowup(length: np.ndarray, w: int, max_response_length: int | None) -> np.ndarray:
    m = _nanreduce(np.nanmean, _passes(length, w), 2)
    jump = np.zeros_like(m, dtype=bool)
    jump[:, 1:] = m[:, 1:] > LENGTH_JUMP * m[:, :-1]
    if max_response_length:
        jump |= m > LENGTH_CAP * max_response_length
    return _first(jump, w)


# ------------------------------------------------------------------------------------------------ one run
@dataclass(frozen=True)
class Tag:
    name: str
    step: int

    def __str__(self) -> str:
        return f"{self.name}@{self.step}"


def series(rows: Sequence[dict], keys: Sequence[str], steps: int) -> np.ndarray | None:
    """(steps,) values of the first of ``keys`` the run logged, NaN at steps without it; None when never logged."""
    key = next((k for k in keys if any(k in r for r in rows)), None)
    if key is None:
        return None
    out = np.full(steps, np.nan)
    for r in rows:
        if key in r and 1 <= int(r["step"]) <= steps and r[key] is not None:
            out[int(r["step"]) - 1] = float(r[key])
    return out


def collapse_tags(
    rows: Sequence[dict], w: int, down: np.ndarray | None = None, max_response_length: int | None = None
) -> list[Tag]:
    """The mechanism tags of one run's metrics rows (``{"step": n, key: value}``); ``down``: (K,) passes whose
    reward is down (``collapse_verdict``), for the entropy-sharpened tag. Metrics the run never logged: no tag."""
    steps = max((int(r["step"]) for r in rows), default=0)
    k = steps // w
    if k == 0:
        return []
    checks = [
        ("kl", KL_K3_KEYS, lambda v: kl_blowup(v, w)),
        ("is", (IS_TRUNCATED_FRAC,), lambda v: is_blowup(v, w)),
        ("grad", (GRAD_NORM,), lambda v: grad_spike(v, w)),
        ("entropy+", ENTROPY_KEYS, lambda v: entropy_explosion(v, w)),
        ("length", LENGTH_KEYS, lambda v: length_blowup(v, w, max_response_length)),
    ]
    if down is not None:
        mask = np.asarray(down, dtype=bool)[None, :k]
        checks.append(("entropy-", ENTROPY_KEYS, lambda v: entropy_sharpened(v, w, mask)))
    tags = []
    for name, keys, fn in checks:
        values = series(rows, keys, steps)
        if values is not None:
            step = int(fn(values[None, :])[0])
            if step:
                tags.append(Tag(name, step))
    return sorted(tags, key=lambda t: t.step)
