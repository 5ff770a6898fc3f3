"""The comparison report: table values by hand, files written, the figure rendered."""

from __future__ import annotations

import pandas as pd
import pytest

from stable_verl.pipeline.compare import RunSeries, comparison_table, write_report


def _run(init: str, seed: int, scores: dict[int, float]) -> RunSeries:
    metrics = [
        {
            "step": s,
            "rollout_corr/kl": 1e-3 * s,
            "critic/score/mean": 0.1 * s,
            "actor/entropy": 1.0 / s,
            "response_length/mean": 10 + s,
        }
        for s in (1, 2, 3)
    ]
    return RunSeries(init, seed, metrics, {s: {"bench_id": v} for s, v in scores.items()}, f"runs/{init}-{seed}")


@pytest.fixture
def runs():
    return [
        _run("terse", 0, {1: 0.2, 3: 0.4}),
        _run("terse", 1, {1: 0.3, 3: 0.2}),
        _run("verbose", 0, {1: 0.1, 3: 0.5}),
    ]


def test_table_final_peak_and_spread(runs):
    table = comparison_table(runs).set_index(["init", "benchmark"])
    terse = table.loc[("terse", "bench_id")]
    # final: seeds end at 0.4 and 0.2 -> mean 0.3, sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414
    assert terse.final_mean == pytest.approx(0.3)
    assert terse.final_std == pytest.approx(0.141421, abs=1e-5)
    # peak: max per seed = 0.4 and 0.3 -> mean 0.35
    assert terse.peak_mean == pytest.approx(0.35)
    verbose = table.loc[("verbose", "bench_id")]
    assert (verbose.final_mean, verbose.peak_mean, verbose.final_std, verbose.seeds) == (0.5, 0.5, 0.0, 1)


def test_report_files(tmp_path, runs):
    paths = write_report(runs, tmp_path / "cmp", "cold-start comparison")
    assert paths["plot"].stat().st_size > 10_000  # a rendered 5-panel PNG, not an empty canvas
    assert pd.read_csv(paths["table"]).shape == (2, 7)
    report = paths["report"].read_text()
    assert "![curves](plots/curves.png)" in report
    assert "| terse | bench_id | 0.300 ± 0.141 | 0.350 ± 0.071 | 2 |" in report
