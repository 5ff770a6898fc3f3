"""The one list of the metrics that matter (core/metric_keys.py) and its named subsets."""

from __future__ import annotations

import fnmatch

from stable_verl.core import metric_keys as mk


def test_every_curve_key_is_a_metric_that_matters():
    for curve in mk.CURVES:
        for key in curve.keys:
            assert any(fnmatch.fnmatchcase(key, p) for p in mk.KEY_METRIC_PATTERNS), (curve.title, key)


def test_the_paper_figure_is_the_curves_without_response_length():
    assert set(mk.PAPER_CURVES) < set(mk.CURVES)
    assert [c.title for c in mk.CURVES if c not in mk.PAPER_CURVES] == ["response length"]
    assert mk.CURVES[0].keys == mk.KL_KEYS and mk.CURVES[0].log  # the KL panel is on a log scale


def test_the_reports_and_the_site_draw_from_the_one_list():
    from stable_verl.reports import compare, grid
    from stable_verl.site.plots import plotted_keys

    assert grid.PANELS == (compare.SCORE_PANEL, *mk.PAPER_CURVES)
    row = {"step": 1, "response_length/mean": 3.0, "actor/train_infer_kl_k3": 0.1, "reward/acc": 0.5, "val/loss": 1}
    # the reward leads a run's page, then the curves in the reports' order, then the other metrics that matter
    assert plotted_keys([row]) == ["reward/acc", "actor/train_infer_kl_k3", "response_length/mean", "val/loss"]
