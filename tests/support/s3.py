"""A real moto S3 server on loopback: its bucket, the environment it runs in, stores on it (the ``moto_s3``
fixture of tests/conftest.py starts one per session).

No test contacts a non-loopback address: AWS config files, profiles, IMDS and proxies are disabled while the
server runs (:data:`FAKE_ENV`, :data:`UNSET_ENV`), and every S3 client gets an explicit ``endpoint_url``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stable_verl.artifacts import ArtifactStore

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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto_server():
    """A moto S3 server on 127.0.0.1 (started; the caller stops it) and its port."""
    from moto.server import ThreadedMotoServer

    try:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        return server, server.get_host_and_port()[1]
    except Exception:  # older moto without port-0 support / get_host_and_port
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return server, port


@contextlib.contextmanager
def moto_server(bucket: str = BUCKET) -> Iterator[MotoS3]:
    """A moto S3 server over HTTP on loopback with ``bucket``; fake credentials in the environment meanwhile."""
    import s3fs

    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_ENV.items():
            mp.setenv(name, value)
        for name in UNSET_ENV:
            mp.delenv(name, raising=False)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
        server, port = start_moto_server()
        try:
            moto = MotoS3(endpoint_url=f"http://127.0.0.1:{port}", bucket=bucket)
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **moto.options())
            if not fs.exists(bucket):  # moto keeps one in-process backend for all its servers
                fs.mkdir(bucket)
            yield moto
        finally:
            server.stop()


def local_or_s3(request: pytest.FixtureRequest, tmp_path) -> ArtifactStore:
    """For a fixture parametrised ``["local", "s3"]``: a store in ``tmp_path/store`` or a fresh one on moto S3."""
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    return request.getfixturevalue("moto_s3").store()
