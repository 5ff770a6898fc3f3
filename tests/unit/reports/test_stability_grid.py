"""The stability grid without verl: parameters, arms, progress, the report's shape and the results page."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.cli import main
from stable_verl.config.grid_cell import GridCell
from stable_verl.config.params import StabilityGridParams
from stable_verl.config.recipes import load_recipe
from stable_verl.reports import claims, grid
from stable_verl.reports.compare import RunSeries
from stable_verl.reports.publish import publish_report

CONFIG = "configs/stability_grid.yaml"


# ------------------------------------------------------------------------------------------ parameters
def test_config_file_is_the_papers_grid():
    p = StabilityGridParams.from_config(CONFIG, [])
    assert p.rl.rollout_precision == "fp8"
    assert all(step % p.rl.save_freq == 0 for step in p.eval.steps) and p.rl.total_steps in p.eval.steps  # saved
    baselines = {"grpo", "cispo", "dppo_tv"}  # in every regime
    on_policy = {c.arm for c in p.cells() if c.n == 1}
    paper_on = {"minirl", "minirl_lennorm", "minirl_no_is", "minirl_r3", "minirl_r3_lennorm", "minirl_r3_no_is"}
    assert on_policy == paper_on | baselines
    off_policy = {c.arm for c in p.cells() if c.n == 2}
    paper = {"minirl_offpolicy_noclip", "minirl_r2_noclip", "minirl_r2", "minirl_r3", "minirl_offpolicy"}
    assert off_policy == paper | baselines
    assert len(p.cells()) == (9 + 8 + 8) * 2  # N=1, 2, 4 x 2 seeds


def test_cells_set_n_as_a_recipe_override():
    p = StabilityGridParams.from_config(None, ["arms=[minirl,minirl_r3]", "minibatches=[1,2]", "seeds=[0,1]"])
    assert [c.label for c in p.cells()[:2]] == ["minirl@N=1/seed0", "minirl@N=1/seed1"]
    rl = p.rl_params(GridCell("minirl_r3", 2, 1), "sft-abc")
    assert rl.rl.recipe == "minirl_r3" and rl.rl.recipe_config.minibatches == 2 and rl.rl_seed == 1
    assert rl.rl.ppo_mini_batch_size == 4 and rl.init_run == "sft-abc" and rl.rl.rollout_precision == "fp8"
    # the same cell is the same RL config, so the same content-addressed run id (skip / resume)
    assert p.rl_params(GridCell("minirl_r3", 2, 1), "sft-abc") == rl
    assert p.rl_params(GridCell("minirl_r3", 2, 0), "sft-abc") != rl


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["minibatches=[3]"], r"N must be one of \[1, 2, 4, 8\]"),
        (["minibatches=[1,1]"], "distinct"),
        (
            ["rl.train_batch_size=6", "rl.micro_batch_size=2", "minibatches=[4]"],
            "N=4 does not divide rl.train_batch_size=6: pick N in",
        ),
        (["arms=[minirl_r2]", "minibatches=[1]"], "replays R2 routes, a no-op at N=1"),
        (["arms=[nope]"], "unknown recipe 'nope'"),
        (["arms_by_n={8:[minirl]}", "minibatches=[1]"], r"arms_by_n names N=\[8\]"),
        (["rl.recipe_overrides=[minibatches=4]", "rl.micro_batch_size=4"], "the grid sets N per cell"),
        (["seeds=[]"], "distinct and non-empty"),
        (["rl.rollout_precision=fp4"], "rollout_precision"),
    ],
)
def test_bad_grids_fail_with_one_line(overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        StabilityGridParams.from_config(None, overrides)
    assert "\n" not in str(err.value)


def test_every_arm_of_the_paper_is_a_recipe():
    for arm in (claims.MINIRL, claims.LENNORM, claims.NO_IS, claims.R3, claims.R3_LENNORM, claims.R3_NO_IS):
        assert load_recipe(arm, ["minibatches=1"]).minibatches == 1
    for arm in (claims.R2, claims.R2_NOCLIP, claims.NOCLIP, claims.CLIP_NO_REPLAY):
        assert load_recipe(arm, ["minibatches=4"]).minibatches == 4
    r3_ln, r3_no_is = load_recipe("minirl_r3_lennorm"), load_recipe("minirl_r3_no_is")
    assert r3_ln.routing_replay == "R3" and r3_ln.loss_agg_mode == "seq-mean-token-mean"
    assert r3_no_is.routing_replay == "R3" and not r3_no_is.minirl.train_infer_is
    r2_noclip = load_recipe("minirl_r2_noclip")
    assert r2_noclip.routing_replay == "R2" and not r2_noclip.minirl.clipping
    dppo = load_recipe("dppo_tv")
    assert dppo.loss_mode == "dppo_tv" and "actor_rollout_ref.actor.clip_ratio_c=20" in dppo.overrides()


# ------------------------------------------------------------------------------------------ report
def _grid_runs() -> list[grid.GridRun]:
    """2 arms x N in {1, 2} x 2 seeds; minirl_r2 is absent at N=1; one run raises the entropy+KL warning at step 3
    (logged under the pre-December-2026 key ``stability/collapse``, which readers of old stores still take)."""
    runs = []
    for n, arms in ((1, ["minirl", "minirl_r3"]), (2, ["minirl_r2", "minirl_r3"])):
        for arm in arms:
            for seed in (0, 1):
                collapse = arm == "minirl_r2" and seed == 1
                metrics = [
                    {
                        "step": s,
                        "actor/train_infer_kl_k3": 1e-4 * s * (10 if collapse and s >= 3 else 1),
                        "reward/acc": 0.1 * s,
                        "actor/entropy_per_token": 1.0 - (0.3 if collapse and s >= 3 else 0.05) * s,
                        "stability/collapse": float(collapse and s >= 3),
                        "timing_s/step": 10.0,
                    }
                    for s in (1, 2, 3, 4)
                ]
                evals = {s: {"bench_id": 0.1 * s + 0.01 * seed, "bench_hard": 0.05 * s} for s in (0, 2, 4)}
                stderr = {s: {"bench_id": 0.01, "bench_hard": 0.01} for s in evals}
                series = RunSeries(arm, seed, metrics, evals, f"/runs/rl-{arm}-{n}-{seed}", stderr)
                timing = {"verl_s": 70.0, "flow_s": 80.0, "skipped": False}
                runs.append(grid.GridRun(GridCell(arm, n, seed), f"rl-{arm}-{n}-{seed}", series, timing=timing))
    return runs


def test_report_shape(tmp_path):
    runs = _grid_runs()
    # W = 4 prompts / 4 per batch = 1 step per pass: 4 steps = 4 passes, enough for an outcome verdict
    params = {"task": {"n_rl_train": 4}, "rl": {"train_batch_size": 4, "max_response_length": 48}}
    paths = grid.write_grid_report(runs, tmp_path, "Stability grid (test)", {"params": params, "init_run": "sft-x"})
    assert (tmp_path / "plots" / "regime_N1.png").stat().st_size > 0
    assert (tmp_path / "plots" / "regime_N2.png").stat().st_size > 0
    assert (tmp_path / "plots" / "crossover.png").stat().st_size > 0
    table = pd.read_csv(paths["table"])
    assert len(table) == 8 and set(table["N"]) == {1, 2}
    warned = table[table["warning_step"].notna()]
    assert warned[["arm", "N", "seed", "warning_step"]].values.tolist() == [["minirl_r2", 2, 1, 3.0]]
    # the reward rises 0.1 per step in every run: no run collapsed, warning or not
    assert set(table["verdict"]) == {"stable"}
    # time split: 70 s of verl, 4 steps x 10 s -> 30 s of start-up and shutdown
    assert (table["steps_s"] == 40.0).all() and (table["startup_s"] == 30.0).all()
    # peaks exclude the step-0 init: bench_id 0.4 (+0.01 seed 1) and bench_hard 0.2 at step 4 -> 0.3 / 0.305
    assert sorted(table[table["arm"] == "minirl"]["peak"].round(4)) == [0.3, 0.305]
    claims_csv = pd.read_csv(paths["claims"])
    assert claims_csv["claim"].tolist() == [c.text for c in claims.CLAIMS]
    assert set(claims_csv["verdict"]) <= {claims.HELD, claims.NOT_HELD, claims.INCONCLUSIVE}
    report = paths["report"].read_text()
    assert report.count("| **") == len(claims.CLAIMS)  # one row per claim
    assert "![N=1](plots/regime_N1.png)" in report and "![crossover](plots/crossover.png)" in report


def test_arm_curve_bands(tmp_path):
    runs = [r for r in _grid_runs() if r.cell.arm == "minirl" and r.cell.n == 1]
    steps, mean, lo, hi = grid.arm_curve(runs, ("reward/acc",))
    assert steps == [1, 2, 3, 4] and lo == hi == mean  # identical seeds: no spread
    steps, mean, lo, hi = grid.arm_curve(runs, None)
    # step 4: bench mean (0.4 + 0.2) / 2 = 0.3 and (0.41 + 0.2) / 2 = 0.305 -> 0.3025; seed SE std/sqrt2 = 0.0025,
    # eval SE of each point sqrt(2 * 0.01^2) / 2 = 0.00707, of the seed mean 0.005 -> the band is +-0.005
    assert steps == [0, 2, 4] and mean[-1] == pytest.approx(0.3025)
    assert hi[-1] - mean[-1] == pytest.approx(0.005)


def test_results_page_from_a_comparison_in_the_store(tmp_path, capsys):
    store = ArtifactStore(str(tmp_path / "store"))
    params = StabilityGridParams.from_config(None, ["arms=[minirl,minirl_r3]", "minibatches=[1,2]"])
    sft = {"run_id": "sft-x", "run_uri": str(tmp_path / "store" / "runs" / "sft-x"), "skipped": True}
    timings = {"stages": [sft], "eval": {"eval_s": 12.0}}
    settings = {"params": params.model_dump(mode="json"), "init_run": "sft-x", "timings": timings}
    runs = _grid_runs()
    write = lambda out: grid.write_grid_report(runs, out, "Stability grid (test)", settings)  # noqa: E731
    publish_report(store, "stability-grid-test", [r.series.run_uri for r in runs], tmp_path, write)
    out = tmp_path / "docs"
    assert main(["comparisons", "publish", "stability-grid-test", "--out", str(out), "--store", store.uri()]) == 0
    page = (out / "stability-grid.md").read_text()
    for needle in (
        "stable-verl comparisons publish stability-grid-test",
        "## Budget",
        "## Regime",
        "rollout_precision: fp8",
        "](stability-grid/plots/regime_N1.png)",
        "## Claims",
    ):
        assert needle in page, needle
    assert (out / "stability-grid" / "plots" / "crossover.png").is_file()
    published = (out / "stability-grid" / "grid.json").read_text()
    assert json.loads(published)["init_run"] == "sft-x"
    assert str(tmp_path) not in published and "run_uri" not in published  # no path of the machine that ran it
    assert pd.read_csv(out / "stability-grid" / "claims.csv").shape[0] == len(claims.CLAIMS)


def test_warnings_against_scores_tells_a_fall_from_a_warning_on_a_rising_run():
    from stable_verl.reports.claims import RunSummary
    from stable_verl.reports.grid_tables import warnings_against_scores

    rising = RunSummary("a", 2, 0, (4, 8, 12, 16), (0.6, 0.65, 0.68, 0.70), (0.03,) * 4, warning_step=7)
    falling = RunSummary("b", 2, 0, (4, 8, 12, 16), (0.6, 0.65, 0.30, 0.20), (0.03,) * 4, warning_step=9)
    late = RunSummary("c", 2, 0, (4, 8, 12, 16), (0.6, 0.65, 0.68, 0.70), (0.03,) * 4, warning_step=16)
    calm = RunSummary("d", 1, 0, (4, 8), (0.5, 0.6), (0.03,) * 2)
    (line,) = warnings_against_scores([rising, falling, late, calm])
    # rising: 0.60 at step 4 -> 0.70 (+0.10); falling: 0.65 at step 8 -> 0.20 (-0.45, > 2 SE); late: nothing after
    assert "3 of 4 runs raised the entropy+KL early warning" in line and "Of the 2 with a checkpoint" in line
    assert ", 1 fell by more than 2 SE" in line and "mean change was -0.175" in line
    assert warnings_against_scores([calm]) == ["No run raised the entropy+KL warning."]


def test_the_warning_is_read_under_its_new_and_its_old_key():
    for key in ("stability/collapse_warning", "stability/collapse"):
        metrics = [{"step": s, key: float(s >= 2)} for s in (1, 2, 3)]
        run = grid.GridRun(GridCell("minirl", 1, 0), "rl-x", RunSeries("minirl", 0, metrics))
        assert run.warning_step() == 2


def test_a_fall_from_the_peak_is_judged_paired_per_prompt_when_samples_exist():
    # 4 prompts, one benchmark; peak at step 8 (0.875), final at 16 (0.625); d = [0, .5, .5, 0]:
    # mean 0.25, SD sqrt(1/12) = 0.2887, paired SE 0.1443 -> 0.25 < 2 x 0.1443: no fall. Unpaired it would use
    # the evaluation SEs (0.3 each here): sqrt(2) x 0.3 = 0.42.
    prompts = {8: {"bench_id": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5}}}
    prompts[16] = {"bench_id": {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.5}}
    evals = {8: {"bench_id": 0.875}, 16: {"bench_id": 0.625}}
    stderr = {8: {"bench_id": 0.3}, 16: {"bench_id": 0.3}}
    series = RunSeries("minirl_r2", 0, [{"step": 16, "reward/acc": 0.5}], evals, "", stderr)
    run = grid.GridRun(GridCell("minirl_r2", 4, 0), "rl-x", series, prompts)
    s = run.summary()
    assert s.fall_se == pytest.approx(math.sqrt(1 / 12) / 2)
    fall = s.heldout_fall()
    assert fall.fall == pytest.approx(0.25) and fall.se == pytest.approx(s.fall_se) and not s.unstable
    assert math.isnan(grid.GridRun(GridCell("minirl_r2", 4, 0), "rl-x", series).summary().fall_se)  # no samples
