"""The paper's claims (paper.md §6.5) as verdict rules over per-run summaries, fixed before any result they judge.

Input: one :class:`RunSummary` per grid run (arm = recipe name, N = mini-batches per rollout batch, seed): its
evaluated score curve (mean avg@k over benchmarks, with the evaluation's SE), its outcome collapse verdict
(``stable_verl.core.collapse_verdict``: per-pass training reward; None when the per-step rewards are not at hand)
and, as a diagnostic only, the step of the entropy+KL warning. Output: one :class:`Verdict` per claim, ``held`` /
``not held`` / ``inconclusive``, with its estimate, interval, p-value, Holm-adjusted p and minimum detectable
difference (``stable_verl.core.significance``). Rules (issue 26, notes/grid-science.md §1.6 and §4):

* **Scores are final scores** (the last evaluated checkpoint, a step fixed in advance), never peaks: the max of
  noisy checkpoints is biased up, and by different amounts for different curve shapes.
* **Arms are compared per training seed:** ``mean_A - mean_B`` over the arms' runs at one N, SE from the SD of final
  scores pooled over every (arm, N) cell of the grid (df = runs - cells), Student-t intervals and p-values. The
  seed-to-seed spread already holds the evaluation's noise; prompt difficulty, shared by every arm (same prompts,
  same per-sample seeds), cancels and is not added as a floor.
* **"A beats B"**: two-sided t-test; **"A is at least as good as B"**: non-inferiority at ``EQUIV_MARGIN`` (p of
  H0: A - B <= -margin), not held when the 95% interval lies below 0. A claim over several N holds only if every N
  does (its p is the largest).
* **Holm** over every claim that has a p-value: held (or, for a "beats" claim, not held) needs Holm-adjusted
  p < ``ALPHA``.
* **"X collapses"** reads only outcome verdicts, never a warning, tag or diagnostic. Inconclusive when any run of
  the claim is unjudged or "too short", or an arm has fewer than ``MIN_RATE_SEEDS`` = 4 seeds; otherwise X is
  compared with ONE pre-declared reference arm (its twin without the ablation) by one-sided Fisher exact test: held
  when X collapsed in >= 3 seeds, the reference in fewer, and the Holm-adjusted p < ALPHA; not held when X collapsed
  in <= 1 seed. Its minimum detectable difference is the smallest collapse rate of X (reference 0) that could reach
  p < ALPHA with these seed counts.
* **"R2 becomes unstable at larger N"**: a run is unstable if its outcome verdict is a collapse, or its held-out
  score fell from its best checkpoint to its last by more than 2 SE of the difference (paired per prompt where
  per-prompt results exist, else unpaired); the same Fisher rule against R3 at the same N.
* **"Stable runs reach similar final scores across N"**: only runs judged stable count; held when every pair of N's
  best stable arms is equivalent within ``EQUIV_MARGIN`` (two one-sided tests, the largest p).
* **"Different inits converge"** is the cold-start flow's claim; a grid of one init reports it inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from stable_verl.core import collapse_verdict as cv
from stable_verl.core import significance as sig

ALPHA = sig.ALPHA
EQUIV_MARGIN = 0.02
"""Largest score difference (avg@k, 0..1) that still counts as 'as good as'."""
MIN_SEEDS = 2
"""Fewer seeds per arm than this: no score claim can be tested."""
MIN_RATE_SEEDS = 4
"""Fewer seeds per arm than this: no collapse-rate claim can be held (4/4 vs 0/4 gives Fisher p = 0.014)."""
HELD_AT, REJECTED_AT = 3, 1
"""A collapse claim is held with >= HELD_AT collapsed seeds of X, not held with <= REJECTED_AT."""

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"

# The paper's arms (configs/recipes/): the grid sets N per cell, so one recipe serves every N.
MINIRL, LENNORM, NO_IS = "minirl", "minirl_lennorm", "minirl_no_is"
R3, R3_LENNORM, R3_NO_IS = "minirl_r3", "minirl_r3_lennorm", "minirl_r3_no_is"
R2, R2_NOCLIP, NOCLIP, CLIP_NO_REPLAY = "minirl_r2", "minirl_r2_noclip", "minirl_offpolicy_noclip", "minirl_offpolicy"


@dataclass(frozen=True)
class RunSummary:
    """One grid run reduced to what the claims read."""

    arm: str
    """Recipe name."""
    n: int
    """Mini-batches per rollout batch (1 = on-policy)."""
    seed: int
    steps: tuple[int, ...]
    """Evaluated RL checkpoint steps, ascending (the init, step 0, excluded)."""
    scores: tuple[float, ...]
    """Mean avg@k over benchmarks at each step."""
    stderrs: tuple[float, ...] = ()
    """The evaluation's standard error of each score (NaN: unknown); empty: all unknown."""
    verdict: str | None = None
    """Outcome collapse verdict (core.collapse_verdict.VERDICTS); None: not judged (no per-step rewards)."""
    onset_step: int | None = None
    """The verdict's onset step, if any."""
    tags: tuple[str, ...] = ()
    """Mechanism tags as 'name@step' (core.collapse_tags): diagnostics, never a verdict."""
    warning_step: int | None = None
    """First step of the entropy+KL early warning (core.collapse): a diagnostic, never read by a claim."""
    fall_se: float = math.nan
    """Paired SE of (best checkpoint - last checkpoint) from per-prompt results; NaN: use the unpaired SE."""
    run_id: str = ""

    def _se(self, i: int) -> float:
        return self.stderrs[i] if self.stderrs else math.nan

    @property
    def peak(self) -> float:
        return max(self.scores) if self.scores else math.nan

    @property
    def peak_step(self) -> int | None:
        return self.steps[self.scores.index(self.peak)] if self.scores else None

    @property
    def peak_stderr(self) -> float:
        return self._se(self.scores.index(self.peak)) if self.scores else math.nan

    @property
    def final(self) -> float:
        return self.scores[-1] if self.scores else math.nan

    @property
    def final_stderr(self) -> float:
        return self._se(len(self.scores) - 1) if self.scores else math.nan

    @property
    def collapsed(self) -> bool:
        return self.verdict in cv.IS_COLLAPSE

    def heldout_fall(self) -> cv.HeldoutFall | None:
        """Best checkpoint to the last one (paired SE where known)."""
        if len(self.scores) < 2:
            return None
        last = len(self.scores) - 1

        def se(i: int, j: int) -> float:
            paired = j == last and i == self.scores.index(self.peak) and not math.isnan(self.fall_se)
            return self.fall_se if paired else math.hypot(self._se(i), self._se(j))

        return cv.heldout_fall(self.steps, self.scores, se, until=self.steps[-2])

    @property
    def heldout_fell(self) -> bool:
        fall = self.heldout_fall()
        return fall is not None and fall.step == self.steps[-1] and fall.confirmed

    @property
    def unstable(self) -> bool:
        """Outcome collapse, or the last checkpoint fell from the best by more than 2 SE of the difference."""
        return self.collapsed or self.heldout_fell


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    """HELD, NOT_HELD or INCONCLUSIVE."""
    evidence: str
    """The numbers and seed counts the verdict rests on, or why there are none."""
    seeds: int = 0
    """Fewest seeds of any arm the verdict compared (0: none ran)."""
    estimate: float = math.nan
    """The claim's effect: a score difference, or a collapse-rate difference."""
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    """The claim's p-value (NaN: not tested); Holm is applied across the claims by :func:`judge`."""
    p_holm: float = math.nan
    mdd: str = ""
    """Minimum detectable difference of the claim's test at ALPHA, 80% power."""
    on_held: str = HELD
    """What a significant p means: HELD, or NOT_HELD (a 'beats' claim whose difference went the other way)."""


