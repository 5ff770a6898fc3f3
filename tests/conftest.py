"""Shared fixtures: a tokenizer and data built once per session (they are deterministic), a real moto S3
server on 127.0.0.1, and Prefect's test harness (a temporary SQLite-backed API server).

No test contacts a non-loopback address: AWS config files, profiles, IMDS and proxies are disabled while the
moto server runs, and every S3 client gets an explicit ``endpoint_url`` on 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.models.tokenizer import train_tokenizer
from stable_verl.tasks.datasets import TaskSpec, tokenizer_corpus


@pytest.fixture(scope="session")
def task_spec() -> TaskSpec:
    return TaskSpec()


@pytest.fixture(scope="session")
def tokenizer(task_spec):
    return train_tokenizer(tokenizer_corpus(task_spec))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Flows run against a temporary Prefect API server (SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


BUCKET = "stable-verl-test"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "STABLE_VERL_S3_ENDPOINT",
    "STABLE_VERL_ARTIFACT_ROOT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    bucket: str

    def options(self, key: str = "test", secret: str = "test") -> dict:
        return {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def store(self, **option_overrides) -> ArtifactStore:
        """A fresh store under a unique prefix of the shared bucket."""
        return ArtifactStore(f"s3://{self.bucket}/{uuid.uuid4().hex[:10]}", self.options(**option_overrides))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server():
    from moto.server import ThreadedMotoServer

    try:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        return server, server.get_host_and_port()[1]
    except Exception:  # older moto without port-0 support / get_host_and_port
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return server, port


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A real moto S3 server over HTTP on loopback with one bucket; fake credentials in the environment."""
    import s3fs

    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_ENV.items():
            mp.setenv(name, value)
        for name in UNSET_ENV:
            mp.delenv(name, raising=False)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
        server, port = _start_server()
        try:
            moto = MotoS3(endpoint_url=f"http://127.0.0.1:{port}", bucket=BUCKET)
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **moto.options())
            fs.mkdir(BUCKET)
            yield moto
        finally:
            server.stop()
