"""The one store reader (stable_verl/site/store_reader.py): the CLI's views and the pages read a store through it, and
nothing outside stable_verl/artifacts/ reaches into the store's private members. Over a local folder and a real moto
S3 server, on the small store of tests/unit/site_store.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.site import store_reader, views
from tests.unit.site_store import CMP, ENV_SECRET, FILE_SECRET, RL, SFT, populate

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch) -> ArtifactStore:
    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    store = (
        ArtifactStore(str(tmp_path / "store"))
        if request.param == "local"
        else request.getfixturevalue("moto_s3").store()
    )
    populate(store, tmp_path / "src")
    return store


def test_the_cli_and_the_pages_see_the_same_run(store: ArtifactStore):
    data = store_reader.run_data(store, RL)
    shown = views.run_details(store, RL)
    assert [(s, f.complete) for s, f in data.checkpoints] == [(2, True), (4, True), (6, False)]
    assert shown["checkpoints"][["step", "complete"]].values.tolist() == [[2, True], [4, True], [6, False]]
    assert [(e.step, e.folder.complete, e.value) for e in data.evals] == [
        (2, True, 0.25),
        (4, True, 0.5),
        (6, False, None),
    ]
    assert shown["evals"][["step", "value", "stderr"]].values.tolist() == [[2, 0.25, 0.05], [4, 0.5, 0.05]]
    assert shown["evals_incomplete"] == 1
    assert shown["metrics"] == data.summary and data.summary["step"] == 6
    assert shown["config"] == data.config and data.config_text.startswith("rl:")
    assert data.parent == (SFT, 4) and shown["run"]["parent_checkpoint"].endswith(
        f"runs/{SFT}/checkpoints/global_step_4"
    )


def test_the_cli_and_the_pages_see_the_same_comparison(store: ArtifactStore):
    data = store_reader.comparison_data(store, CMP)
    shown = views.comparison_details(store, CMP)
    row = views.comparisons_frame(store).iloc[0]
    assert data.folder.complete and shown["complete"] and row["status"] == "complete"
    assert data.plots() == ["plots/curves.png"] and row["plots"] == 1 and shown["plots"][0].endswith("plots/curves.png")
    assert data.runs == [(RL, True), ("s3://elsewhere/runs/x", False)] and len(shown["runs"]) == row["runs"] == 2
    assert shown["table"].equals(data.table) and [f.rsplit("/", 1)[-1] for f in shown["files"]] == ["grid.json"]
    runs, comparisons = store_reader.root_data(store)
    ids = [r.run_id for r in runs]
    assert ids == views.runs_frame(store)["run_id"].tolist() and sorted(ids) == [RL, SFT]
    assert [c["comparison_id"] for c in comparisons] == [CMP]


def test_what_the_reader_returns_is_redacted(store: ArtifactStore):
    data = store_reader.run_data(store, RL)
    text = repr((data.config, data.config_text, data.command, data.run))
    assert FILE_SECRET not in text and ENV_SECRET not in text
    assert ENV_SECRET not in repr(views.run_details(store, RL))


def test_no_module_outside_artifacts_touches_the_store_s_private_members():
    private = re.compile(r"\bstore\._[a-z]")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("stable_verl", "flows")
        for path in sorted((ROOT / top).rglob("*.py"))
        if "artifacts" not in path.relative_to(ROOT).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert found == []
