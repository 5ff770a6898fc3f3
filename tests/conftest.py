"""Shared fixtures: a tokenizer and data built once per session (they are deterministic)."""

from __future__ import annotations

import pytest

from stable_verl.models.tokenizer import train_tokenizer
from stable_verl.tasks.datasets import TaskSpec, tokenizer_corpus


@pytest.fixture(scope="session")
def task_spec() -> TaskSpec:
    return TaskSpec()


@pytest.fixture(scope="session")
def tokenizer(task_spec):
    return train_tokenizer(tokenizer_corpus(task_spec))
