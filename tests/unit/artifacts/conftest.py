"""Fixtures: stores over a local folder and over the session's moto S3 server (``moto_s3``, tests/conftest.py)."""

from __future__ import annotations

import pytest

from stable_verl.artifacts import ArtifactStore
from tests.conftest import BUCKET, FAKE_ENV, UNSET_ENV, MotoS3, _free_port, _start_server

__all__ = ["BUCKET", "FAKE_ENV", "UNSET_ENV", "MotoS3", "_free_port", "_start_server"]  # re-exported for other tests


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    """The same tests over a local folder and over the moto S3 server (real s3fs over HTTP)."""
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    return request.getfixturevalue("moto_s3").store()
