"""The stability grid's report from a run record (pilot_page --export's store: configs, metrics, evaluations; no
checkpoints, no run.json): the cells, the score rows, the comparison folder, the page and the refusals."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.cli import main
from stable_verl.config.params import StabilityGridParams
from stable_verl.reports import claims, grid
from stable_verl.reports.grid_from_record import record_scores, report_from_record
from stable_verl.reports.grid_page import write_page

# W = 16 prompts / 8 per rollout batch = 2 steps a pass: 16 steps = 8 passes, enough for an outcome verdict
GRID = """\
name: grid-test
init_run: sft-x
arms: [pg_stale, minirl_offpolicy]
minibatches: [8]
seeds: [1, 2]
task: {n_rl_train: 16}
rl: {train_batch_size: 8, micro_batch_size: 4, total_steps: 16, save_freq: 4}
eval: {k: 2, benchmarks: [bench_id], steps: [4, 8, 12, 16]}
"""
STEPS = (4, 8, 12, 16)
SETTINGS = {"k": 2, "temperature": 1.0, "max_tokens": 48, "seed": 0, "dtype": "float32"}
# (run id, arm, seed, the held-out score of its final checkpoint); pg_stale's reward and score fall after step 8
RUNS = [
    ("rl-pg-stale-1", "pg_stale", 1, 0.25),
    ("rl-pg-stale-2", "pg_stale", 2, 0.0),
    ("rl-minirl-offpolicy-1", "minirl_offpolicy", 1, 0.75),
    ("rl-minirl-offpolicy-2", "minirl_offpolicy", 2, 0.5),
]


def _evaluation(layout: RunLayout, step: int, means: dict[str, float], settings: dict = SETTINGS) -> None:
    """results.json and samples.jsonl (one row per prompt, as the record keeps them) of one checkpoint."""
    values = list(means.values())
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    results = {"avg@2": mean, "avg@2_stderr": sd / 2, "format_rate": 1.0, "settings": settings}
    layout.store.write_json(layout.eval_results(step, "bench_id"), results)
    layout.store.write_jsonl(layout.eval_samples(step, "bench_id"), [{"prompt": p, "acc": m} for p, m in means.items()])


def _run(
    store: ArtifactStore,
    run_id: str,
    arm: str,
    seed: int,
    final: float,
    precision: str = "fp8",
    steps: tuple[int, ...] = STEPS,
) -> None:
    """A grid cell's record: config.yaml (the machine's platform in it, as every attempt writes), metrics.jsonl,
    one evaluation per checkpoint (a score of 0.75 until step 8, then ``final``)."""
    layout = RunLayout(store, run_id)
    layout.write_config(
        {
            "task": {"n_rl_train": 16},
            "rl": {
                "recipe": arm,
                "recipe_overrides": ["minibatches=8"],
                "train_batch_size": 8,
                "max_response_length": 48,
                "rollout_precision": precision,
            },
            "init_run": "sft-x",
            "rl_seed": seed,
            "platform": {"cpu_capability": "AVX512", "native_bf16": True},
        }
    )
    falls = arm == "pg_stale"
    layout.write_metrics([{"step": s, "reward/acc": 0.2 if falls and s > 8 else 0.6} for s in range(1, 17)])
    for step in steps:
        _evaluation(layout, step, _means(0.75 if step <= 8 else final))


def _means(score: float) -> dict[str, float]:
    """4 prompts, each right in every sample or in none, averaging ``score`` (a multiple of 0.25)."""
    return {p: float(i < round(4 * score)) for i, p in enumerate("abcd")}


def _record(tmp_path) -> tuple[ArtifactStore, StabilityGridParams]:
    """The record of the 4 cells and their init (two evaluations of it: its last is the runs' step 0)."""
    store = ArtifactStore(str(tmp_path / "record"))
    for run_id, arm, seed, final in RUNS:
        _run(store, run_id, arm, seed, final)
    init = RunLayout(store, "sft-x")
    _evaluation(init, 400, {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.5})
    _evaluation(init, 800, {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.0})
    config = tmp_path / "grid.yaml"
    config.write_text(GRID)
    return store, StabilityGridParams.from_config(str(config), [])


def test_score_rows_are_the_evaluate_flows(tmp_path):
    store, params = _record(tmp_path)
    configs = {r: RunLayout(store, r).read_config() for r, *_ in RUNS[:1]}
    metric, rows = record_scores(store, params, "sft-x", configs)
    assert metric == "avg@2"
    # the init: its last evaluation only; the run: every step eval.steps lists
    assert [(r["run_id"], r["step"]) for r in rows] == [("sft-x", 800)] + [("rl-pg-stale-1", s) for s in STEPS]
    assert rows[0] == {
        "run_id": "sft-x",
        "step": 800,
        "benchmark": "bench_id",
        "avg@2": 0.5,
        "avg@2_stderr": pytest.approx(math.sqrt(1 / 6) / 2),
        "format_rate": 1.0,
    }
    assert rows[-1]["avg@2"] == 0.25


def test_the_grid_report_from_a_record(tmp_path):
    store, params = _record(tmp_path)
    shuffled = [r for r, *_ in reversed(RUNS)]
    layout = report_from_record(store, params, shuffled, "sft-x")
    # the id the grid flow gives the same cells: their runs in the grid's cell order (N, arm, seed)
    assert layout.comparison_id == grid.comparison_id("grid-test", [r for r, *_ in RUNS])
    assert store.is_complete(layout.prefix)  # uploaded, manifest last
    manifest = store.read_text(f"{layout.prefix}/_MANIFEST.json")
    assert "runs/rl-pg-stale-1" in manifest and str(tmp_path) not in manifest  # store-relative run locations

    table = pd.read_csv(store.uri(layout.prefix, "table.csv"))
    assert table[["arm", "N", "seed", "run_id"]].values.tolist() == [[a, 8, s, r] for r, a, s, _ in RUNS]
    assert table["final"].tolist() == pytest.approx([f for *_, f in RUNS])
    assert table["peak"].tolist() == pytest.approx([0.75] * 4) and set(table["peak_step"]) == {4}
    assert table["verdict"].tolist() == ["collapsed", "collapsed", "stable", "stable"]
    assert table["skipped"].all() and (table["verl_s"] == 0.0).all()  # no run.json, no wall time: 0, no crash
    claims_csv = pd.read_csv(store.uri(layout.prefix, "claims.csv"))
    assert claims_csv["claim"].tolist() == [c.text for c in claims.CLAIMS]
    report = store.read_text(layout.report_md)
    assert report.startswith("# Stability grid: 16 RL steps, rollouts fp8")
    assert "| pg_stale | 8 | 2 | 0.750 (" in report and "Trained on CPU: AVX512, native bf16." in report
    settings = json.loads(store.read_text(f"{layout.prefix}/grid.json"))
    assert settings["init_run"] == "sft-x" and settings["params"]["rl"]["rollout_precision"] == "fp8"
    assert settings["from_record"] is True

    out = tmp_path / "page"
    page = write_page(store, layout.comparison_id, out)
    assert page == out / "stability-grid.md"
    text = page.read_text()
    assert f"stable-verl comparisons publish {layout.comparison_id}" in text and "## Claims" in text
    assert "rl-minirl-offpolicy-2" in text and str(tmp_path) not in text
    # what the record cannot tell is said, not shown as zeros: no flow call made it, no run.json timed it
    assert "Rebuilt from the grid's run record" in text and "python -m flows.stability_grid" not in text
    assert "(all from the grid's run record)" in text and "- wall time: not in the record (no run.json)" in text
    assert (out / "stability-grid" / "plots" / "regime_N8.png").stat().st_size > 0
    assert len(pd.read_csv(out / "stability-grid" / "table.csv")) == 4


def _other_precision(store: ArtifactStore) -> str:
    _run(store, "rl-pg-stale-native", "pg_stale", 3, 0.5, precision="native")
    return "rl-pg-stale-native"


def _not_a_cell(store: ArtifactStore) -> str:
    layout = RunLayout(store, "rl-minirl-x")
    layout.write_config({"rl": {"recipe": "minirl", "rollout_precision": "fp8"}, "init_run": "sft-x"})
    return "rl-minirl-x"


def _outside_the_grid(store: ArtifactStore) -> str:
    _run(store, "rl-pg-stale-9", "pg_stale", 9, 0.5)
    return "rl-pg-stale-9"


def _same_cell(store: ArtifactStore) -> str:
    _run(store, "rl-pg-stale-1-rerun", "pg_stale", 1, 0.5)
    return "rl-pg-stale-1-rerun"


def _step_missing(store: ArtifactStore) -> str:
    store.delete(RunLayout(store, "rl-pg-stale-2").eval_results(12, "bench_id"))
    return "rl-pg-stale-2"


def _other_settings(store: ArtifactStore) -> str:
    _evaluation(RunLayout(store, "rl-pg-stale-2"), 16, {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}, {**SETTINGS, "k": 4})
    return "rl-pg-stale-2"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_other_precision, "rl-pg-stale-native rolled out at native, the grid's rl.rollout_precision is fp8"),
        (_not_a_cell, "rl-minirl-x is not a stability-grid cell"),
        (_outside_the_grid, r"rl-pg-stale-9 \(pg_stale@N=8/seed9\) is not a cell of this grid"),
        (_same_cell, "are the same cell pg_stale@N=8/seed1"),
        (_step_missing, r"rl-pg-stale-2 has no evaluation of step\(s\) \[12\]"),
        (_other_settings, "rl-pg-stale-2 step 16 bench_id was evaluated with"),
    ],
)
def test_a_run_the_grid_would_not_report_is_refused_in_one_line(tmp_path, capsys, make, message):
    store, params = _record(tmp_path)
    bad = make(store)
    run_ids = list(dict.fromkeys([r for r, *_ in RUNS] + [bad]))
    with pytest.raises(ValueError, match=message) as err:
        report_from_record(store, params, run_ids, "sft-x")
    assert "\n" not in str(err.value)
    assert store.ls("comparisons") == []  # nothing written
    argv = ["comparisons", "from-record", "--config", str(tmp_path / "grid.yaml"), "--store", store.uri(), *run_ids]
    assert main(argv) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("stable-verl: error: ")


def test_the_command_prints_the_id_and_the_publish_command(tmp_path, capsys):
    store, _ = _record(tmp_path)
    run_ids = [r for r, *_ in RUNS]
    argv = ["comparisons", "from-record", "--config", str(tmp_path / "grid.yaml"), "--store", store.uri(), *run_ids]
    assert main(argv) == 0
    comparison = grid.comparison_id("grid-test", run_ids)
    out = capsys.readouterr().out
    assert comparison in out and f"stable-verl comparisons publish {comparison} --store {store.uri()}" in out
    # a config override (the native-precision control's) turns the same runs away
    assert main([*argv, "--set", "rl.rollout_precision=native"]) == 2
    assert "rolled out at fp8, the grid's rl.rollout_precision is native" in capsys.readouterr().err
