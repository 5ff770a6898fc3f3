"""The stress pilot's results from a (local) store: verdict, tags, paired held-out confirmation, the files."""

from __future__ import annotations

import math

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.reports import pilot_page

# 4 prompts; per-prompt mean accuracy at each checkpoint (2 samples each)
PROMPTS = {
    4: {"a": 1.0, "b": 1.0, "c": 0.5, "d": 0.5},
    8: {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5},
    12: {"a": 0.0, "b": 0.5, "c": 0.0, "d": 0.0},
    16: {"a": 0.0, "b": 0.0, "c": 0.5, "d": 0.0},
}


def _samples(means: dict[str, float]) -> list[dict]:
    # a mean of 0.5 is one right and one wrong sample
    return [{"prompt": p, "acc": float(i < round(2 * m))} for p, m in means.items() for i in range(2)]


def _store(
    tmp_path,
    run_id: str = "rl-pg-stale-x",
    with_samples: bool = True,
    falls: bool = True,
    cell: tuple | None = None,
    precision: str | None = None,
) -> ArtifactStore:
    """A run in a local store; ``cell`` = (recipe, N, seed) makes it a stability-grid cell, sampled at ``precision``
    (``rl.rollout_precision``; unset: native)."""
    store = ArtifactStore(str(tmp_path / "store"))
    layout = RunLayout(store, run_id)
    # W = 8 prompts / 4 per batch = 2 steps a pass; 16 steps = 8 passes
    config: dict = {"task": {"n_rl_train": 8}, "rl": {"train_batch_size": 4, "max_response_length": 48}}
    if cell is not None:
        config["rl"] |= {"recipe": cell[0], "recipe_overrides": [f"minibatches={cell[1]}"]}
        config["rl_seed"] = cell[2]
    if precision is not None:
        config["rl"]["rollout_precision"] = precision
    layout.write_config(config)
    rows = [
        {
            "step": s,
            "reward/acc": 0.6 if s <= 8 or not falls else 0.2,
            "actor/train_infer_kl_k3": 1e-4 if s <= 8 else 1e-2,
            "response_length/mean": 20.0 if s <= 8 else 47.0,
        }
        for s in range(1, 17)
    ]
    layout.write_metrics(rows)
    for step, means in PROMPTS.items():
        values = list(means.values())
        mean = sum(values) / 4
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
        store.write_json(layout.eval_results(step, "bench_id"), {"avg@2": mean, "avg@2_stderr": sd / 2})
        if with_samples:
            store.write_jsonl(layout.eval_samples(step, "bench_id"), _samples(means))
    return store


def test_pilot_verdict_tags_and_paired_heldout(tmp_path):
    run = pilot_page.load_run(_store(tmp_path), "P1", "rl-pg-stale-x")
    assert run.w == 2 and sorted(run.heldout) == [4, 8, 12, 16] and run.prompts[8] == PROMPTS[8]
    pv = pilot_page.judge(run)
    # pass means 0.6 x 4 then 0.2 x 4: onset at pass 4 = step 9, fall 0.4 > delta 0.10 (no noise: the floor)
    assert (pv.verdict.verdict, pv.verdict.onset_step) == ("collapsed", 9)
    assert pv.verdict.fall == pytest.approx(0.4) and pv.verdict.delta == pytest.approx(0.10)
    # KL: reference = median of the 2 steps after warm-up (1e-4); pass 4 median 1e-2 > 1e-3 -> kl@9;
    # length 20 -> 47: > 2 x the previous pass and > 0.9 x 48 -> length@9
    assert [str(t) for t in pv.tags] == ["kl@9", "length@9"]
    # held-out: best up to step 9 is step 8 (0.875); lowest later step 12 (0.125). Paired d = [1, .5, 1, .5]:
    # mean 0.75, SD sqrt(1/12) = 0.2887, SE 0.1443 -> 0.75 > 2 x 0.1443: confirmed
    assert pv.paired and (pv.heldout.best_step, pv.heldout.step) == (8, 12)
    assert pv.heldout.fall == pytest.approx(0.75) and pv.heldout.se == pytest.approx(math.sqrt(1 / 12) / 2)
    assert pv.heldout.confirmed


