"""The fault-injecting S3 proxy (tests/faults/s3_proxy.py) in front of the session's moto server, and the store's
retries through it: 5xx, slow and dropped requests are injected and counted, and the store survives them. Also
the audit the fault campaigns end with (tests/faults/audit.py)."""

from __future__ import annotations

import http.client
import time
import uuid
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactIntegrityError, ArtifactStore, ArtifactStoreError, RunLayout
from stable_verl.artifacts.retry import NO_RETRY, RetryPolicy, retry_counts
from tests.faults.audit import audit_store
from tests.faults.s3_proxy import FaultRates, S3FaultProxy

NO_BOTOCORE_RETRY = {"retries": {"mode": "standard", "total_max_attempts": 1}}


@pytest.fixture
def proxy(moto_s3):
    with S3FaultProxy(moto_s3.endpoint_url, seed=0) as proxy:
        yield proxy


def proxied_store(moto_s3, proxy: S3FaultProxy, retry: RetryPolicy | None = None, **config) -> ArtifactStore:
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": proxy.endpoint_url}}
    if config:
        options["config_kwargs"] = config
    return ArtifactStore(f"s3://{moto_s3.bucket}/{uuid.uuid4().hex[:10]}", options, retry=retry)


def get(proxy: S3FaultProxy, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(proxy.endpoint_url.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def make_dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.bin").write_bytes(bytes(range(256)) * 400)
    (root / "sub" / "config.json").write_text('{"layers": 8}')
    return root


def test_clean_proxy_forwards_everything(moto_s3, proxy) -> None:
    store = proxied_store(moto_s3, proxy)
    store.write_json("a.json", {"x": 1})
    assert store.read_json("a.json") == {"x": 1} and store.ls("") == ["a.json"]
    stats = proxy.stats()
    assert stats.requests == stats.forwarded >= 3 and stats.faults == {"error": 0, "drop": 0, "slow": 0}


def test_each_fault_kind_is_injected_and_counted(moto_s3, proxy) -> None:
    proxy.set_rates(FaultRates(error=1.0))
    status, body = get(proxy, f"/{moto_s3.bucket}?list-type=2")
    assert status in (500, 503) and (b"<Code>SlowDown</Code>" in body or b"<Code>InternalError</Code>" in body)
    proxy.set_rates(FaultRates(drop=1.0))
    for _ in range(4):  # dropped before forwarding, or cut mid-body: either way no complete response
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            get(proxy, f"/{moto_s3.bucket}?list-type=2")
    proxy.set_rates(FaultRates(slow=1.0, delay_s=0.3))
    start = time.monotonic()
    assert get(proxy, f"/{moto_s3.bucket}?list-type=2")[0] == 200
    assert time.monotonic() - start >= 0.3
    stats = proxy.stats()
    assert stats.requests == 6 and stats.faults == {"error": 1, "drop": 4, "slow": 1} and stats.failed == 5


def test_store_survives_high_fault_rates_and_verifies_every_download(moto_s3, proxy, tmp_path) -> None:
    proxy.set_rates(FaultRates(error=0.2, drop=0.1, slow=0.05, delay_s=0.05))
    store = proxied_store(moto_s3, proxy, retry=RetryPolicy(base_s=0.05))
    src = make_dir(tmp_path / "src")
    for i in range(3):
        store.write_jsonl(f"runs/r/metrics-{i}.jsonl", [{"step": s} for s in range(i + 1)])
        store.put_dir(src, f"runs/r/checkpoints/global_step_{i}")
    for i in range(3):
        assert store.read_jsonl(f"runs/r/metrics-{i}.jsonl") == [{"step": s} for s in range(i + 1)]
        store.get_dir(f"runs/r/checkpoints/global_step_{i}", tmp_path / f"dest-{i}")  # sha256 of every file
        assert (tmp_path / f"dest-{i}" / "model.bin").read_bytes() == (src / "model.bin").read_bytes()
    assert len(store.list_complete("runs/*/checkpoints/global_step_*")) == 3
    stats = proxy.stats()
    assert min(stats.faults.values()) > 0 and stats.requests > stats.forwarded


def test_the_store_retries_what_botocore_gave_up_on(moto_s3, proxy) -> None:
    # botocore retries nothing here; aiohttp resends a request once when a reused keep-alive connection was reset
    once = proxied_store(moto_s3, proxy, retry=NO_RETRY, **NO_BOTOCORE_RETRY)
    proxy.fault_next("drop", 2)
    with pytest.raises(ArtifactStoreError, match="artifact store write failed"):
        once.write_json("run.json", {"status": "running"})
    proxy.reset()
    store = proxied_store(moto_s3, proxy, retry=RetryPolicy(attempts=8, base_s=0.1), **NO_BOTOCORE_RETRY)
    proxy.fault_next("drop", 3)
    before = retry_counts().get("write", 0)
    store.write_json("run.json", {"status": "running"})
    assert store.read_json("run.json") == {"status": "running"}
    assert 1 <= retry_counts()["write"] - before <= 3 == proxy.stats().faults["drop"]


def test_retries_run_out_and_permanent_errors_are_not_retried(moto_s3, proxy) -> None:
    store = proxied_store(moto_s3, proxy, retry=RetryPolicy(attempts=3, base_s=0.01), **NO_BOTOCORE_RETRY)
    before = retry_counts().get("read", 0)
    with pytest.raises(FileNotFoundError):
        store.read_bytes("missing.json")
    assert retry_counts().get("read", 0) == before  # a missing object is an answer, not a fault
    proxy.set_rates(FaultRates(drop=1.0))
    before = retry_counts().get("write", 0)
    with pytest.raises(ArtifactStoreError, match="artifact store write failed"):
        store.write_json("run.json", {})
    assert retry_counts()["write"] - before == 2  # 3 attempts
    assert 3 <= proxy.stats().faults["drop"] <= 6


def test_a_corrupted_object_fails_verification_on_every_retry(moto_s3, proxy, tmp_path) -> None:
    store = proxied_store(moto_s3, proxy, retry=RetryPolicy(attempts=2, base_s=0.01))
    src = make_dir(tmp_path / "src")
    store.put_dir(src, "ckpt")
    store.write_bytes("ckpt/sub/config.json", b'{"layers": 9}')  # same size, other bytes
    before = retry_counts().get("download", 0)
    with pytest.raises(ArtifactIntegrityError, match="sub/config.json"):
        store.get_dir("ckpt", tmp_path / "dest")
    assert retry_counts()["download"] - before == 1
    assert not list((tmp_path / "dest").rglob("*.part-*"))


def test_the_audit_finds_corrupt_manifests_and_complete_runs_missing_files(moto_s3, tmp_path) -> None:
    store = moto_s3.store()
    store.retry = RetryPolicy(attempts=2, base_s=0.01)
    src = make_dir(tmp_path / "src")
    for run_id, status in (("rl-good", "complete"), ("rl-gone", "complete"), ("rl-busy", "running")):
        run = RunLayout(store, run_id)
        run.write_config({"a": 1})
        run.write_command(["x=1"])
        run.write_metrics([{"step": 1}])
        run.upload_checkpoint(src, step=1)
        run.write_run({"kind": "rl", "status": status, "checkpoints": [1]})
    clean = audit_store(store)
    assert (clean.manifests, clean.files_verified, clean.corrupt) == (3, 6, [])
    assert clean.complete_runs == 2 and clean.complete_runs_missing_files == []

    store.write_bytes("runs/rl-good/checkpoints/global_step_1/sub/config.json", b'{"layers": 9}')  # same size
    store.delete("runs/rl-gone/checkpoints/global_step_1/model.bin")
    audit = audit_store(store)
    assert audit.corrupt == ["runs/rl-gone/checkpoints/global_step_1", "runs/rl-good/checkpoints/global_step_1"]
    assert audit.complete_runs_missing_files == ["rl-gone"]  # a size check; the sha256 one is the corrupt list's
