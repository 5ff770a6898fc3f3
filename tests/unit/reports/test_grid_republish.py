"""Republishing the stability-grid page from its own published CSVs (no store, no runs) under the current rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from stable_verl.cli import main
from stable_verl.reports import claims

PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "results"


def test_the_committed_page_is_what_republish_writes(tmp_path):
    out = tmp_path / "results"
    shutil.copytree(PUBLISHED / "stability-grid", out / "stability-grid")
    assert main(["comparisons", "republish", str(out / "stability-grid"), "--out", str(out)]) == 0
    for name in ("stability-grid.md", "stability-grid/table.csv", "stability-grid/claims.csv"):
        assert (out / name).read_text() == (PUBLISHED / name).read_text(), name


def test_no_claim_of_the_grid_is_held_on_flags():
    now = pd.read_csv(PUBLISHED / "stability-grid" / "claims.csv")
    first = pd.read_csv(PUBLISHED / "stability-grid" / "claims_first_publication.csv")
    assert now["claim"].tolist() == [c.text for c in claims.CLAIMS]
    was_held = first.index[first["verdict"] == claims.HELD].tolist()
    assert len(was_held) == 2  # the two collapse claims the first publication held on the entropy+KL flag
    for i in was_held:
        assert now.loc[i, "verdict"] == claims.INCONCLUSIVE and "too short" in now.loc[i, "evidence"]
    assert claims.HELD not in set(now["verdict"])
    assert now["mdd"].notna().sum() >= 5  # every tested claim shows its minimum detectable difference
    table = pd.read_csv(PUBLISHED / "stability-grid" / "table.csv")
    assert set(table["verdict"]) == {"too short"} and table["warning_step"].notna().sum() == 28
    page = (PUBLISHED / "stability-grid.md").read_text()
    for needle in ("## Budget", "## Regime", "## What these published data can and cannot judge", "rollout_precision"):
        assert needle in page, needle


def test_a_folder_without_a_published_grid_is_refused(tmp_path, capsys):
    assert main(["comparisons", "republish", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks table.csv, grid.json, claims.csv" in err
