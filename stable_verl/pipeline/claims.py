"""The paper's claims (paper.md §6.5) as verdict rules over per-run summaries, written before any result exists.

Input: one :class:`RunSummary` per grid run (arm = recipe name, N = mini-batches per rollout batch, seed): its
evaluated score curve (mean avg@k over benchmarks, with the evaluation's standard error) and the step at which
``stability/collapse`` first reads 1 (``stable_verl.verl_ext.trainer``: entropy dropped while the train-inference
KL spiked), if it ever did. Output: one :class:`Verdict` per claim, ``held`` / ``not held`` / ``inconclusive``,
with the numbers and the seed counts behind it.

The rules (every threshold is a module constant):

* **An arm's score** at one N is the mean over seeds of each run's peak (or final) score. Its standard error is
  ``max(std_seeds / sqrt(m), SE_eval)``: the spread across the m seeds, but never below the evaluation's own
  noise (the seeds' avg@k standard errors combined, :func:`stable_verl.pipeline.compare.combined_stderr`).
* **"A beats B"** (:func:`better`): held when ``mean_A - mean_B > Z * SE_diff`` with
  ``SE_diff = sqrt(SE_A^2 + SE_B^2)`` and Z = 2; not held when B beats A by the same margin; inconclusive in
  between, or when either arm has fewer than ``MIN_SEEDS`` = 2 seeds (a single curve cannot separate arms from
  seed noise), or when an arm is missing from the grid.
* **"A is at least as good as B"** (:func:`at_least`): not held when B beats A by ``Z * SE_diff``; held only
  when the interval excludes a loss larger than ``EQUIV_MARGIN`` = 0.02 score points
  (``mean_A - mean_B - Z * SE_diff >= -EQUIV_MARGIN``); inconclusive otherwise or with < 2 seeds.
* **"arm X collapses"** (:func:`collapses`): held when every seed of X collapsed (and, where a stable reference
  arm is given, no seed of it collapsed, or X collapsed earlier in every pairing); not held when >= 2 seeds ran
  and none collapsed; inconclusive otherwise.
* **"R2 becomes unstable at larger N"**: a run is *unstable* when it collapsed or its final score is below its
  peak by more than Z times the two evaluations' combined standard error. Held when, at the largest N >= 4, at
  least half of R2's seeds (>= 2) are unstable while R3's are not; not held when >= 2 seeds ran and no R2 run is.
* **"Stable runs reach similar peaks across N"**: per N, the best arm none of whose seeds collapsed. Not held when
  two N differ by more than Z * SE_diff; held when every pair is within the margin even at the interval's edge
  (``|diff| + Z * SE_diff <= EQUIV_MARGIN``, twice that with more than two N); inconclusive otherwise.
* **"Different inits converge"** is the cold-start flow's claim; a grid of one init reports it inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stable_verl.pipeline.compare import combined_stderr

Z = 2.0
"""Differences within Z standard errors are noise (about a 95% interval)."""
MIN_SEEDS = 2
"""Fewer seeds per arm than this: no claim about arms can be held or rejected."""
EQUIV_MARGIN = 0.02
"""Largest score difference (avg@k, 0..1) that still counts as 'as good as'."""

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
    collapse_step: int | None = None
    """First step with ``stability/collapse`` == 1; None: never collapsed."""
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
    def unstable(self) -> bool:
        """Collapsed, or the final score fell below the peak by more than Z combined standard errors."""
        if self.collapse_step is not None:
            return True
        se = math.sqrt(self.peak_stderr**2 + self.final_stderr**2)
        return bool(self.scores) and not math.isnan(se) and self.peak - self.final > Z * se


@dataclass(frozen=True)
class ArmScore:
    """An arm's peak (or final) score at one N over its seeds."""

    arm: str
    n: int
    mean: float
    stderr: float
    """max(std across seeds / sqrt(seeds), the evaluation's SE of the mean); NaN when unknown."""
    seeds: int

    def __str__(self) -> str:
        se = "n/a" if math.isnan(self.stderr) else f"{self.stderr:.3f}"
        return f"{self.arm}@N={self.n} {self.mean:.3f} (SE {se}, {self.seeds} seed{'s' * (self.seeds != 1)})"


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    """HELD, NOT_HELD or INCONCLUSIVE."""
    evidence: str
    """The numbers and seed counts the verdict rests on, or why there are none."""
    seeds: int = 0
    """Fewest seeds of any arm the verdict compared (0: none ran)."""


