"""Fixtures: stores over a local folder and over the session's moto S3 server (``moto_s3``, tests/conftest.py)."""

from __future__ import annotations

import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.artifacts.retry import RetryPolicy

FAST_RETRY = RetryPolicy(base_s=0.01)  # what is retried, without the production backoff's seconds


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    """The same tests over a local folder and over the moto S3 server (real s3fs over HTTP)."""
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"), retry=FAST_RETRY)
    store = request.getfixturevalue("moto_s3").store()
    store.retry = FAST_RETRY
    return store