# ------------------------------------------------------------------------------------------ score claims
def final_scores(runs: Sequence[RunSummary], arm: str, n: int) -> list[float]:
    return [r.final for r in runs if r.arm == arm and r.n == n and r.scores]


def pooled_final_sd(runs: Sequence[RunSummary]) -> tuple[float, int]:
    """SD of final scores within (arm, N) cells, pooled over every cell, and its df."""
    cells: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        if r.scores:
            cells.setdefault((r.arm, r.n), []).append(r.final)
    return sig.pooled_sd(list(cells.values()))


def arm_difference(runs: Sequence[RunSummary], a: str, b: str, n: int) -> sig.Difference | str:
    """Final score of ``a`` minus ``b`` at ``n`` (pooled seed SD), or why there is none."""
    fa, fb = final_scores(runs, a, n), final_scores(runs, b, n)
    absent = [arm for arm, f in ((a, fa), (b, fb)) if not f]
    if absent:
        return f"not in this grid: {', '.join(absent)} at N={n}"
    if min(len(fa), len(fb)) < MIN_SEEDS:
        return f"{a}@N={n} ({len(fa)} seeds) vs {b}@N={n} ({len(fb)} seeds): fewer than {MIN_SEEDS} seeds"
    try:
        sd, df = pooled_final_sd(runs)
    except ValueError as e:
        return str(e)
    return sig.pooled_difference(fa, fb, sd, df)