def arm_score(runs: Sequence[RunSummary], arm: str, n: int, which: str = "peak") -> ArmScore | None:
    """``which`` ('peak' or 'final') of ``arm`` at ``n``, over its seeds; None when the grid has no such run."""
    mine = [r for r in runs if r.arm == arm and r.n == n and r.scores]
    if not mine:
        return None
    values = [getattr(r, which) for r in mine]
    eval_se = combined_stderr([getattr(r, f"{which}_stderr") for r in mine])
    seed_se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    stderr = max((s for s in (seed_se, eval_se) if not math.isnan(s)), default=math.nan)
    return ArmScore(arm, n, statistics.fmean(values), stderr, len(mine))


def _diff(a: ArmScore, b: ArmScore) -> tuple[float, float]:
    se = math.sqrt(a.stderr**2 + b.stderr**2) if not (math.isnan(a.stderr) or math.isnan(b.stderr)) else math.nan
    return a.mean - b.mean, se


def _missing(claim: str, *scores: tuple[str, ArmScore | None]) -> Verdict | None:
    absent = [name for name, s in scores if s is None]
    if absent:
        return Verdict(claim, INCONCLUSIVE, f"not in this grid: {', '.join(absent)}")
    few = min(s.seeds for _, s in scores)  # type: ignore[union-attr]
    if few < MIN_SEEDS:
        evidence = "; ".join(str(s) for _, s in scores)
        return Verdict(claim, INCONCLUSIVE, f"{evidence}; fewer than {MIN_SEEDS} seeds", few)
    return None


@dataclass(frozen=True)
class _Difference:
    """a - b with the standard error of the difference, the evidence text and the fewest seeds compared."""

    diff: float
    se: float
    evidence: str
    seeds: int


def _difference(
    claim: str, a: ArmScore | None, b: ArmScore | None, label_a: str, label_b: str, extra: str = ""
) -> Verdict | _Difference:
    """The early verdict (an arm missing, too few seeds, SE unknown), else the difference to judge."""
    early = _missing(claim, (label_a, a), (label_b, b))
    if early:
        return early
    diff, se = _diff(a, b)  # type: ignore[arg-type]
    evidence = f"{a} vs {b}: diff {diff:+.3f}, {Z:g} SE = {Z * se:.3f}{extra}"
    seeds = min(a.seeds, b.seeds)  # type: ignore[union-attr]
    if math.isnan(se):
        return Verdict(claim, INCONCLUSIVE, f"{evidence} (standard error unknown)", seeds)
    return _Difference(diff, se, evidence, seeds)


def better(claim: str, a: ArmScore | None, b: ArmScore | None, label_a: str = "A", label_b: str = "B") -> Verdict:
    """'a beats b': held / not held outside Z * SE_diff, inconclusive inside it or with < MIN_SEEDS seeds."""
    d = _difference(claim, a, b, label_a, label_b)
    if isinstance(d, Verdict):
        return d
    if d.diff > Z * d.se:
        return Verdict(claim, HELD, d.evidence, d.seeds)
    if -d.diff > Z * d.se:
        return Verdict(claim, NOT_HELD, d.evidence, d.seeds)
    return Verdict(claim, INCONCLUSIVE, f"{d.evidence} (within noise)", d.seeds)


def at_least(claim: str, a: ArmScore | None, b: ArmScore | None, label_a: str = "A", label_b: str = "B") -> Verdict:
    """'a is at least as good as b': not held if b beats a; held if a loses at most EQUIV_MARGIN at the interval's
    lower edge; otherwise inconclusive (or with < MIN_SEEDS seeds)."""
    d = _difference(claim, a, b, label_a, label_b, extra=f", margin {EQUIV_MARGIN:g}")
    if isinstance(d, Verdict):
        return d
    if -d.diff > Z * d.se:
        return Verdict(claim, NOT_HELD, d.evidence, d.seeds)
    if d.diff - Z * d.se >= -EQUIV_MARGIN:
        return Verdict(claim, HELD, d.evidence, d.seeds)
    return Verdict(claim, INCONCLUSIVE, f"{d.evidence} (interval too wide)", d.seeds)


