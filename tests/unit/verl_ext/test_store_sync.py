"""In-verl checkpoint upload and restore (store_sync) across two "nodes" that share no folder, on a local store and
moto S3; the flow's CheckpointWatch. The verl side runs end to end in tests/integration/test_ray_job_launcher.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, RunLayout
from stable_verl.train.checkpoint_sync import CheckpointWatch
from stable_verl.verl_ext import store_sync as ss

RUN = "rl-test-00000000"


@pytest.fixture(params=["local", "s3"])
def run(request, tmp_path) -> RunLayout:
    if request.param == "local":
        return RunLayout(ArtifactStore(str(tmp_path / "store")), RUN)
    return RunLayout(request.getfixturevalue("moto_s3").store(), RUN)


def _sync(run: RunLayout, monkeypatch) -> ss.StoreSync:
    """What verl's processes build from the environment the flow gives them."""
    for key, value in ss.sync_env(run).items():
        monkeypatch.setenv(key, value)
    sync = ss.StoreSync.from_env()
    assert sync is not None and sync.run.uri() == run.uri()
    return sync


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _save(node_a: Path, node_b: Path, step: int) -> None:
    """verl's save of ``step`` with the driver and rank 0 on node A, rank 1 on node B (each its own folder)."""
    a, b = node_a / f"global_step_{step}", node_b / f"global_step_{step}"
    _write(a / "data.pt", b"loader" * step)
    for rank, folder in ((0, a), (1, b)):
        for kind in ("model", "optim", "extra_state"):
            _write(folder / "actor" / f"{kind}_world_size_2_rank_{rank}.pt", bytes([rank, step]) * 50)
    _write(a / "actor" / "fsdp_config.json", b"{}")  # rank 0's unranked files
    _write(a / "actor" / "huggingface" / "config.json", b"{}")


def test_rank_and_driver_ownership():
    assert ss.rank_owns("model_world_size_2_rank_1.pt", 1, first_on_node=False)
    assert not ss.rank_owns("model_world_size_2_rank_1.pt", 0, first_on_node=True)
    assert not ss.rank_owns("model_world_size_12_rank_11.pt", 1, first_on_node=True)
    assert ss.rank_owns("huggingface/config.json", 3, first_on_node=True)
    assert not ss.rank_owns("fsdp_config.json", 1, first_on_node=False)
    assert ss.driver_owns("data.pt") and ss.driver_owns("transfer_queue/x") and not ss.driver_owns("actor/a.pt")


def test_node_dir_moves_the_checkpoint_root(monkeypatch, tmp_path):
    monkeypatch.delenv(ss.ENV_NODE_DIR, raising=False)
    assert ss.node_path("/flow/ckpt/global_step_3/actor", RUN) == "/flow/ckpt/global_step_3/actor"
    monkeypatch.setenv(ss.ENV_NODE_DIR, str(tmp_path / "node"))
    assert ss.node_path("/flow/ckpt/global_step_3/actor", RUN) == str(
        tmp_path / "node" / RUN / "checkpoints" / "global_step_3" / "actor"
    )


def test_metrics_merge_keeps_earlier_attempts_up_to_the_resumed_step():
    merged = ss.StepMetrics([{"step": s, "tag": "a1"} for s in (1, 2, 3)], resumed_step=2)
    merged.add(ss.to_row(2, {"val/acc": 0.5}))  # validation before training, at the resumed step: dropped
    merged.add(ss.to_row(3, {"tag": "a2", "loss": 1.0}))
    merged.add(ss.to_row(3, {"val/acc": 0.7}))  # same step: merged
    assert merged.rows() == [
        {"step": 1, "tag": "a1"},
        {"step": 2, "tag": "a1"},
        {"step": 3, "tag": "a2", "loss": 1.0, "val/acc": 0.7},
    ]


def test_each_node_uploads_its_part_and_the_manifest_comes_last(run, tmp_path, monkeypatch):
    sync = _sync(run, monkeypatch)
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    _save(node_a, node_b, 1)
    sync.begin(1)
    entries = sync.upload_driver_files(1, str(node_a / "global_step_1"))
    assert [e["path"] for e in entries] == ["data.pt"]
    entries += sync.upload_rank_files(1, str(node_a / "global_step_1" / "actor"), rank=0, first_on_node=True)
    assert run.checkpoint_steps() == []  # files there, no manifest yet: incomplete
    entries += sync.upload_rank_files(1, str(node_b / "global_step_1" / "actor"), rank=1, first_on_node=True)
    rows = [{"step": 1, "loss": 0.5}]
    manifest = sync.finish(1, entries, rows, upload_s=0.25, local_folder=str(node_a / "global_step_1"))

    assert run.checkpoint_steps() == [1] and run.read_metrics() == rows
    assert len(manifest.files) == 1 + 3 * 2 + 2 and manifest.metadata["global_step"] == 1
    assert manifest.metadata["upload_s"] >= 0.25
    assert run.store.read_manifest(run.checkpoint(1)).to_dict() == manifest.to_dict()
    assert (node_a / "global_step_1" / MANIFEST_NAME).read_text() == manifest.to_json()
    full = tmp_path / "full"
    run.download_checkpoint(1, full)  # verified against every sha256
    assert (full / "actor" / "model_world_size_2_rank_1.pt").read_bytes() == bytes([1, 1]) * 50

    # A re-save of the same step: incomplete from its first upload until its new manifest.
    sync.begin(1)
    assert run.checkpoint_steps() == []
    with pytest.raises(RuntimeError, match="two ranks uploaded different"):
        sync.finish(1, [*entries, {**entries[0], "sha256": "0" * 64}], rows, 0.0)