def _seeds(runs: Sequence[RunSummary], arm: str, n: int) -> int:
    return len(final_scores(runs, arm, n))


def _score_verdict(claim: str, parts: list[tuple[str, sig.Difference]], p: float, on_held: str) -> Verdict:
    """One verdict for one or more N: estimate and interval of the first part, MDD of the largest SE."""
    d0 = parts[0][1]
    lo, hi = d0.ci()
    evidence = "; ".join(f"{label}: final diff {d}" for label, d in parts)
    mdd = max(d.mdd() for _, d in parts)
    return Verdict(claim, INCONCLUSIVE, evidence, 0, d0.estimate, lo, hi, p, math.nan, f"{mdd:.3f}", on_held)


def better(claim: str, runs: Sequence[RunSummary], a: str, b: str, ns: Sequence[int]) -> Verdict:
    """'a beats b' at every N in ``ns`` (final scores)."""
    if not ns:
        return Verdict(claim, INCONCLUSIVE, "no such N in this grid")
    parts = [(f"{a} - {b} @N={n}", arm_difference(runs, a, b, n)) for n in ns]
    missing = [d for _, d in parts if isinstance(d, str)]
    if missing:
        return Verdict(claim, INCONCLUSIVE, "; ".join(missing))
    diffs = [d for _, d in parts]
    if all(d.estimate > 0 for d in diffs) or all(d.estimate < 0 for d in diffs):
        p = max(d.p_two_sided() for d in diffs)
        on_held = HELD if diffs[0].estimate > 0 else NOT_HELD
    else:  # the parts disagree in sign: not one direction to test
        p, on_held = math.nan, HELD
    v = _score_verdict(claim, parts, p, on_held)  # type: ignore[arg-type]
    return replace(v, seeds=min(min(_seeds(runs, a, n), _seeds(runs, b, n)) for n in ns))


def at_least(claim: str, runs: Sequence[RunSummary], a: str, b: str, n: int) -> Verdict:
    """'a is at least as good as b' at ``n``: non-inferiority within EQUIV_MARGIN; not held when b is better."""
    d = arm_difference(runs, a, b, n)
    if isinstance(d, str):
        return Verdict(claim, INCONCLUSIVE, d)
    seeds = min(_seeds(runs, a, n), _seeds(runs, b, n))
    v = _score_verdict(claim, [(f"{a} - {b} @N={n} (margin {EQUIV_MARGIN:g})", d)], d.p_greater(EQUIV_MARGIN), HELD)
    if v.ci_high < 0:
        return replace(v, verdict=NOT_HELD, seeds=seeds, p=math.nan, evidence=f"{v.evidence} (b better)")
    return replace(v, seeds=seeds)


# --------------------------------------------------------------------------------------- collapse claims
def _unjudged(groups: Sequence[Sequence[RunSummary]]) -> str | None:
    """Why these runs' outcome verdicts cannot carry a collapse claim, or None."""
    flat = [r for g in groups for r in g]
    if any(r.verdict is None for r in flat):
        return "no outcome verdict (the per-step training rewards are not at hand)"
    short = [r for r in flat if r.verdict == cv.TOO_SHORT]
    if short:
        return (
            f"{len(short)}/{len(flat)} runs too short for the outcome rule (< {cv.MIN_PASSES} passes over the prompts)"
        )
    return None


def _rate_text(runs: Sequence[RunSummary], arm: str, n: int, pred: Callable[[RunSummary], bool]) -> str:
    mine = [r for r in runs if r.arm == arm and r.n == n]
    verdicts = ", ".join(r.verdict or "unjudged" for r in mine)
    return f"{arm}@N={n}: {sum(pred(r) for r in mine)}/{len(mine)} [{verdicts}]"


