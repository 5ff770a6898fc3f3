"""Shared fixtures: a tokenizer and data built once per session (they are deterministic), a real moto S3
server on 127.0.0.1 (tests/support/s3.py), and Prefect's test harness (a temporary SQLite-backed API server).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stable_verl.models.tokenizer import train_tokenizer
from stable_verl.tasks.datasets import TaskSpec, tokenizer_corpus
from tests.support.prefect_startup import raise_startup_limit
from tests.support.s3 import BUCKET, MotoS3, moto_server

raise_startup_limit()  # before anything imports Prefect (tests/support/prefect_startup.py)


@pytest.fixture(scope="session")
def task_spec() -> TaskSpec:
    return TaskSpec()


@pytest.fixture(scope="session")
def tokenizer(task_spec):
    return train_tokenizer(tokenizer_corpus(task_spec))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Flows run against a temporary Prefect API server (SQLite) for the whole session; its start-up limit is
    Prefect's setting (raised above)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A real moto S3 server over HTTP on loopback with one bucket; fake credentials in the environment."""
    with moto_server(BUCKET) as moto:
        yield moto