def _collapse_text(runs: Sequence[RunSummary]) -> str:
    steps = [("-" if r.collapse_step is None else str(r.collapse_step)) for r in runs]
    return f"{runs[0].arm}@N={runs[0].n}: collapse steps [{', '.join(steps)}]"


def collapses(
    claim: str, runs: Sequence[RunSummary], arms: Sequence[str], ns: Sequence[int], stable: Sequence[str] = ()
) -> Verdict:
    """'every arm in ``arms`` collapses at every N in ``ns``' (earlier than the ``stable`` arms, if given)."""
    groups = [[r for r in runs if r.arm == arm and r.n == n] for n in ns for arm in arms]
    groups = [g for g in groups if g]
    refs = [[r for r in runs if r.arm == arm and r.n == n] for n in ns for arm in stable]
    refs = [g for g in refs if g]
    if not groups:
        return Verdict(claim, INCONCLUSIVE, f"not in this grid: {', '.join(arms)} at N in {list(ns)}")
    seeds = min(len(g) for g in groups)
    evidence = "; ".join(_collapse_text(g) for g in groups + refs)
    collapsed = [r for g in groups for r in g if r.collapse_step is not None]
    if seeds >= MIN_SEEDS and not collapsed:
        return Verdict(claim, NOT_HELD, f"{evidence} (none collapsed)", seeds)
    if seeds < MIN_SEEDS:
        return Verdict(claim, INCONCLUSIVE, f"{evidence}; fewer than {MIN_SEEDS} seeds", seeds)
    if len(collapsed) < sum(len(g) for g in groups):
        return Verdict(claim, INCONCLUSIVE, f"{evidence} (not every seed collapsed)", seeds)
    for ref in refs:  # a stable arm that collapsed no later than the ablation at the same N and seed
        for r in ref:
            same = [a for a in collapsed if a.n == r.n and a.seed == r.seed]
            if r.collapse_step is not None and any(a.collapse_step >= r.collapse_step for a in same):  # type: ignore[operator]
                return Verdict(claim, INCONCLUSIVE, f"{evidence} (a reference arm collapsed as early)", seeds)
    return Verdict(claim, HELD, evidence, seeds)


def r2_unstable_at_large_n(claim: str, runs: Sequence[RunSummary]) -> Verdict:
    """R2's runs at the largest N >= 4 are unstable (collapse or fall from their peak) while R3's are not."""
    large = sorted({r.n for r in runs if r.n >= 4 and r.arm == R2})
    if not large:
        return Verdict(claim, INCONCLUSIVE, f"not in this grid: {R2} at N >= 4")
    n = large[-1]
    r2 = [r for r in runs if r.arm == R2 and r.n == n]
    r3 = [r for r in runs if r.arm == R3 and r.n == n]
    unstable = [r for r in r2 if r.unstable]
    evidence = (
        f"{R2}@N={n}: {len(unstable)}/{len(r2)} seeds unstable; "
        f"{R3}@N={n}: {sum(r.unstable for r in r3)}/{len(r3)} unstable"
    )
    if len(r2) < MIN_SEEDS:
        return Verdict(claim, INCONCLUSIVE, f"{evidence}; fewer than {MIN_SEEDS} seeds", len(r2))
    if not unstable:
        return Verdict(claim, NOT_HELD, evidence, len(r2))
    if 2 * len(unstable) >= len(r2) and r3 and not any(r.unstable for r in r3):
        return Verdict(claim, HELD, evidence, min(len(r2), len(r3)))
    return Verdict(claim, INCONCLUSIVE, evidence, len(r2))


