"""The stress pilot's results: each run's outcome verdict with its mechanism tags, and its curves, from the store.

    python -m stable_verl.reports.pilot_page --store artifacts --out docs/results/stress-pilot P1=<run id> [...]
    python -m stable_verl.reports.pilot_page --store artifacts --export record/ <run id> [...]

Per run (``label=run_id``; the label names the rung, e.g. ``P1``): the per-step training reward in passes of
W = n_rl_train / train_batch_size steps (from the run's ``config.yaml``), judged by ``core.collapse_verdict``; the
mechanism tags of ``core.collapse_tags`` with their steps; and the held-out check (``collapse_verdict.heldout_fall``:
the best checkpoint up to the onset against any later one, paired per prompt from ``samples.jsonl`` where both exist,
else the unpaired SE; the run's init, when the store holds its evaluation, is step 0, so a fall before the first
checkpoint is measured from where the run started). Output: ``results.md`` (the verdict table) and
``plots/pilot.png`` (reward pass means with a +-sigma band, held-out avg@k with a +-1 SE band, pass-median
train-inference KL, pass-mean response length). It only reads the store.

``--export DEST`` copies what the page reads, and no more, into the folder store DEST: each run's config.yaml and
metrics.jsonl, and its (and its init's) held-out results.json with ``samples.jsonl`` cut to one row per prompt (the
mean accuracy of its k samples, all that the paired differences use). A long experiment's record then survives the
machine it ran on in a few hundred KB a run, and the page regenerates from it with ``--store DEST``; for grid cells,
so does the stability grid's own report (``stable-verl comparisons from-record``, :mod:`.grid_from_record`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.layout import parse_step_dir
from stable_verl.core import collapse_tags as ct
from stable_verl.core import collapse_verdict as cv
from stable_verl.core import significance as sig
from stable_verl.core.metric_keys import KL_K3_KEYS, LENGTH_KEYS, REWARD_KEYS
from stable_verl.reports import claims
from stable_verl.reports.grid_tables import claims_lines

BENCHMARK = "bench_id"


@dataclass
class PilotRun:
    label: str
    run_id: str
    rows: list[dict]
    w: int
    """Steps per pass over the RL prompts."""
    max_response_length: int | None = None
    heldout: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Checkpoint step -> (avg@k, its SE across prompts)."""
    prompts: dict[int, dict[str, float]] = field(default_factory=dict)
    """Checkpoint step -> prompt -> mean accuracy of its samples (for paired differences)."""
    config: dict = field(default_factory=dict)
    """The run's config.yaml."""


def load_run(store: ArtifactStore, label: str, run_id: str, benchmark: str = BENCHMARK) -> PilotRun:
    """A run's metrics, regime (config.yaml) and evaluations from the store."""
    layout = RunLayout(store, run_id)
    config = yaml.safe_load(store.read_text(layout.config_yaml))
    w = cv.steps_per_pass(config["task"]["n_rl_train"], config["rl"]["train_batch_size"])
    run = PilotRun(label, run_id, layout.read_metrics(), w, config["rl"].get("max_response_length"), config=config)
    init = config.get("init_run")
    if init:
        _load_evaluations(RunLayout(store, init), benchmark, run, as_step=0)
    _load_evaluations(layout, benchmark, run)
    return run


def _load_evaluations(layout: RunLayout, benchmark: str, run: PilotRun, as_step: int | None = None) -> None:
    """``layout``'s evaluations into ``run.heldout`` / ``run.prompts``; with ``as_step``, only its last one, there."""
    store = layout.store
    found: list[tuple[int, str]] = []
    for rel in store.glob(f"{layout.prefix}/eval/global_step_*/{benchmark}/results.json"):
        step = parse_step_dir(rel.split("/")[-3])
        if step is not None:
            found.append((step, rel))
    if as_step is not None:
        found = sorted(found)[-1:]
    for step, rel in found:
        results = store.read_json(rel)
        metric = next((k for k in results if k.startswith("avg@") and not k.endswith("_stderr")), None)
        if metric is None:
            continue
        se = results.get(f"{metric}_stderr")
        at = step if as_step is None else as_step
        run.heldout[at] = (float(results[metric]), math.nan if se is None else float(se))
        samples = layout.eval_samples(step, benchmark)
        if store.exists(samples):
            run.prompts[at] = sig.per_prompt_means(store.read_jsonl(samples))


