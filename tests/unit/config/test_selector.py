"""The evaluate flow's selector on the real store (a local folder and the moto S3 server): every complete checkpoint
with no evaluation yet, narrowed by kind, recipe and age, merged with listed runs; and its parameters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.lease import Lease, lease_path
from stable_verl.config.params import EvaluateFlowParams
from stable_verl.config.selector import RunSelector
from stable_verl.eval.checkpoints import EvalTarget, evaluate_checkpoints, select_targets
from stable_verl.eval.worker import EvalSettings
from tests.support.s3 import local_or_s3

SFT, MINIRL, GRPO = "sft-terse-00000001", "rl-minirl-00000002", "rl-grpo-00000003"
BENCHES = ["bench_id", "bench_hard"]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    store = local_or_s3(request, tmp_path)
    src = tmp_path / "files"
    src.mkdir()
    (src / "w.bin").write_bytes(b"x")
    for rid, kind, name, steps in (
        (SFT, "sft", "terse", [20, 40]),
        (MINIRL, "rl", "minirl", [1, 2, 3]),
        (GRPO, "rl", "grpo", [5]),
    ):
        run = RunLayout(store, rid)
        run.write_run({"kind": kind, "name": name, "status": "complete"})
        for step in steps:
            run.upload_checkpoint(src, step)
    minirl = RunLayout(store, MINIRL)
    for bench in BENCHES:
        store.put_dir(src, minirl.eval_dir(1, bench))  # step 1: evaluated on both benchmarks
    store.put_dir(src, minirl.eval_dir(2, "bench_id"))  # step 2: on one only
    store.write_bytes(f"{minirl.eval_dir(3, 'bench_id')}/w.bin", b"x")  # step 3: an upload cut short (no manifest)
    store.write_bytes(f"{RunLayout(store, GRPO).checkpoint(7)}/w.bin", b"x")  # an incomplete checkpoint: never picked
    grpo_index = RunLayout(store, GRPO).index_entry  # the grpo run was last updated three days ago
    store.write_json(grpo_index, {**store.read_json(grpo_index), "updated_at": "2026-01-01T00:00:00Z"})
    return store


def _select(store, steps="all", **selector) -> list[tuple[str, int]]:
    """Sorted (the store lists runs by creation time, here all in one second)."""
    return sorted((t.run_id, t.step) for t in select_targets(store, [], steps, RunSelector(**selector), BENCHES))


def test_every_complete_checkpoint_not_yet_evaluated(store):
    # SFT runs: their last checkpoint only; minirl step 1 has results on both benchmarks, step 2 on one, step 3's
    # upload never finished; grpo's step 7 is incomplete.
    assert _select(store) == [(GRPO, 5), (MINIRL, 2), (MINIRL, 3), (SFT, 40)]
    assert _select(store, pending=False) == [(GRPO, 5), (MINIRL, 1), (MINIRL, 2), (MINIRL, 3), (SFT, 40)]
    assert _select(store, steps="last") == [(GRPO, 5), (MINIRL, 3), (SFT, 40)]
    assert _select(store, steps=[1, 2, 9]) == [(MINIRL, 2), (SFT, 40)]  # listed steps a run lacks are left out


def test_narrowed_by_kind_recipe_and_age(store):
    assert _select(store, kind="sft") == [(SFT, 40)]
    assert _select(store, kind="rl", recipe="grpo") == [(GRPO, 5)]
    assert _select(store, recipe="terse") == [(SFT, 40)]
    assert _select(store, recipe="nope") == []
    assert _select(store, max_age_h=24) == [(MINIRL, 2), (MINIRL, 3), (SFT, 40)]  # grpo: updated 3 days ago


def test_listed_runs_and_selector_together(store):
    targets = select_targets(store, [MINIRL], "all", RunSelector(kind="rl"), BENCHES)
    # the listed run's checkpoints all (evaluated or not), then the selector's others, each once
    assert targets == [EvalTarget(MINIRL, s) for s in (1, 2, 3)] + [EvalTarget(GRPO, 5)]
    assert len(select_targets(store, [MINIRL], "all", RunSelector(), BENCHES)) == 5  # + grpo 5, sft 40


def test_parameters_take_a_selector_or_runs():
    assert EvaluateFlowParams.from_config(None, ["select={}"]).select == RunSelector()
    params = EvaluateFlowParams.from_config(None, ["select.kind=rl", "select.max_age_h=24"])
    assert params.select == RunSelector(kind="rl", max_age_h=24) and params.runs == []
    with pytest.raises(ValueError, match=r"nothing to evaluate: give runs \(run ids\) or select"):
        EvaluateFlowParams.from_config(None, [])
    for bad, where in (
        ("select.kind=eval", "select.kind"),
        ("select.max_age_h=0", "select.max_age_h"),
        ("select.nope=1", "select.nope"),
    ):
        with pytest.raises(ValueError, match=f"invalid config at {where}"):
            EvaluateFlowParams.from_config(None, [bad])


def _two_prompt_bench(store, tmp_path, evaluated: list[tuple[str, int]]) -> tuple[EvalSettings, Path]:
    """A 2-prompt ``bench_id`` file, and stored avg@2 results (these settings) for each (run, step) of ``evaluated``."""
    settings = EvalSettings(k=2, dtype="float32")  # results.json records the dtype used, never "auto"
    tmp_path.mkdir(parents=True, exist_ok=True)
    bench = tmp_path / "bench_id.parquet"
    pd.DataFrame({"prompt": ["1+1", "2+2"]}).to_parquet(bench)
    done = tmp_path / "done"
    done.mkdir()
    results = {"avg@2": 0.5, "avg@2_stderr": 0.1, "format_rate": 1.0, "num_prompts": 2}
    (done / "results.json").write_text(json.dumps({**results, "settings": dataclasses.asdict(settings)}))
    for run_id, step in evaluated:
        store.put_dir(done, RunLayout(store, run_id).eval_dir(step, "bench_id"))
    return settings, bench


def test_a_run_another_evaluation_holds_is_skipped_and_said(store, tmp_path):
    # minirl's pending steps are leased by another flow run; grpo's step 5 already has results with these settings:
    # nothing is left to evaluate, so no vLLM process starts, and the log says which run was skipped and why.
    settings, bench = _two_prompt_bench(store, tmp_path, [(GRPO, 5)])
    other = Lease(store, "eval", MINIRL, owner="nightly flow run 1", settle_s=0.05)
    other.acquire()
    targets = [EvalTarget(MINIRL, 3), EvalTarget(GRPO, 5)]
    said: list[str] = []
    outcome = evaluate_checkpoints(store, targets, {"bench_id": bench}, settings, tmp_path, echo=said.append)
    other.release()
    assert outcome.busy == [EvalTarget(MINIRL, 3)] and outcome.evaluated == []
    assert list(outcome.results) == [EvalTarget(GRPO, 5)] and outcome.rows("avg@2")[0]["avg@2"] == 0.5
    assert any(f"{MINIRL}: skipped, another evaluation holds it" in s and "nightly flow run 1" in s for s in said)
    assert said[-1] == "[eval] nothing to evaluate: 1 of 2 checkpoint(s) already evaluated"
    assert not store.exists(lease_path("eval", GRPO))  # a run with nothing to evaluate is never leased


def test_a_fully_evaluated_run_loses_the_lease_a_killed_evaluation_left(store, tmp_path):
    # kill -9 of an evaluation between uploading the results and releasing its lease: the next call finds nothing
    # to do for the run and removes the dead holder's lease, which would otherwise stay in the store for ever.
    settings, bench = _two_prompt_bench(store, tmp_path, [(GRPO, 5)])
    dead = Lease(store, "eval", GRPO, owner="killed flow run", ttl_s=-1)
    dead._write()  # expired: its holder stopped heart-beating
    live = Lease(store, "eval", SFT, owner="running flow run", settle_s=0.05)
    live.acquire()
    _two_prompt_bench(store, tmp_path / "live", [(SFT, 20)])  # its results are in; it has not released yet
    said: list[str] = []
    targets = [EvalTarget(GRPO, 5), EvalTarget(SFT, 20)]
    outcome = evaluate_checkpoints(store, targets, {"bench_id": bench}, settings, tmp_path, echo=said.append)
    assert outcome.evaluated == [] and len(outcome.results) == 2
    assert not store.exists(lease_path("eval", GRPO))
    assert any(f"removing the stale eval lease on {GRPO} of killed flow run" in s for s in said)
    assert live.read() is not None and live.read().owner == "running flow run"  # a live holder's lease stays
    live.release()