def similar_stable_peaks(claim: str, runs: Sequence[RunSummary]) -> Verdict:
    """Per N, the best arm with no collapsed seed; its peaks agree across N (see the module's rules)."""
    best: list[ArmScore] = []
    for n in sorted({r.n for r in runs}):
        stable_arms = {r.arm for r in runs if r.n == n} - {r.arm for r in runs if r.n == n and r.collapse_step}
        scores = [s for arm in sorted(stable_arms) if (s := arm_score(runs, arm, n)) is not None]
        if scores:
            best.append(max(scores, key=lambda s: s.mean))
    if len(best) < 2:
        return Verdict(claim, INCONCLUSIVE, "fewer than two N with a stable arm")
    evidence = "; ".join(str(s) for s in best)
    seeds = min(s.seeds for s in best)
    if seeds < MIN_SEEDS:
        return Verdict(claim, INCONCLUSIVE, f"{evidence}; fewer than {MIN_SEEDS} seeds", seeds)
    pairs = [_diff(a, b) for i, a in enumerate(best) for b in best[i + 1 :]]
    if any(math.isnan(se) for _, se in pairs):
        return Verdict(claim, INCONCLUSIVE, f"{evidence} (standard error unknown)", seeds)
    if any(abs(d) > Z * se for d, se in pairs):
        return Verdict(claim, NOT_HELD, f"{evidence} (two N differ by more than {Z:g} SE)", seeds)
    margin = EQUIV_MARGIN if len(best) == 2 else 2 * EQUIV_MARGIN
    if all(abs(d) + Z * se <= margin for d, se in pairs):
        return Verdict(claim, HELD, evidence, seeds)
    return Verdict(claim, INCONCLUSIVE, f"{evidence} (within noise, interval wider than {margin:g})", seeds)


def _all_of(claim: str, parts: Sequence[Verdict]) -> Verdict:
    """Held when every part is; not held when any part is not; else inconclusive."""
    evidence = " | ".join(p.evidence for p in parts)
    seeds = min((p.seeds for p in parts), default=0)
    if parts and all(p.verdict == HELD for p in parts):
        return Verdict(claim, HELD, evidence, seeds)
    if any(p.verdict == NOT_HELD for p in parts):
        return Verdict(claim, NOT_HELD, evidence, seeds)
    return Verdict(claim, INCONCLUSIVE, evidence or "not in this grid", seeds)


def _ns(runs: Sequence[RunSummary], pred: Callable[[int], bool]) -> list[int]:
    return sorted({r.n for r in runs if pred(r.n)})


@dataclass
class Claim:
    """One sentence of paper.md §6.5 and the rule that judges it."""

    text: str
    rule: Callable[[str, Sequence[RunSummary]], Verdict] = field(repr=False)


def _off_policy_r2_vs_r3(winner: str, loser: str, ns: Callable[[int], bool]):
    def rule(claim: str, runs: Sequence[RunSummary]) -> Verdict:
        chosen = _ns(runs, ns)
        if not chosen:
            return Verdict(claim, INCONCLUSIVE, "no such N in this grid")
        parts = [better(claim, arm_score(runs, winner, n), arm_score(runs, loser, n), winner, loser) for n in chosen]
        return _all_of(claim, parts)

    return rule


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "On-policy (N=1): MiniRL >= +R3 (peak score)",
        lambda c, runs: at_least(c, arm_score(runs, MINIRL, 1), arm_score(runs, R3, 1), MINIRL, R3),
    ),
    Claim(
        "On-policy (N=1): +R3 > +len-norm (peak score)",
        lambda c, runs: better(c, arm_score(runs, R3, 1), arm_score(runs, LENNORM, 1), R3, LENNORM),
    ),
    Claim(
        "On-policy (N=1): the w/o-train-infer-IS arms collapse (entropy falls while KL rises)",
        lambda c, runs: collapses(c, runs, [NO_IS, R3_NO_IS], [1], stable=[MINIRL]),
    ),
    Claim(
        "Off-policy (N>=2): the no-clip arms collapse early",
        lambda c, runs: collapses(c, runs, [NOCLIP, R2_NOCLIP], _ns(runs, lambda n: n >= 2), stable=[R2, R3]),
    ),
    Claim("Off-policy: R2 beats R3 at N=2 (peak score)", _off_policy_r2_vs_r3(R2, R3, lambda n: n == 2)),
    Claim("Off-policy: R3 beats R2 at N=4 and N=8 (peak score)", _off_policy_r2_vs_r3(R3, R2, lambda n: n >= 4)),
    Claim("Off-policy: R2 becomes unstable at larger N", r2_unstable_at_large_n),
    Claim("Stable runs at different N reach similar peaks", similar_stable_peaks),
    Claim(
        "Different inits converge",
        lambda c, runs: Verdict(c, INCONCLUSIVE, "one init per grid: judged by the cold-start comparison"),
    ),
)


def judge(runs: Sequence[RunSummary]) -> list[Verdict]:
    """Every claim of paper.md §6.5, judged on ``runs``."""
    return [claim.rule(claim.text, runs) for claim in CLAIMS]
