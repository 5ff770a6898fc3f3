"""Shared fixtures: a tokenizer and data built once per session (they are deterministic), a real moto S3
server on 127.0.0.1 (tests/support/s3.py), and Prefect's test harness (a temporary SQLite-backed API server).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from stable_verl.models.tokenizer import train_tokenizer
from stable_verl.tasks.datasets import TaskSpec, tokenizer_corpus
from tests.support.s3 import BUCKET, MotoS3, moto_server

# Prefect's temporary-server start-up wait is a fixed limit of Prefect's own that cannot see progress (20 s by
# default, 120 s in flows/__init__.py and the Makefile). The test session, and every flow process it starts (each
# starts a server of its own), get 600 s: set before Prefect is imported (it reads its settings once; nothing above
# imports it), a higher value kept.
STARTUP_KEY, PREFECT_STARTUP_S = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 600
os.environ[STARTUP_KEY] = str(max(PREFECT_STARTUP_S, int(os.environ.get(STARTUP_KEY) or 0)))


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
