"""Cold-start comparison plumbing on a local store: checkpoint selection, stored-result reuse, per-init series."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.eval.checkpoints import EvalTarget, _stored_result, select_targets
from stable_verl.eval.worker import EvalSettings
from stable_verl.reports.coldstart import InitRuns, build_series, comparison_id


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path / "store"))
    for rid, kind, steps in (("sft-terse-00000001", "sft", [20, 40]), ("rl-minirl-00000002", "rl", [1, 2, 3])):
        run = RunLayout(store, rid)
        run.write_run({"kind": kind, "status": "complete"})
        for step in steps:
            src = tmp_path / rid / str(step)
            src.mkdir(parents=True)
            (src / "w.bin").write_bytes(b"x")
            run.upload_checkpoint(src, step)
    RunLayout(store, "rl-minirl-00000002").write_metrics([{"step": s, "reward/acc": 0.1 * s} for s in (1, 2, 3)])
    return store


def test_select_targets(store):
    runs = ["sft-terse-00000001", "rl-minirl-00000002"]
    assert select_targets(store, runs, "last") == [EvalTarget(runs[0], 40), EvalTarget(runs[1], 3)]
    assert select_targets(store, runs, "all") == [EvalTarget(runs[0], 40), *(EvalTarget(runs[1], s) for s in (1, 2, 3))]
    assert select_targets(store, runs[1:], [3, 1]) == [EvalTarget(runs[1], 1), EvalTarget(runs[1], 3)]
    with pytest.raises(ValueError, match=r"no complete checkpoint\(s\) \[7\]; it has \[1, 2, 3\]"):
        select_targets(store, runs[1:], [7])
    with pytest.raises(ValueError, match="run rl-nope-00000000 has no complete checkpoint"):
        select_targets(store, ["rl-nope-00000000"], "last")


def test_series_start_at_the_sft_checkpoint(store):
    init = InitRuns("terse", 0, "sft-terse-00000001", "rl-minirl-00000002")
    rows = [
        {"run_id": "sft-terse-00000001", "step": 40, "benchmark": "bench_id", "avg@4": 0.25, "avg@4_stderr": 0.05},
        {"run_id": "rl-minirl-00000002", "step": 3, "benchmark": "bench_id", "avg@4": 0.5, "avg@4_stderr": 0.0625},
        {"run_id": "rl-other-00000003", "step": 3, "benchmark": "bench_id", "avg@4": 0.9, "avg@4_stderr": 0.01},
    ]  # the last row is another init's
    (series,) = build_series(store, [init], rows, "avg@4")
    assert series.evals == {0: {"bench_id": 0.25}, 3: {"bench_id": 0.5}}
    assert series.eval_stderr == {0: {"bench_id": 0.05}, 3: {"bench_id": 0.0625}}
    assert [r["step"] for r in series.metrics] == [1, 2, 3] and series.init == "terse"
    assert comparison_id("coldstart", [init]) == comparison_id("coldstart", [init]).lower()
    assert comparison_id("coldstart", [init]) != comparison_id("coldstart", [InitRuns("t", 0, "s", "rl-x-1")])


def test_stored_results_are_reused_only_with_their_standard_error(store, tmp_path):
    run, settings = RunLayout(store, "rl-minirl-00000002"), EvalSettings(k=4)
    fresh = {"avg@4": 0.5, "avg@4_stderr": 0.1, "num_prompts": 32, "settings": dataclasses.asdict(settings)}
    old = {k: v for k, v in fresh.items() if k != "avg@4_stderr"}  # made before per-sample seeds
    for step, results in ((1, fresh), (2, old)):
        local = tmp_path / f"eval{step}"
        local.mkdir()
        (local / "results.json").write_text(json.dumps(results))
        store.put_dir(local, run.eval_dir(step, "bench_id"))
    assert _stored_result(run, 1, "bench_id", settings, 32) == fresh
    assert _stored_result(run, 1, "bench_id", settings, 16) is None  # another prompt count
    assert _stored_result(run, 1, "bench_id", dataclasses.replace(settings, seed=1), 32) is None
    assert _stored_result(run, 2, "bench_id", settings, 32) is None  # evaluated again
    assert _stored_result(run, 3, "bench_id", settings, 32) is None  # never evaluated
