"""The public reads the store's readers use (stable_verl/site/store_reader.py): a folder's sizes in one listing, an
object's head, the secrets to scrub, a presigned URL. Over a local folder and a real moto S3 server."""

from __future__ import annotations

import urllib.request

import pytest

from stable_verl.artifacts import ArtifactStore


def test_sizes_lists_every_object_below_a_prefix(store: ArtifactStore) -> None:
    store.write_bytes("runs/a/run.json", b"{}")
    store.write_bytes("runs/a/checkpoints/global_step_1/model.pt", b"x" * 5)
    store.write_bytes("runs/ab/run.json", b"{}")  # a sibling whose name starts with the prefix: not below it
    assert store.sizes("runs/a") == {"run.json": 2, "checkpoints/global_step_1/model.pt": 5}
    assert store.sizes("runs/missing") == {}


def test_read_head_reads_the_first_bytes_only(store: ArtifactStore) -> None:
    store.write_bytes("runs/a/samples.jsonl", b"0123456789")
    assert store.read_head("runs/a/samples.jsonl", 4) == b"0123"
    assert store.read_head("runs/a/samples.jsonl", 100) == b"0123456789"
    with pytest.raises(FileNotFoundError):
        store.read_head("runs/a/missing.jsonl", 4)


def test_secrets_are_the_store_credentials_and_the_credential_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "tok-123")
    store = ArtifactStore(str(tmp_path), {"secret": "s3cr3t", "anon": False})
    assert {"s3cr3t", "tok-123"} <= store.secrets()
    assert "False" not in store.secrets() and str(tmp_path) not in store.secrets()


def test_presign_gives_a_url_that_reads_the_object_without_credentials(moto_s3) -> None:
    store = moto_s3.store()
    store.write_bytes("runs/a/plots/metrics.png", b"png bytes")
    url = store.presign("runs/a/plots/metrics.png", 60)
    assert "Signature=" in url  # SigV2 (Signature=) or SigV4 (X-Amz-Signature=), by the client's default
    with urllib.request.urlopen(url, timeout=10) as response:  # a plain HTTP GET: no botocore, no credentials
        assert response.read() == b"png bytes"