def test_restore_puts_each_part_on_its_node(run, tmp_path, monkeypatch):
    sync = _sync(run, monkeypatch)
    src_a, src_b = tmp_path / "src-a", tmp_path / "src-b"
    for step in (1, 2):
        _save(src_a, src_b, step)
        entries = sync.upload_driver_files(step, str(src_a / f"global_step_{step}"))
        for rank, node in ((0, src_a), (1, src_b)):
            entries += sync.upload_rank_files(step, str(node / f"global_step_{step}" / "actor"), rank, True)
        sync.finish(step, entries, [{"step": s} for s in range(1, step + 1)], 0.0)
    _write(tmp_path / "dst-a" / "global_step_3" / "data.pt", b"stale")  # a local save the store never got

    nodes = {0: tmp_path / "dst-a", 1: tmp_path / "dst-b"}

    def restore_workers(part_folder: str, step: int) -> None:  # what the worker group's ONE_TO_ALL call does
        for rank, node in nodes.items():
            folder = str(node / Path(part_folder).relative_to(nodes[0]))
            sync.restore_rank_files(step, folder, rank, first_on_node=True)

    step, previous = sync.restore(str(nodes[0]), restore_workers)
    assert step == 2 and [r["step"] for r in previous] == [1, 2]
    assert (nodes[0] / ss.TRACKER).read_text() == "2" and not (nodes[0] / "global_step_3").exists()
    got = {n: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) for n, d in nodes.items()}
    assert got[0] == [
        "global_step_2/actor/extra_state_world_size_2_rank_0.pt",
        "global_step_2/actor/fsdp_config.json",
        "global_step_2/actor/huggingface/config.json",
        "global_step_2/actor/model_world_size_2_rank_0.pt",
        "global_step_2/actor/optim_world_size_2_rank_0.pt",
        "global_step_2/data.pt",
        ss.TRACKER,
    ]
    ranked = [f"global_step_2/actor/{k}_world_size_2_rank_1.pt" for k in ("extra_state", "model", "optim")]
    unranked = ["global_step_2/actor/fsdp_config.json", "global_step_2/actor/huggingface/config.json"]
    assert got[1] == sorted(ranked + unranked)  # node B: rank 1's shards (and, its first rank, the unranked files)


def test_restore_without_checkpoints_starts_from_scratch(run, tmp_path, monkeypatch):
    sync = _sync(run, monkeypatch)
    _write(tmp_path / "root" / "global_step_1" / "data.pt", b"stale")
    assert sync.restore(str(tmp_path / "root"), lambda *_: pytest.fail("no workers to restore")) == (0, [])
    assert list((tmp_path / "root").iterdir()) == []


def test_the_watch_reports_checkpoints_as_they_land(run, tmp_path, monkeypatch):
    sync = _sync(run, monkeypatch)
    lines: list[str] = []
    watch = CheckpointWatch(run, already=0, echo=lines.append)
    assert watch.poll_once() == []
    for step in (1, 2):
        _write(tmp_path / f"global_step_{step}" / "data.pt", b"x")
        entries = sync.upload_driver_files(step, str(tmp_path / f"global_step_{step}"))
        sync.finish(step, entries, [{"step": s} for s in range(1, step + 1)], upload_s=1.5)
    assert watch.poll_once() == [1, 2] and watch.poll_once() == []
    assert watch.landed == [1, 2] and watch.upload_seconds >= 3.0
    assert "checkpoint(s) [1, 2] uploaded by verl" in lines[0]


def test_the_watch_reads_the_restore_time_from_verls_output(run):
    watch = CheckpointWatch(run, already=2)
    watch.on_line("(TaskRunnerV1 pid=123) " + ss.restored_line(2, 0.4567))
    watch.on_line("step:3 - loss:1.0")
    assert watch.download_seconds == pytest.approx(0.457)