def test_a_fall_before_the_first_checkpoint_is_measured_from_the_init(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    init = RunLayout(store, "sft-terse-x")
    # two evaluations of the init: only its last one (step 30) is the RL run's step 0
    for step, means in ((10, {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}), (30, {"a": 1.0, "b": 0.5, "c": 1.0, "d": 0.5})):
        store.write_json(init.eval_results(step, "bench_id"), {"avg@2": sum(means.values()) / 4})
        store.write_jsonl(init.eval_samples(step, "bench_id"), _samples(means))
    run_layout = RunLayout(store, "rl-pg-stale-y")
    run_layout.write_config({"init_run": "sft-terse-x", "task": {"n_rl_train": 8}, "rl": {"train_batch_size": 4}})
    # the reward falls at step 3, before the first checkpoint (step 4)
    run_layout.write_metrics([{"step": s, "reward/acc": 0.6 if s <= 2 else 0.1} for s in range(1, 17)])
    for step in (4, 8, 12, 16):
        store.write_json(run_layout.eval_results(step, "bench_id"), {"avg@2": 0.0})
        store.write_jsonl(run_layout.eval_samples(step, "bench_id"), _samples(dict.fromkeys("abcd", 0.0)))
    run = pilot_page.load_run(store, "s3", "rl-pg-stale-y")
    assert sorted(run.heldout) == [0, 4, 8, 12, 16] and run.heldout[0][0] == pytest.approx(0.75)
    pv = pilot_page.judge(run)
    assert pv.verdict.verdict == "collapsed" and pv.verdict.onset_step <= 3
    # best up to the onset is the init (step 0, 0.75); paired d = [1, .5, 1, .5] against every later checkpoint
    assert (pv.heldout.best_step, pv.heldout.fall) == (0, pytest.approx(0.75)) and pv.heldout.confirmed


def test_pilot_unpaired_without_samples_and_the_files(tmp_path):
    store = _store(tmp_path, with_samples=False)
    pv = pilot_page.judge(pilot_page.load_run(store, "P1", "rl-pg-stale-x"))
    # unpaired: SE(8) = sd([1,1,1,.5]) / 2 = 0.125, SE(12) = sd([0,.5,0,0]) / 2 = 0.125 -> hypot 0.1768
    assert not pv.paired and pv.heldout.se == pytest.approx(math.hypot(0.125, 0.125))
    out = tmp_path / "out"
    assert pilot_page.main(["P1=rl-pg-stale-x", "--store", store.uri(), "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    assert "| P1 | rl-pg-stale-x | **collapsed** | 9 | 0.400 (0.100) |" in text and "kl@9, length@9" in text
    assert (out / "plots" / "pilot.png").stat().st_size > 0


def test_pilot_refuses_a_malformed_run_argument(capsys):
    assert pilot_page.main(["rl-pg-stale-x"]) == 2
    assert "LABEL=RUN_ID" in capsys.readouterr().err


def test_per_arm_tally_counts_verdicts_and_tests_the_reference_arm(tmp_path):
    """ARM/SEED labels: two seeds of an arm that collapses (the reference) against two that stay: 2/2 vs 0/2 has
    one-sided Fisher p = C(2,2) C(2,0) / C(4,2) = 1/6, and with 2 seeds a side no reference rate reaches p < 0.05."""
    for run_id, falls in (("rl-a-1", True), ("rl-a-2", True), ("rl-b-1", False), ("rl-b-2", False)):
        store = _store(tmp_path, run_id, falls=falls)
    labelled = [("ref/s1", "rl-a-1"), ("ref/s2", "rl-a-2"), ("arm/s1", "rl-b-1"), ("arm/s2", "rl-b-2")]
    runs = [pilot_page.load_run(store, label, run_id) for label, run_id in labelled]
    lines = pilot_page.arm_tally_lines(runs, [pilot_page.judge(r) for r in runs])
    # every run's last checkpoint (step 16) scores mean(PROMPTS[16]) = 0.125
    assert lines[2] == "| ref | 2 | 2 | 0 | 0 | 0 | 0.125, 0.000 (n=2) | reference | reference | reference |"
    assert lines[3] == "| arm | 2 | 0 | 0 | 0 | 2 | 0.125, 0.000 (n=2) | 0.167 | none reachable | - |"
    assert pilot_page.arm_tally_lines(runs[:1], [pilot_page.judge(runs[0])]) == []  # one run an arm: no tally


def test_the_exported_record_gives_the_same_page_in_a_few_files(tmp_path):
    store = _store(tmp_path)
    init = RunLayout(store, "sft-terse-x")
    store.write_json(init.eval_results(30, "bench_id"), {"avg@2": 0.5, "model": "/scratch/of/this/machine"})
    store.write_jsonl(init.eval_samples(30, "bench_id"), _samples(dict.fromkeys("abcd", 0.5)))
    layout = RunLayout(store, "rl-pg-stale-x")
    layout.write_config(
        {"init_run": "sft-terse-x", "task": {"n_rl_train": 8}, "rl": {"train_batch_size": 4, "max_response_length": 48}}
    )
    dest = tmp_path / "record"
    assert pilot_page.main(["--store", str(tmp_path / "store"), "--export", str(dest), "rl-pg-stale-x"]) == 0
    exported = ArtifactStore(str(dest))
    a = pilot_page.load_run(store, "P1", "rl-pg-stale-x")
    b = pilot_page.load_run(exported, "P1", "rl-pg-stale-x")
    assert 0 in a.heldout and a.heldout == b.heldout and a.prompts == b.prompts and a.rows == b.rows
    assert pilot_page.judge(a) == pilot_page.judge(b)
    assert (
        exported.read_json(init.eval_results(30, "bench_id"))["model"] == "runs/sft-terse-x/checkpoints/global_step_30"
    )
    # one row per prompt instead of k
    assert len(exported.read_jsonl(RunLayout(exported, "rl-pg-stale-x").eval_samples(8, "bench_id"))) == 4


def test_grid_cells_get_the_claims_and_a_final_difference(tmp_path):
    """Cells of a grid (recipe, N=8, seed in their config) are judged by the stability grid's claim rules: 2 seeds
    of the no-clip arm against 2 of the clipped one. Every run's final score is mean(PROMPTS[16]) = 0.125, so the
    difference from the reference is 0 with SD 0."""
    cells = (
        ("rl-a-1", True, ("minirl_offpolicy_noclip", 8, 1)),
        ("rl-a-2", True, ("minirl_offpolicy_noclip", 8, 2)),
        ("rl-b-1", False, ("minirl_offpolicy", 8, 1)),
        ("rl-b-2", False, ("minirl_offpolicy", 8, 2)),
    )
    for run_id, falls, cell in cells:
        store = _store(tmp_path, run_id, falls=falls, cell=cell)
    runs = [pilot_page.load_run(store, f"{c[0]}/s{c[2]}", run_id) for run_id, _, c in cells]
    verdicts = [pilot_page.judge(r) for r in runs]
    summary = pilot_page.run_summary(runs[0], verdicts[0])
    assert (summary.arm, summary.n, summary.seed, summary.steps) == ("minirl_offpolicy_noclip", 8, 1, (4, 8, 12, 16))
    assert summary.verdict == "collapsed" and summary.final == pytest.approx(0.125)
    # best checkpoint (step 8: a, b, c right, d half) to the last (c half): per-prompt differences 1, 1, 0.5, 0.5
    assert summary.fall_se == pytest.approx(math.sqrt(1 / 12) / 2)
    tally = pilot_page.arm_tally_lines(runs, verdicts)
    assert tally[3].endswith("| +0.000 [+0.000, +0.000] |")
    lines = pilot_page.claim_lines(runs, verdicts)
    noclip = next(line for line in lines if line.startswith("| Off-policy (N>=2): the no-clip arms collapse"))
    assert "minirl_offpolicy_noclip@N=8: 2/2 [collapsed, collapsed] vs minirl_offpolicy@N=8: 0/2" in noclip
    assert "fewer than 4 seeds per arm" in noclip and "**inconclusive**" in noclip
    assert lines[-1].startswith("Not addressed by these cells") and "On-policy (N=1): MiniRL >= +R3" in lines[-1]
    plain = _store(tmp_path, "rl-plain")
    run = pilot_page.load_run(plain, "P1", "rl-plain")
    assert pilot_page.run_summary(run, pilot_page.judge(run)) is None  # not a grid cell: no claims


def test_claims_compare_only_cells_at_the_first_cells_rollout_precision(tmp_path):
    """The same arm, N and seeds at fp8 and at native precision are two regimes: the claims read the first cell's
    (fp8: 2 no-clip seeds against 2 clipped ones) and name the native cells without judging them."""
    cells = (
        ("rl-a-1", True, ("minirl_offpolicy_noclip", 8, 1), "fp8"),
        ("rl-a-2", True, ("minirl_offpolicy_noclip", 8, 2), "fp8"),
        ("rl-b-1", False, ("minirl_offpolicy", 8, 1), "fp8"),
        ("rl-b-2", False, ("minirl_offpolicy", 8, 2), "fp8"),
        ("rl-c-1", False, ("minirl_offpolicy_noclip", 8, 1), None),
        ("rl-c-2", False, ("minirl_offpolicy_noclip", 8, 2), None),
    )
    for run_id, falls, cell, precision in cells:
        store = _store(tmp_path, run_id, falls=falls, cell=cell, precision=precision)
    labels = ["noclip/s1", "noclip/s2", "clip/s1", "clip/s2", "noclip@native/s1", "noclip@native/s2"]
    runs = [pilot_page.load_run(store, label, c[0]) for label, c in zip(labels, cells, strict=True)]
    lines = pilot_page.claim_lines(runs, [pilot_page.judge(r) for r in runs])
    noclip = next(line for line in lines if line.startswith("| Off-policy (N>=2): the no-clip arms collapse"))
    # with the native cells counted the no-clip arm would read 2/4 [collapsed, collapsed, stable, stable]
    assert "minirl_offpolicy_noclip@N=8: 2/2 [collapsed, collapsed] vs minirl_offpolicy@N=8: 0/2" in noclip
    assert lines[-1] == (
        "Not in the claims (another rollout precision than the first cell's fp8): "
        "noclip@native/s1 (native), noclip@native/s2 (native)."
    )


def test_an_arm_is_its_label_so_a_control_of_the_same_recipe_is_compared_with_the_reference(tmp_path):
    """`pg_stale@native` runs the reference's recipe at another precision: its final score is set against the
    reference's, not against its own recipe's cells. The native runs score 0.625 at step 16 (5 of 8 samples right),
    the reference's 0.125 (every run: SD 0), so the difference is exactly +0.500."""
    cells = (("rl-a-1", 1, "fp8"), ("rl-a-2", 2, "fp8"), ("rl-c-1", 1, None), ("rl-c-2", 2, None))
    for run_id, seed, precision in cells:
        store = _store(tmp_path, run_id, cell=("pg_stale", 8, seed), precision=precision)
        if precision is None:
            layout = RunLayout(store, run_id)
            better = {"a": 1.0, "b": 1.0, "c": 0.5, "d": 0.0}
            store.write_json(layout.eval_results(16, "bench_id"), {"avg@2": 0.625, "avg@2_stderr": 0.24})
            store.write_jsonl(layout.eval_samples(16, "bench_id"), _samples(better))
    labels = ["pg_stale/s1", "pg_stale/s2", "pg_stale@native/s1", "pg_stale@native/s2"]
    runs = [pilot_page.load_run(store, label, c[0]) for label, c in zip(labels, cells, strict=True)]
    tally = pilot_page.arm_tally_lines(runs, [pilot_page.judge(r) for r in runs])
    assert tally[3].startswith("| pg_stale@native | 2 |")
    assert tally[3].endswith("| +0.500 [+0.500, +0.500] |")
