"""Credentials never reach artifacts, repr, logs or error messages; from_env reads the AWS environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stable_verl.artifacts import REDACTED, ArtifactStore, RunLayout, is_sensitive_key, redact, redact_url, scrub

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"


def test_redact_nested_case_insensitive() -> None:
    obj = {
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "aws_access_key_id": KEY_ID,
        "storage_options": {"key": KEY_ID, "Secret": SECRET, "client_kwargs": {"endpoint_url": "http://x:9000"}},
        "Credentials": {"AccessKeyId": KEY_ID},
        "nested": [{"SessionToken": TOKEN}, {"session-token": TOKEN}, {"password": "hunter22"}],
        "hf_token": "hf_abc",
        "api_key": None,
        "model": {"max_tokens": 512, "pad_token": "<pad>", "tokenizer": "bpe", "key_path": "a.b", "keys": [1]},
    }
    out = redact(obj)
    assert out["AWS_SECRET_ACCESS_KEY"] == out["aws_access_key_id"] == out["hf_token"] == REDACTED
    assert out["storage_options"] == {
        "key": REDACTED,
        "Secret": REDACTED,
        "client_kwargs": {"endpoint_url": "http://x:9000"},
    }
    assert out["Credentials"] == REDACTED
    assert out["nested"] == [{"SessionToken": REDACTED}, {"session-token": REDACTED}, {"password": REDACTED}]
    assert out["api_key"] is None  # "not configured" stays visible
    assert out["model"] == obj["model"]  # ML config that merely looks similar is untouched
    assert obj["aws_access_key_id"] == KEY_ID  # the input is not modified
    assert all(is_sensitive_key(k) for k in ("TOKEN", "aws-secret-access-key", "SecretAccessKey", "db.password"))
    assert not any(is_sensitive_key(k) for k in ("max_new_tokens", "eos_token", "monkey", "PWD", "sort_key"))


def test_scrub_values_and_url_passwords() -> None:
    text = f"--key {KEY_ID} --secret={SECRET} endpoint https://minio:{SECRET}@host:9000/x s3://bucket/a tiny"
    out = scrub(text, [KEY_ID, SECRET, "tiny"])
    assert KEY_ID not in out and SECRET not in out
    assert out.endswith("s3://bucket/a tiny")  # secrets shorter than 8 chars are not scrubbed
    assert redact_url("http://user:pw@host/x") == f"http://user:{REDACTED}@host/x"
    assert redact({"cmd": [f"x={SECRET}"]}, secrets=[SECRET]) == {"cmd": [f"x={REDACTED}"]}


@pytest.fixture(params=["local", "s3"])
def secret_store(request, tmp_path, monkeypatch) -> ArtifactStore:
    """Local: the secret lives in the environment. S3: it is passed explicitly via storage_options."""
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None  # its set-up unsets the token
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    if moto is None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        return ArtifactStore(tmp_path / "artifacts")
    return moto.store(key=KEY_ID, secret=SECRET)


def test_credentials_never_reach_artifacts_repr_or_logs(secret_store, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="stable_verl")
    store = secret_store
    run = RunLayout(store, "train-leak-12345678")
    options = {"key": KEY_ID, "secret": SECRET, "token": TOKEN, "client_kwargs": {"endpoint_url": "http://e"}}
    run.write_run({"kind": "train", "status": "running", "storage_options": options, "note": f"used {SECRET}"})
    run.write_config({"storage": options, "trainer": {"lr": 1e-6}, "cmd": f"aws --secret {SECRET}"})
    run.write_command([f"+storage.secret={SECRET}", f"+storage.key={KEY_ID}", "trainer.total_epochs=1"])
    run.write_metrics([{"step": 1, "AWS_SECRET_ACCESS_KEY": SECRET}])
    store.write_text("notes.md", f"key={KEY_ID} token={TOKEN}\n")
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "w.bin").write_bytes(b"w")
    run.upload_checkpoint(src, 1, metadata={"storage_options": options, "cmd": f"--secret {SECRET}"})
    store.check()
    list_ = store.glob("**")
    blobs = store.cat_many([p for p in list_ if not store.fs.isdir(store._full(p))])
    assert len(blobs) >= 7
    for path, blob in blobs.items():
        for value in (SECRET, KEY_ID, TOKEN):
            assert value.encode() not in blob, f"{value[:4]}... leaked into {path}"
    assert store.read_json(run.run_json)["storage_options"]["client_kwargs"] == {"endpoint_url": "http://e"}
    assert store.read_json(run.command_json)["overrides"][2] == "trainer.total_epochs=1"
    for text in (repr(store), str(store), caplog.text):
        assert SECRET not in text and KEY_ID not in text and TOKEN not in text
    assert "uploaded 1 files" in caplog.text


def test_from_env_uses_endpoint_env_without_copying_the_secret(moto_s3, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="stable_verl")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    store = ArtifactStore.from_env(f"s3://{moto_s3.bucket}/from-env")
    assert store.endpoint_url == moto_s3.endpoint_url
    assert SECRET not in repr(store._options) and KEY_ID not in repr(store._options)
    store.check()  # botocore found the credentials and the moto endpoint on its own
    store.write_json("runs/x/run.json", {"env": {"AWS_SECRET_ACCESS_KEY": SECRET}, "cmd": f"--s {SECRET}"})
    assert SECRET not in store.read_text("runs/x/run.json")
    assert moto_s3.endpoint_url in repr(store)
    for text in (repr(store), caplog.text):
        assert SECRET not in text and KEY_ID not in text

    monkeypatch.setenv("STABLE_VERL_S3_ENDPOINT", "http://127.0.0.1:1")  # the project's own variable wins
    assert ArtifactStore.from_env("s3://b/x").endpoint_url == "http://127.0.0.1:1"
    assert ArtifactStore.from_env("s3://b/x", endpoint_url="http://minio:9000").endpoint_url == "http://minio:9000"


def test_secret_in_aws_credentials_and_config_files_reaches_nothing(moto_s3, tmp_path, monkeypatch, caplog) -> None:
    """Credentials read by botocore from AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE stay out of the store."""
    caplog.set_level(logging.DEBUG, logger="stable_verl")
    file_secret, config_secret = SECRET + "-file", SECRET + "-config"
    creds, config = tmp_path / "credentials", tmp_path / "config"
    creds.write_text(f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {file_secret}\n")
    config.write_text(f"[profile other]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {config_secret}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    store = ArtifactStore.from_env(f"s3://{moto_s3.bucket}/from-file")
    store.check()  # botocore found the file's credentials
    store.write_json("runs/rl-file-creds-00000000/run.json", {"status": "running"})
    store.write_text("runs/rl-file-creds-00000000/config.yaml", "rl:\n  lr: 1.0e-4\n")
    with pytest.raises(Exception) as err:
        ArtifactStore.from_env("s3://no-such-bucket-xyz/p").check()
    texts = [repr(store), caplog.text, str(err.value)] + [store.read_text(p) for p in store.glob("**") if "." in p]
    for text in texts:
        assert file_secret not in text and config_secret not in text


def test_from_env_local_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STABLE_VERL_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = ArtifactStore.from_env()
    assert store.is_local and store.uri() == str(Path("artifacts").resolve()) and store.endpoint_url is None
    monkeypatch.setenv("STABLE_VERL_ARTIFACT_ROOT", str(tmp_path / "art"))
    assert ArtifactStore.from_env().uri("runs") == str(tmp_path / "art" / "runs")