def rate_contrast(
    claim: str, runs: Sequence[RunSummary], pairs: Sequence[tuple[str, str, int]], pred: Callable[[RunSummary], bool]
) -> Verdict:
    """Each (arm X, reference, N) that the grid ran: X's runs meet ``pred`` (collapsed / unstable) more often than
    the reference's (one-sided Fisher); held when every such pair does (largest p). Pairs the grid did not run are
    named in the evidence and judge nothing; with none run, the claim is inconclusive."""

    def of(arm: str, n: int) -> list[RunSummary]:
        return [r for r in runs if r.arm == arm and r.n == n]

    absent = [f"{x}/{ref}@N={n}" for x, ref, n in pairs if not of(x, n) or not of(ref, n)]
    pairs = [(x, ref, n) for x, ref, n in pairs if of(x, n) and of(ref, n)]
    if not pairs:
        return Verdict(claim, INCONCLUSIVE, f"not in this grid: {', '.join(absent) or 'no such N'}")
    groups = [(of(x, n), of(ref, n)) for x, ref, n in pairs]
    evidence = "; ".join(f"{_rate_text(runs, x, n, pred)} vs {_rate_text(runs, ref, n, pred)}" for x, ref, n in pairs)
    if absent:
        evidence += f" (not in this grid: {', '.join(absent)})"
    seeds = min(min(len(gx), len(gr)) for gx, gr in groups)
    mdds = [sig.fisher_min_detectable(len(gx), len(gr)) for gx, gr in groups]
    mdd = "unreachable with these seeds" if any(m is None for m in mdds) else f"rate {max(mdds):.2f} vs 0"  # type: ignore[type-var]
    why = _unjudged([g for pair in groups for g in pair])
    if why:
        return Verdict(claim, INCONCLUSIVE, f"{evidence}; {why}", seeds, mdd=mdd)
    hits = [(sum(map(pred, gx)), len(gx), sum(map(pred, gr)), len(gr)) for gx, gr in groups]
    est = statistics.fmean(hx / nx - hr / nr for hx, nx, hr, nr in hits)
    p = max(sig.fisher_one_sided(*h) for h in hits)
    v = Verdict(claim, INCONCLUSIVE, evidence, seeds, estimate=est, p=p, mdd=mdd)
    if seeds < MIN_RATE_SEEDS:
        return replace(v, evidence=f"{evidence}; fewer than {MIN_RATE_SEEDS} seeds per arm", p=math.nan)
    if all(hx <= REJECTED_AT for hx, *_ in hits):
        return replace(v, verdict=NOT_HELD, p=math.nan)
    if not all(hx >= HELD_AT and hr < hx for hx, _, hr, _ in hits):
        return replace(v, p=math.nan)
    return v


def similar_final_across_n(claim: str, runs: Sequence[RunSummary]) -> Verdict:
    """Per N, the best arm all of whose runs were judged stable; every pair of N equivalent within the margin."""
    why = _unjudged([runs])
    if why:
        return Verdict(claim, INCONCLUSIVE, f"which runs are stable cannot be judged: {why}")
    best: list[tuple[int, str, float]] = []
    for n in sorted({r.n for r in runs}):
        stable = {r.arm for r in runs if r.n == n} - {r.arm for r in runs if r.n == n and r.verdict != cv.STABLE}
        scored = [(n, arm, statistics.fmean(final_scores(runs, arm, n))) for arm in sorted(stable)]
        if scored:
            best.append(max(scored, key=lambda s: s[2]))
    if len(best) < 2:
        return Verdict(claim, INCONCLUSIVE, "fewer than two N with a stable arm")
    parts = [
        (f"{a}@{na} - {b}@{nb}", arm_difference_cells(runs, (a, na), (b, nb)))
        for (na, a, _), (nb, b, _) in _pairs(best)
    ]
    missing = [d for _, d in parts if isinstance(d, str)]
    if missing:
        return Verdict(claim, INCONCLUSIVE, "; ".join(missing))
    p = max(max(d.p_greater(EQUIV_MARGIN), 1 - d.p_greater(-EQUIV_MARGIN)) for _, d in parts)  # type: ignore[union-attr]
    v = _score_verdict(claim, parts, p, HELD)  # type: ignore[arg-type]
    return replace(v, seeds=min(_seeds(runs, a, n) for n, a, _ in best))


def _pairs(items: list) -> list[tuple]:
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1 :]]


def arm_difference_cells(runs: Sequence[RunSummary], a: tuple[str, int], b: tuple[str, int]) -> sig.Difference | str:
    """Final score of cell ``a`` (arm, N) minus cell ``b`` (pooled seed SD), or why there is none."""
    fa, fb = final_scores(runs, *a), final_scores(runs, *b)
    if min(len(fa), len(fb)) < MIN_SEEDS:
        return f"{a[0]}@N={a[1]} ({len(fa)} seeds) vs {b[0]}@N={b[1]} ({len(fb)} seeds): fewer than {MIN_SEEDS} seeds"
    sd, df = pooled_final_sd(runs)
    return sig.pooled_difference(fa, fb, sd, df)