@dataclass(frozen=True)
class PilotVerdict:
    verdict: cv.RunVerdict
    tags: tuple[ct.Tag, ...]
    heldout: cv.HeldoutFall | None
    paired: bool


def judge(run: PilotRun) -> PilotVerdict:
    steps = max((int(r["step"]) for r in run.rows), default=0)
    rewards = ct.series(run.rows, REWARD_KEYS, steps)
    if rewards is None:
        raise ValueError(f"run {run.run_id} logged none of {list(REWARD_KEYS)}: no outcome verdict")
    v = cv.judge_rewards(rewards, run.w)
    down = None if v.onset_step is None else [k * run.w + 1 >= v.onset_step for k in range(v.passes)]
    tags = tuple(ct.collapse_tags(run.rows, run.w, down, run.max_response_length))
    ckpts = sorted(run.heldout)
    scores = [run.heldout[s][0] for s in ckpts]
    paired = all(s in run.prompts for s in ckpts)

    def diff_se(i: int, j: int) -> float:
        if paired:
            return sig.paired_prompts(run.prompts[ckpts[i]], run.prompts[ckpts[j]]).se
        return math.hypot(run.heldout[ckpts[i]][1], run.heldout[ckpts[j]][1])

    fall = cv.heldout_fall(ckpts, scores, diff_se, until=v.onset_step) if ckpts else None
    return PilotVerdict(v, tags, fall, paired)


