"""The comparison report: table values by hand, files written, the figure rendered."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stable_verl.reports.compare import NO_DATA, RunSeries, comparison_table, curves_figure, run_link, write_report

SCORE_PANEL = "benchmark score (avg@k)"


def _run(init: str, seed: int, scores: dict[int, float], stderr: dict[int, float] | None = None) -> RunSeries:
    # The keys a stable_sync MiniRL run logs (see tests/integration/test_minirl_run.py), with verl's own entropy
    # (per-token entropy x length under seq-mean-token-sum) beside ours.
    metrics = [
        {
            "step": s,
            "reward/acc": 0.1 * s,
            "critic/score/mean": 0.1 * s + 0.05,  # a fallback key: must not be plotted while reward/acc exists
            "actor/train_infer_kl_k3": 1e-3 * s,
            "rollout_corr/kl": 5.0,  # a fallback key as well
            "actor/entropy_per_token": 1.0 / s,
            "actor/entropy": 40.0 / s,
            "response_length/mean": 10 + s,
        }
        for s in (1, 2, 3)
    ]
    evals = {s: {"bench_id": v} for s, v in scores.items()}
    eval_stderr = {s: {"bench_id": e} for s, e in (stderr or {}).items()}
    return RunSeries(init, seed, metrics, evals, f"runs/{init}-{seed}", eval_stderr)


def _panels(fig) -> dict:
    """Panel title -> [(label, steps, values)] of its lines, read back from matplotlib."""
    return {
        ax.get_title(): [(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines]
        for ax in fig.axes
    }


@pytest.fixture
def runs():
    return [
        _run("terse", 0, {1: 0.2, 3: 0.4}, stderr={1: 0.03, 3: 0.04}),
        _run("terse", 1, {1: 0.3, 3: 0.2}, stderr={1: 0.05, 3: 0.03}),
        _run("verbose", 0, {1: 0.1, 3: 0.5}),  # evaluated before avg@k_stderr existed: standard errors unknown
    ]


def test_table_final_peak_and_spread(runs):
    table = comparison_table(runs).set_index(["init", "benchmark"])
    terse = table.loc[("terse", "bench_id")]
    # final: seeds end at 0.4 and 0.2 -> mean 0.3, sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414
    assert terse.final_mean == pytest.approx(0.3)
    assert terse.final_std == pytest.approx(0.141421, abs=1e-5)
    # peak: max per seed = 0.4 and 0.3 -> mean 0.35
    assert terse.peak_mean == pytest.approx(0.35)
    # evaluation SE of a mean of 2 seeds = sqrt(SE_0^2 + SE_1^2) / 2. final (step 3 of both): sqrt(.04^2 + .03^2) / 2
    # = .05 / 2 = .025; peak (seed 0 at step 3, seed 1 at step 1): sqrt(.04^2 + .05^2) / 2 = .0640312 / 2 = .0320156
    assert terse.final_stderr == pytest.approx(0.025)
    assert terse.peak_stderr == pytest.approx(0.0320156, abs=1e-6)
    verbose = table.loc[("verbose", "bench_id")]
    assert (verbose.final_mean, verbose.peak_mean, verbose.final_std, verbose.seeds) == (0.5, 0.5, 0.0, 1)
    assert math.isnan(verbose.final_stderr) and math.isnan(verbose.peak_stderr)  # unknown, not 0


def test_table_start_gain_and_training_reward(runs):
    table = comparison_table(runs).set_index(["init", "benchmark"])
    terse = table.loc[("terse", "bench_id")]
    # start = the first evaluated step (1): 0.2 and 0.3 -> 0.25; gains 0.4 - 0.2 = +0.2 and 0.2 - 0.3 = -0.1 -> mean
    # +0.05, sample std sqrt(0.15^2 + 0.15^2) = 0.2121
    assert (terse.start_mean, terse.gain_mean) == (pytest.approx(0.25), pytest.approx(0.05))
    assert terse.gain_std == pytest.approx(0.212132, abs=1e-6)
    # start SE: sqrt(.03^2 + .05^2) / 2 = .0291548; a gain's SE per seed: hypot(.03, .04) = .05 and hypot(.05, .03)
    # = .0583095, over the 2 seeds sqrt(.05^2 + .0583095^2) / 2 = .0384057
    assert terse.start_stderr == pytest.approx(0.0291548, abs=1e-6)
    assert terse.gain_stderr == pytest.approx(0.0384057, abs=1e-6)
    # training reward 0.1 s over 3 steps: 20% of 3 rounds to one step at each end -> 0.1 and 0.3
    assert (terse.reward_first, terse.reward_last) == (pytest.approx(0.1), pytest.approx(0.3))
    verbose = table.loc[("verbose", "bench_id")]
    assert verbose.gain_mean == pytest.approx(0.4) and math.isnan(verbose.gain_stderr)


def test_report_files(tmp_path, runs):
    paths = write_report(runs, tmp_path / "cmp", "cold-start comparison")
    assert paths["plot"].stat().st_size > 10_000  # a rendered 5-panel PNG, not an empty canvas
    table = pd.read_csv(paths["table"])
    assert table.shape == (2, 16) and {"start_mean", "gain_mean", "gain_stderr", "reward_last"} <= set(table.columns)
    report = paths["report"].read_text()
    assert "![curves](plots/curves.png)" in report
    header = "| init | benchmark | start | final | final SE | gain | gain SE | peak | peak SE | training reward, "
    assert header + "first -> last 20% of steps | seeds |" in report
    assert (
        "| terse | bench_id | 0.250 | 0.300 ± 0.141 | 0.025 | +0.050 ± 0.212 | 0.038 | 0.350 ± 0.071 | 0.032 | "
        "0.100 -> 0.300 | 2 |" in report
    )
    assert "| verbose | bench_id | 0.100 | 0.500 | n/a | +0.400 | n/a | 0.500 | n/a | 0.100 -> 0.300 | 1 |" in report


def test_report_links_runs_relative_to_itself():
    assert run_link("/data/u/artifacts/runs/rl-a-1") == "[rl-a-1](../../runs/rl-a-1/index.html)"  # no local path
    assert run_link("s3://b/p/runs/rl-a-1") == "[rl-a-1](../../runs/rl-a-1/index.html) (s3://b/p/runs/rl-a-1)"


def test_score_panel_shades_one_standard_error(runs):
    two_benchmarks = RunSeries(
        "mixed", 0, runs[0].metrics, {2: {"a": 0.2, "b": 0.4}}, eval_stderr={2: {"a": 0.03, "b": 0.04}}
    )
    # the score is the mean over benchmarks, 0.3, with SE sqrt(.03^2 + .04^2) / 2 = .025
    assert two_benchmarks.score_curve() == ([2], [pytest.approx(0.3)])
    assert two_benchmarks.score_stderr() == [pytest.approx(0.025)]
    ax = next(ax for ax in curves_figure(runs, "bands").axes if ax.get_title() == SCORE_PANEL)
    bands = [c.get_paths() for c in ax.collections]
    assert len(bands) == 3  # one fill_between per run
    # terse seed 0: 0.2 +- 0.03 at step 1, 0.4 +- 0.04 at step 3 -> the band spans [0.17, 0.44]
    (terse0,) = bands[0]
    assert (terse0.vertices[:, 1].min(), terse0.vertices[:, 1].max()) == pytest.approx((0.17, 0.44))
    assert bands[2] == []  # verbose: standard errors unknown, no band (not a zero-width one)


def test_figure_plots_the_keys_runs_log(runs):
    panels = _panels(curves_figure(runs, "cold-start comparison"))
    assert list(panels) == [
        "benchmark score (avg@k)",
        "train-inference KL",
        "training reward",
        "per-token entropy",
        "response length",
    ]
    terse0 = "terse (seed 0)"
    # one line per run, from the primary keys: reward/acc (not critic/score/mean), actor/train_infer_kl_k3,
    # actor/entropy_per_token (never verl's actor/entropy = 40 / s), response_length/mean; the score is avg@k
    assert panels["benchmark score (avg@k)"][0] == (terse0, [1, 3], [0.2, 0.4])
    assert panels["train-inference KL"][0] == (terse0, [1, 2, 3], pytest.approx([1e-3, 2e-3, 3e-3]))
    assert panels["training reward"][0] == (terse0, [1, 2, 3], pytest.approx([0.1, 0.2, 0.3]))
    assert panels["per-token entropy"][0] == (terse0, [1, 2, 3], pytest.approx([1.0, 0.5, 1 / 3]))
    assert panels["response length"][0] == (terse0, [1, 2, 3], [11.0, 12.0, 13.0])
    assert all(len(lines) == 3 for lines in panels.values())


def test_a_metric_no_run_logged_is_a_labelled_no_data_panel_and_a_warning(runs):
    for run in runs:
        for row in run.metrics:  # an old run: verl's entropy only, no per-token entropy
            del row["actor/entropy_per_token"]
    with pytest.warns(UserWarning) as record:
        fig = curves_figure(runs, "old runs")
    assert [str(w.message) for w in record if w.category is UserWarning] == [  # not a ResourceWarning of GC
        f"per-token entropy: run {name} has no actor/entropy_per_token; not plotted"
        for name in ("terse (seed 0)", "terse (seed 1)", "verbose (seed 0)")
    ]
    entropy_ax = next(ax for ax in fig.axes if ax.get_title() == "per-token entropy")
    assert len(entropy_ax.lines) == 0  # verl's actor/entropy is not a stand-in
    assert [t.get_text() for t in entropy_ax.texts] == [f"{NO_DATA}\n(no actor/entropy_per_token)"]
    assert all(len(ax.lines) == 3 for ax in fig.axes if ax is not entropy_ax)


def test_a_run_missing_a_metric_is_left_out_with_a_warning(runs):
    for row in runs[2].metrics:
        del row["actor/train_infer_kl_k3"], row["rollout_corr/kl"]
    with pytest.warns(UserWarning, match=r"train-inference KL: run verbose \(seed 0\) has no actor/train_infer_kl_k3"):
        panels = _panels(curves_figure(runs, "partial"))
    assert [label for label, _, _ in panels["train-inference KL"]] == ["terse (seed 0)", "terse (seed 1)"]
    with pytest.raises(KeyError, match="verbose .seed 0. logged none of"):
        runs[2].series(("actor/train_infer_kl_k3", "rollout_corr/kl"))


def test_report_names_the_cpu_each_run_trained_on(tmp_path, runs):
    runs[0].cpu = "AVX2, bf16 emulated"
    report = write_report(runs, tmp_path / "cmp", "cold-start comparison")["report"].read_text()
    assert f"- {runs[0].init} (seed {runs[0].seed}): " in report and "; CPU AVX2, bf16 emulated\n" in report
    assert report.count("; CPU ") == 1  # a run without a record of its CPU names none