# --------------------------------------------------------------------------------------------- the claims
def _ns(runs: Sequence[RunSummary], pred: Callable[[int], bool]) -> list[int]:
    return sorted({r.n for r in runs if pred(r.n)})


@dataclass
class Claim:
    """One sentence of paper.md §6.5 and the rule that judges it."""

    text: str
    rule: Callable[[str, Sequence[RunSummary]], Verdict] = field(repr=False)


def _collapsed(r: RunSummary) -> bool:
    return r.collapsed


def _unstable(r: RunSummary) -> bool:
    return r.unstable


def _r2_unstable(claim: str, runs: Sequence[RunSummary]) -> Verdict:
    large = _ns(runs, lambda n: n >= 4)
    if not large:
        return Verdict(claim, INCONCLUSIVE, f"not in this grid: {R2} at N >= 4")
    return rate_contrast(claim, runs, [(R2, R3, large[-1])], _unstable)


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "On-policy (N=1): MiniRL >= +R3 (final score)",
        lambda c, runs: at_least(c, runs, MINIRL, R3, 1),
    ),
    Claim(
        "On-policy (N=1): +R3 > +len-norm (final score)",
        lambda c, runs: better(c, runs, R3, LENNORM, [1]),
    ),
    Claim(
        "On-policy (N=1): the w/o-train-infer-IS arms collapse (outcome verdict; reference: the same arm with IS)",
        lambda c, runs: rate_contrast(c, runs, [(NO_IS, MINIRL, 1), (R3_NO_IS, R3, 1)], _collapsed),
    ),
    Claim(
        "Off-policy (N>=2): the no-clip arms collapse (outcome verdict; reference: the same arm with clipping)",
        lambda c, runs: rate_contrast(
            c,
            runs,
            [
                (x, ref, n)
                for n in _ns(runs, lambda n: n >= 2)
                for x, ref in ((NOCLIP, CLIP_NO_REPLAY), (R2_NOCLIP, R2))
            ],
            _collapsed,
        ),
    ),
    Claim(
        "Off-policy: R2 beats R3 at N=2 (final score)",
        lambda c, runs: better(c, runs, R2, R3, _ns(runs, lambda n: n == 2)),
    ),
    Claim(
        "Off-policy: R3 beats R2 at N=4 and N=8 (final score)",
        lambda c, runs: better(c, runs, R3, R2, _ns(runs, lambda n: n >= 4)),
    ),
    Claim(
        "Off-policy: R2 becomes unstable at larger N (outcome verdict or held-out fall; reference: R3)", _r2_unstable
    ),
    Claim("Stable runs at different N reach similar final scores", similar_final_across_n),
    Claim(
        "Different inits converge",
        lambda c, runs: Verdict(c, INCONCLUSIVE, "one init per grid: judged by the cold-start comparison"),
    ),
)


def judge(runs: Sequence[RunSummary]) -> list[Verdict]:
    """Every claim of paper.md §6.5, judged on ``runs``, with Holm across the claims that have a p-value."""
    verdicts = [claim.rule(claim.text, runs) for claim in CLAIMS]
    adjusted = sig.holm([v.p for v in verdicts])
    out = []
    for v, p_holm in zip(verdicts, adjusted, strict=True):
        v = replace(v, p_holm=p_holm)
        if not math.isnan(p_holm):
            v = replace(v, verdict=v.on_held if p_holm < ALPHA else INCONCLUSIVE)
        out.append(v)
    return out


def arm_score(runs: Sequence[RunSummary], arm: str, n: int, which: str = "final") -> tuple[float, float, int] | None:
    """(mean over seeds, SE from the pooled seed SD, seeds) of ``which`` ('final' or 'peak'); None: no such run.
    For figures; the claims use :func:`arm_difference`."""
    values = [getattr(r, which) for r in runs if r.arm == arm and r.n == n and r.scores]
    if not values:
        return None
    try:
        sd, _ = pooled_final_sd(runs)
    except ValueError:  # no cell with two seeds
        sd = math.nan
    return statistics.fmean(values), sd / math.sqrt(len(values)), len(values)
