"""ArtifactStore over a local folder and a real moto S3 server: I/O, manifests, integrity, reachability."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stable_verl.artifacts import (
    MANIFEST_NAME,
    ArtifactIntegrityError,
    ArtifactStore,
    ArtifactStoreError,
    IncompleteArtifactError,
    Manifest,
    build_manifest,
)
from stable_verl.artifacts.retry import RetryPolicy

PREFIX = "runs/r1/checkpoints/global_step_3"


def make_dir(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "model.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "config.json").write_text('{"hidden": 8}')
    (root / "sub" / "deeper" / "empty.txt").write_bytes(b"")
    return root


def test_small_objects_round_trip(store: ArtifactStore) -> None:
    store.write_json("runs/a/run.json", {"status": "running", "step": 3, "tags": {"b", "a"}})
    assert store.read_json("runs/a/run.json") == {"status": "running", "step": 3, "tags": ["a", "b"]}
    store.write_text("runs/a/notes.md", "# hi\n")
    assert store.read_text("runs/a/notes.md") == "# hi\n"
    rows = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(3)]
    store.write_jsonl("runs/a/metrics.jsonl", rows)
    store.write_jsonl("runs/a/metrics.jsonl", [*rows, {"step": 3, "loss": 0.2}])  # whole-file rewrite
    assert store.read_jsonl("runs/a/metrics.jsonl")[-1] == {"step": 3, "loss": 0.2}
    store.write_yaml("runs/a/config.yaml", {"trainer": {"lr": 1e-6, "steps": 2}})
    assert "lr: 1.0e-06" in store.read_text("runs/a/config.yaml")
    assert store.exists("runs/a/run.json") and not store.exists("runs/a/missing.json")
    assert store.ls("runs/a") == ["config.yaml", "metrics.jsonl", "notes.md", "run.json"]
    assert store.ls("runs/nothing") == []
    assert store.cat_many(["runs/a/run.json", "runs/a/missing.json"])["runs/a/missing.json"] is None
    with pytest.raises(FileNotFoundError):
        store.read_json("runs/a/missing.json")
    store.delete("runs/a/notes.md")
    assert not store.exists("runs/a/notes.md")
    assert store.uri("runs", "a", "run.json").endswith("/runs/a/run.json")


def test_truncated_last_jsonl_line_is_dropped(store: ArtifactStore) -> None:
    store.write_bytes("m.jsonl", b'{"step": 1}\n{"step": 2}\n{"ste')
    assert store.read_jsonl("m.jsonl") == [{"step": 1}, {"step": 2}]


def test_invalid_paths_rejected(store: ArtifactStore) -> None:
    for bad in ("runs/../etc", "runs//x", "./x"):
        with pytest.raises(ValueError):
            store.write_text(bad, "x")


def test_put_get_dir_round_trip_verifies_sha256(store: ArtifactStore, tmp_path: Path) -> None:
    src = make_dir(tmp_path / "src")
    manifest = store.put_dir(src, PREFIX, metadata={"global_step": 3})
    assert [f.path for f in manifest.files] == ["model.bin", "sub/config.json", "sub/deeper/empty.txt"]
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert build_manifest(src).files == manifest.files
    assert store.is_complete(PREFIX)
    assert store.list_complete("runs/*/checkpoints/global_step_*") == [PREFIX]

    dest = tmp_path / "dest"
    got = store.get_dir(PREFIX, dest)
    assert got.to_dict() == manifest.to_dict()
    for entry in manifest.files:
        assert (dest / entry.path).read_bytes() == (src / entry.path).read_bytes()
    assert Manifest.from_json((dest / MANIFEST_NAME).read_text()).files == manifest.files
    assert not list(dest.rglob("*.part-*"))


def test_corrupted_file_makes_get_dir_raise(store: ArtifactStore, tmp_path: Path) -> None:
    src = make_dir(tmp_path / "src")
    store.put_dir(src, PREFIX)
    original = (src / "sub" / "config.json").read_bytes()
    store.write_bytes(f"{PREFIX}/sub/config.json", original.replace(b"8", b"9"))  # same size, other bytes
    assert store.is_complete(PREFIX)  # cheap check is size-only; get_dir hashes
    dest = tmp_path / "dest"
    with pytest.raises(ArtifactIntegrityError, match="sub/config.json"):
        store.get_dir(PREFIX, dest)
    assert not (dest / "sub" / "config.json").exists() and not list(dest.rglob("*.part-*"))

    store.write_bytes(f"{PREFIX}/sub/config.json", b"{}")  # different size: incomplete
    assert not store.is_complete(PREFIX)


def test_interrupted_upload_leaves_directory_incomplete(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_dir(tmp_path / "src")
    events: list[str] = []
    real_put, real_write = store._put_files, store.write_bytes
    monkeypatch.setattr(store, "_put_files", lambda lp, rp: (events.extend(rp), real_put(lp, rp)))
    monkeypatch.setattr(store, "write_bytes", lambda rel, data: (events.append(rel), real_write(rel, data))[1])
    store.put_dir(src, PREFIX)
    assert events[-1] == f"{PREFIX}/{MANIFEST_NAME}" and len(events) == 4  # the manifest is written last

    def crash(prefix: str, manifest: Manifest) -> None:
        raise KeyboardInterrupt("killed before the manifest")

    monkeypatch.setattr(store, "_write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put_dir(src, PREFIX)  # a rerun into the same prefix first removes the old manifest
    assert store.exists(f"{PREFIX}/model.bin")
    assert not store.is_complete(PREFIX)
    assert store.read_manifest(PREFIX) is None
    assert store.list_complete("runs/*/checkpoints/global_step_*") == []
    with pytest.raises(IncompleteArtifactError):
        store.get_dir(PREFIX, tmp_path / "dest")


def test_invalid_or_dangling_manifest_is_incomplete(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_dir(make_dir(tmp_path / "src"), PREFIX)
    store.delete(f"{PREFIX}/sub/config.json")  # a listed file disappeared
    assert not store.is_complete(PREFIX)
    with pytest.raises(IncompleteArtifactError):
        store.get_dir(PREFIX, tmp_path / "dest")
    store.write_text(f"{PREFIX}/{MANIFEST_NAME}", '{"files": [{"path": "../x", "size": 1, "sha256": "00"}]}')
    assert store.read_manifest(PREFIX) is None and not store.is_complete(PREFIX)
    store.write_text(f"{PREFIX}/{MANIFEST_NAME}", "{not json")
    assert not store.is_complete(PREFIX)


def test_check_passes_and_leaves_nothing_behind(store: ArtifactStore) -> None:
    store.check()
    assert store.ls("") == []


def test_local_writes_are_atomic(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    store.write_json("x/run.json", {"a": 1})
    store.put_dir(make_dir(tmp_path / "src"), "x/ckpt")
    assert sorted(p.name for p in (tmp_path / "a" / "x").iterdir()) == ["ckpt", "run.json"]
    assert not [p for p in (tmp_path / "a").rglob(".tmp-*")]
    assert json.loads((tmp_path / "a" / "x" / "ckpt" / MANIFEST_NAME).read_text())["total_size"] == 10253
    assert repr(store) == f"ArtifactStore(root='{tmp_path / 'a'}', storage_options={{}})"


def test_unreachable_endpoint_fails_fast_with_one_line_error(moto_s3) -> None:
    secret, key_id = "unreachable-SECRET-value-123", "AKIAUNREACHABLE0001"
    options = {
        "key": key_id,
        "secret": secret,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
        "config_kwargs": {"connect_timeout": 0.5, "read_timeout": 0.5, "retries": {"max_attempts": 1}},
    }
    store = ArtifactStore("s3://nowhere/root", options, retry=RetryPolicy(attempts=2, base_s=0.01))
    start = time.monotonic()
    with pytest.raises(ArtifactStoreError) as info:
        store.check()
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message and "http://127.0.0.1:9" in message and "s3://nowhere/root" in message
    assert secret not in message and key_id not in message
    with pytest.raises(ArtifactStoreError, match="127.0.0.1:9"):
        store.read_json("runs/x/run.json")
