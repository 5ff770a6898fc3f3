"""Run/comparison layout, content-addressed run ids, latest complete checkpoint and the run index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from stable_verl.artifacts import (
    MANIFEST_NAME,
    ArtifactStore,
    ComparisonLayout,
    RunLayout,
    latest_complete_checkpoint,
    list_runs,
    run_id,
)

CONFIG = {"trainer": {"lr": 1e-6, "steps": 4}, "algo": {"name": "minirl", "clip": [0.2, 0.28]}}


def ckpt_dir(root: Path, step: int) -> Path:
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes([step % 256]) * 64)
    (root / "meta.json").write_text(f'{{"step": {step}}}')
    return root


def test_run_id_is_content_addressed() -> None:
    rid = run_id("train", "MiniRL Qwen/0.5B", CONFIG, upstream=["s3://b/runs/sft-x-1/checkpoints/global_step_9"])
    assert re.fullmatch(r"train-minirl-qwen-0.5b-[0-9a-f]{8}", rid)
    reordered = {"algo": {"clip": [0.2, 0.28], "name": "minirl"}, "trainer": {"steps": 4, "lr": 1e-6}}
    assert run_id("train", "MiniRL Qwen/0.5B", reordered, ["s3://b/runs/sft-x-1/checkpoints/global_step_9"]) == rid
    assert (
        run_id("train", "MiniRL Qwen/0.5B", OmegaConf.create(CONFIG), ["s3://b/runs/sft-x-1/checkpoints/global_step_9"])
        == rid
    )
    changed = {**CONFIG, "trainer": {"lr": 2e-6, "steps": 4}}
    others = {
        run_id("train", "MiniRL Qwen/0.5B", changed, ["s3://b/runs/sft-x-1/checkpoints/global_step_9"]),
        run_id("train", "MiniRL Qwen/0.5B", CONFIG, ["s3://b/runs/sft-x-1/checkpoints/global_step_10"]),
        run_id("train", "MiniRL Qwen/0.5B", CONFIG, []),
        run_id("eval", "MiniRL Qwen/0.5B", CONFIG, ["s3://b/runs/sft-x-1/checkpoints/global_step_9"]),
    }
    assert rid not in others and len(others) == 4
    # Rotating a credential that slipped into the config does not move the run.
    with_key = {**CONFIG, "storage": {"secret": "old-secret-value"}}
    assert run_id("t", "n", with_key) == run_id("t", "n", {**CONFIG, "storage": {"secret": "new-secret-value"}})


def test_layout_paths(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    run = RunLayout(store, "train-minirl-0123abcd")
    assert run.run_json == "runs/train-minirl-0123abcd/run.json"
    assert run.config_yaml == "runs/train-minirl-0123abcd/config.yaml"
    assert run.command_json == "runs/train-minirl-0123abcd/command.json"
    assert run.metrics_jsonl == "runs/train-minirl-0123abcd/metrics.jsonl"
    assert run.checkpoint(20) == "runs/train-minirl-0123abcd/checkpoints/global_step_20"
    assert run.eval_dir(20, "gsm8k") == "runs/train-minirl-0123abcd/eval/global_step_20/gsm8k"
    assert run.eval_results(20, "gsm8k").endswith("gsm8k/results.json")
    assert run.eval_samples(20, "gsm8k").endswith("gsm8k/samples.jsonl")
    assert run.index_entry == "index/runs/train-minirl-0123abcd.json"
    assert run.uri() == str(tmp_path / "runs" / "train-minirl-0123abcd")
    cmp = ComparisonLayout(store, "r2-vs-r3")
    assert (cmp.report_md, cmp.table_csv) == ("comparisons/r2-vs-r3/report.md", "comparisons/r2-vs-r3/table.csv")
    assert cmp.plot("reward") == "comparisons/r2-vs-r3/plots/reward.png"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError):
            RunLayout(store, bad)


def test_latest_complete_checkpoint_picks_highest_complete_step(store: ArtifactStore, tmp_path: Path) -> None:
    run = RunLayout(store, "train-x-00000001")
    assert latest_complete_checkpoint(run) is None and run.checkpoint_steps() == []
    for step in (1, 5, 3):
        run.upload_checkpoint(ckpt_dir(tmp_path / f"s{step}", step), step)
    # step 10: interrupted upload (files, no manifest); step 7: manifest, but a listed file is gone.
    for name, data in (("weights.bin", b"w" * 64), ("meta.json", b"{}")):
        store.write_bytes(f"{run.checkpoint(10)}/{name}", data)
    run.upload_checkpoint(ckpt_dir(tmp_path / "s7", 7), 7)
    store.delete(f"{run.checkpoint(7)}/weights.bin")
    assert latest_complete_checkpoint(run) == 5 == run.latest_checkpoint()
    assert run.checkpoint_steps() == [1, 3, 5]
    assert run.checkpoint_steps(complete_only=False) == [1, 3, 5, 7, 10]
    manifest = run.download_checkpoint(5, tmp_path / "restore")
    assert manifest.metadata == {"run_id": run.run_id, "global_step": 5}
    assert (tmp_path / "restore" / "meta.json").read_text() == '{"step": 5}'

    store.write_bytes(f"{run.checkpoint(10)}/{MANIFEST_NAME}", b"")  # a truncated manifest is not valid
    assert latest_complete_checkpoint(run) == 5
    run.upload_checkpoint(ckpt_dir(tmp_path / "s10", 10), 10)  # the rerun finishes the upload
    assert latest_complete_checkpoint(run) == 10


def test_run_records_and_list_runs(store: ArtifactStore) -> None:
    assert list_runs(store) == []
    train = RunLayout(store, run_id("train", "minirl", CONFIG))
    first = train.write_run({"kind": "train", "name": "minirl", "status": "running", "config": CONFIG})
    train.write_config(OmegaConf.create({"a": 1, "b": "${a}"}))
    train.write_command(["trainer.total_epochs=1", "algorithm.adv_estimator=grpo"], entrypoint="verl.trainer.main_ppo")
    train.write_metrics([{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.3}])
    assert store.read_text(train.config_yaml) == "a: 1\nb: 1\n"
    assert store.read_json(train.command_json)["overrides"][1] == "algorithm.adv_estimator=grpo"
    assert [r["step"] for r in train.read_metrics()] == [1, 2]
    done = train.update_run(status="succeeded")
    assert done["created_at"] == first["created_at"] and train.read_run()["status"] == "succeeded"
    assert train.read_run()["config"] == CONFIG

    evaluation = RunLayout(store, "eval-minirl-0000beef")
    evaluation.write_run({"kind": "eval", "name": "minirl", "status": "queued", "created_at": "2000-01-01T00:00:00Z"})
    # A run whose run.json never got written (or was removed), and an unreadable index entry: both ignored.
    store.write_json("index/runs/train-ghost-deadbeef.json", {"run_id": "train-ghost-deadbeef", "kind": "train"})
    store.write_text("index/runs/train-broken-00000000.json", "{truncated")

    runs = list_runs(store)
    assert [r["run_id"] for r in runs] == [evaluation.run_id, train.run_id]  # oldest first
    assert runs[1]["status"] == "succeeded" and "config" not in runs[1]  # index entries stay small
    assert [r["run_id"] for r in list_runs(store, kind="train")] == [train.run_id]
    assert RunLayout(store, "train-ghost-deadbeef").read_run() is None