def results_lines(runs: Sequence[PilotRun], verdicts: Sequence[PilotVerdict]) -> list[str]:
    lines = [
        "| rung | run | verdict | onset step | fall (delta) | held-out | tags (first step) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, pv in zip(runs, verdicts, strict=True):
        v = pv.verdict
        fall = "-" if math.isnan(v.fall) else f"{v.fall:.3f} ({v.delta:.3f})"
        if pv.heldout is None:
            held = "no checkpoint after the best" if run.heldout else "not evaluated"
        else:
            kind = "paired" if pv.paired else "unpaired"
            held = f"{pv.heldout} {kind}: {'confirms' if pv.heldout.confirmed else 'does not confirm'}"
        tags = ", ".join(str(t) for t in pv.tags) or "-"
        lines.append(
            f"| {run.label} | {run.run_id} | **{v.verdict}** | {v.onset_step or '-'} | {fall} | {held} | {tags} |"
        )
    lines += [
        "",
        f"Verdict: stable_verl/core/collapse_verdict.py (passes of W steps; delta = max({cv.DELTA_FLOOR:g}, "
        f"{cv.DELTA_SIGMAS:g} sigma)); tags: stable_verl/core/collapse_tags.py, never a verdict alone; held-out: "
        f"the best checkpoint up to the onset (the init as step 0) against the lowest later one, confirmed beyond "
        f"{cv.HELDOUT_Z:g} SE.",
    ]
    return lines


def arm_tally_lines(runs: Sequence[PilotRun], verdicts: Sequence[PilotVerdict]) -> list[str]:
    """Per arm (the label before ``/``: ``pg_stale/s1``), its verdict counts and final held-out score, and a
    one-sided Fisher test that the first arm (the unprotected reference) collapses more often than each other arm,
    with the smallest collapse rate of the reference that its seeds could show, and, for grid cells, the final
    held-out difference from the reference (``claims.arm_difference``: seed SD pooled over the arms, t-interval).
    Empty when no arm has two runs."""
    arms: dict[str, list[tuple[PilotRun, PilotVerdict]]] = {}
    for run, pv in zip(runs, verdicts, strict=True):
        arms.setdefault(run.label.split("/")[0], []).append((run, pv))
    if all(len(members) < 2 for members in arms.values()):
        return []
    lines = [
        "| arm | runs | collapsed | recovered | censored | stable | final held-out (mean, SD over seeds) "
        "| Fisher p: reference collapses more | reference rate detectable | final minus the reference's [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summaries = [  # the arm of a label, not the recipe: `pg_stale@native` is not `pg_stale`
        replace(x, arm=run.label.split("/")[0])
        for run, x in zip(runs, map(run_summary, runs, verdicts), strict=True)
        if x is not None
    ]
    ref_hits, ref_n, ref_cell, ref_arm = None, 0, None, ""
    for arm, members in arms.items():
        kinds = (cv.COLLAPSED, cv.RECOVERED, cv.CENSORED, cv.STABLE)
        counts = {k: sum(pv.verdict.verdict == k for _, pv in members) for k in kinds}
        finals = [run.heldout[max(run.heldout)][0] for run, _ in members if run.heldout]
        held = "-"
        if finals:
            sd = f"{np.std(finals, ddof=1):.3f}" if len(finals) > 1 else "-"
            held = f"{np.mean(finals):.3f}, {sd} (n={len(finals)})"
        fisher = mdd = diff = "reference"
        cell = grid_cell(members[0][0])
        if ref_hits is None:
            ref_hits, ref_n, ref_cell, ref_arm = counts[cv.COLLAPSED], len(members), cell, arm
        else:
            d = (
                "-"
                if cell is None or ref_cell is None
                else claims.arm_difference_cells(summaries, (arm, cell[1]), (ref_arm, ref_cell[1]))
            )
            diff = d if isinstance(d, str) else f"{d.estimate:+.3f} [{d.ci()[0]:+.3f}, {d.ci()[1]:+.3f}]"
            fisher = f"{sig.fisher_one_sided(ref_hits, ref_n, counts[cv.COLLAPSED], len(members)):.3f}"
            rate = sig.fisher_min_detectable(ref_n, len(members))
            mdd = "none reachable" if rate is None else f"{rate:.2f}"
        n = len(members)
        row = f"| {arm} | {n} | {counts[cv.COLLAPSED]} | {counts[cv.RECOVERED]} | {counts[cv.CENSORED]} "
        lines.append(row + f"| {counts[cv.STABLE]} | {held} | {fisher} | {mdd} | {diff} |")
    return lines


def grid_cell(run: PilotRun) -> tuple[str, int, int] | None:
    """(arm, N, seed) of a stability-grid cell, from its config; None for a run the grid did not make."""
    return config_cell(run.config)


def config_cell(config: dict) -> tuple[str, int, int] | None:
    """(arm, N, seed) of the grid cell a run's ``config.yaml`` describes: its recipe, the N of its last
    ``minibatches=`` recipe override, its ``rl_seed``; None for a run the grid did not make."""
    rl = config.get("rl", {})
    ns = [int(o.split("=", 1)[1]) for o in rl.get("recipe_overrides") or [] if o.startswith("minibatches=")]
    if not ns or "rl_seed" not in config:
        return None
    return rl["recipe"], ns[-1], int(config["rl_seed"])


def run_summary(run: PilotRun, pv: PilotVerdict) -> claims.RunSummary | None:
    """A grid cell as the claims read it: its RL checkpoints' held-out scores (the init left out), its outcome
    verdict and tags, and the paired SE of its best-to-last fall; None for a run that is not a grid cell."""
    cell = grid_cell(run)
    if cell is None:
        return None
    steps = sorted(s for s in run.heldout if s > 0)
    scores = [run.heldout[s][0] for s in steps]
    fall_se = math.nan
    if steps and all(s in run.prompts for s in steps):
        best = steps[scores.index(max(scores))]
        if best != steps[-1]:
            fall_se = sig.paired_prompts(run.prompts[best], run.prompts[steps[-1]]).se
    return claims.RunSummary(
        *cell,
        steps=tuple(steps),
        scores=tuple(scores),
        stderrs=tuple(run.heldout[s][1] for s in steps),
        verdict=pv.verdict.verdict,
        onset_step=pv.verdict.onset_step,
        tags=tuple(str(t) for t in pv.tags),
        fall_se=fall_se,
        run_id=run.run_id,
    )


def rollout_precision(run: PilotRun) -> str:
    """The precision vLLM's weights were rounded to for sampling (``rl.rollout_precision``): cells at different
    precisions are different regimes, so no claim compares them."""
    return config_precision(run.config)


def config_precision(config: dict) -> str:
    """``rl.rollout_precision`` of a run's ``config.yaml`` (native when unset)."""
    return str(config.get("rl", {}).get("rollout_precision") or "native")


def claim_lines(runs: Sequence[PilotRun], verdicts: Sequence[PilotVerdict]) -> list[str]:
    """The paper's claims (``reports.claims``, the stability grid's rules) judged on the grid cells among the runs
    that share the first grid cell's rollout precision (the others are named, not judged); the claims these cells
    cannot address are named in one line. Empty when no run is a grid cell."""
    cells = [(run, s) for run, s in zip(runs, map(run_summary, runs, verdicts), strict=True) if s is not None]
    if not cells:
        return []
    regime = rollout_precision(cells[0][0])
    summaries = [s for run, s in cells if rollout_precision(run) == regime]
    apart = [f"{run.label} ({rollout_precision(run)})" for run, _ in cells if rollout_precision(run) != regime]
    judged = claims.judge(summaries)
    absent = ("not in this grid", "no such N", "one init per grid")
    shown = [v for v in judged if not v.evidence.startswith(absent)]
    lines = claims_lines(shown) if shown else ["No claim of the paper can be addressed by these cells."]
    others = [v.claim for v in judged if v not in shown]
    if others:
        lines += ["", "Not addressed by these cells (arms or N they do not run): " + "; ".join(others) + "."]
    if apart:
        lines += [
            "",
            f"Not in the claims (another rollout precision than the first cell's {regime}): " + ", ".join(apart) + ".",
        ]
    return lines


def pilot_figure(runs: Sequence[PilotRun], verdicts: Sequence[PilotVerdict]) -> plt.Figure:
    """Reward pass means (+-sigma), held-out avg@k (+-1 SE), pass-median KL (log), pass-mean length, per run."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for i, (run, pv) in enumerate(zip(runs, verdicts, strict=True)):
        color, v = f"C{i}", pv.verdict
        x = np.arange(v.passes) * run.w + run.w  # a pass plotted at its last step
        means = np.array(v.pass_means)
        label = f"{run.label} {run.run_id}: {v.verdict}"
        axes[0].plot(x, means, marker="o", ms=3, color=color, label=label)
        if not math.isnan(v.sigma):
            axes[0].fill_between(x, means - v.sigma, means + v.sigma, color=color, alpha=0.18, linewidth=0)
        if v.onset_step is not None:
            axes[0].axvline(v.onset_step, color=color, ls=":", lw=1)
        if run.heldout:
            steps = sorted(run.heldout)
            score = np.array([run.heldout[s][0] for s in steps])
            se = np.nan_to_num(np.array([run.heldout[s][1] for s in steps]))
            axes[1].plot(steps, score, marker="o", ms=3, color=color)
            axes[1].fill_between(steps, score - se, score + se, color=color, alpha=0.18, linewidth=0)
        steps_total = max(int(r["step"]) for r in run.rows)
        for ax, keys, reduce in ((axes[2], KL_K3_KEYS, np.nanmedian), (axes[3], LENGTH_KEYS, np.nanmean)):
            values = ct.series(run.rows, keys, steps_total)
            if values is not None and v.passes:
                per_pass = values[: v.passes * run.w].reshape(v.passes, run.w)
                ax.plot(x, reduce(per_pass, axis=1), marker="o", ms=3, color=color)
    titles = ("training reward, pass means (+-sigma)", "held-out avg@k (+-1 SE)", "train-inference k3, pass median")
    for ax, title in zip(axes, (*titles, "response length, pass mean"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if axes[2].lines:
        axes[2].set_yscale("log")
    for ax in axes[1:]:
        if not ax.lines:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_results(store: ArtifactStore, labelled: Sequence[tuple[str, str]], out_dir: Path) -> Path:
    """``results.md`` and ``plots/pilot.png`` in ``out_dir`` for (label, run id) pairs; returns results.md."""
    runs = [load_run(store, label, run_id) for label, run_id in labelled]
    verdicts = [judge(r) for r in runs]
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    fig = pilot_figure(runs, verdicts)
    fig.savefig(out_dir / "plots" / "pilot.png", dpi=110)
    plt.close(fig)
    tally = arm_tally_lines(runs, verdicts)
    lines = ["## Results", "", *results_lines(runs, verdicts), ""]
    lines += ["## Per arm", "", *tally, ""] if tally else []
    judged = claim_lines(runs, verdicts)
    lines += ["## Claims (final scores; rules of stable_verl/reports/claims.py)", "", *judged, ""] if judged else []
    lines += ["![pilot curves](plots/pilot.png)", ""]
    path = out_dir / "results.md"
    path.write_text("\n".join(lines))
    return path


def export_runs(store: ArtifactStore, run_ids: Sequence[str], dest: ArtifactStore) -> list[str]:
    """Copy what :func:`load_run` reads for ``run_ids`` (and their inits) into ``dest``; returns the files written."""
    written: list[str] = []
    for run_id in run_ids:
        layout = RunLayout(store, run_id)
        config = yaml.safe_load(store.read_text(layout.config_yaml))
        for rel in (layout.config_yaml, layout.metrics_jsonl):
            dest.write_text(rel, store.read_text(rel))
            written.append(rel)
        sources = [(layout, False)]
        if config.get("init_run"):
            sources.append((RunLayout(store, config["init_run"]), True))  # the init: its last evaluation only
        for run, last_only in sources:
            found = sorted(
                (parse_step_dir(rel.split("/")[-3]), rel)
                for rel in store.glob(f"{run.prefix}/eval/global_step_*/{BENCHMARK}/results.json")
            )
            for step, rel in found[-1:] if last_only else found:
                results = store.read_json(rel)
                if "model" in results:  # relative to the store: no machine's folder in the record
                    results["model"] = run.checkpoint(step)
                dest.write_json(rel, results)
                samples = run.eval_samples(step, BENCHMARK)
                means = sig.per_prompt_means(store.read_jsonl(samples)) if store.exists(samples) else {}
                if means:
                    dest.write_jsonl(samples, [{"prompt": p, "acc": m} for p, m in sorted(means.items())])
                written += [rel, samples] if means else [rel]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stable_verl.reports.pilot_page", description=__doc__)
    parser.add_argument(
        "runs",
        nargs="+",
        help="LABEL=RUN_ID, e.g. P1=rl-pg-stale-0d5dfadd; ARM/SEED labels add a per-arm tally (with --export: RUN_ID)",
    )
    parser.add_argument("--store", default=None, help="artifact root (default $STABLE_VERL_ARTIFACT_ROOT)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/stress-pilot"))
    parser.add_argument("--export", default=None, metavar="DEST", help="copy the runs' small record into DEST")
    args = parser.parse_args(argv)
    store = ArtifactStore.from_env(args.store)
    if args.export is not None:
        written = export_runs(store, args.runs, ArtifactStore(args.export))
        print(f"{len(written)} file(s) of {len(args.runs)} run(s) -> {args.export}")
        return 0
    bad = [r for r in args.runs if r.count("=") != 1]
    if bad:
        print(f"pilot_page: error: give each run as LABEL=RUN_ID, got {bad[0]!r}", file=sys.stderr)
        return 2
    print(write_results(store, [tuple(r.split("=", 1)) for r in args.runs], args.out))  # type: ignore[misc]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
