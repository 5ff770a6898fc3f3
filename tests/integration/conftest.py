"""One smoke run per test session (verl SFT + GRPO); other integration tests reuse its SFT model and data."""

from __future__ import annotations

import pytest

from stable_verl.pipeline.config import SmokeConfig, load_config
from stable_verl.pipeline.smoke import SmokeReport, run_smoke


@pytest.fixture(scope="session")
def smoke_config(tmp_path_factory) -> SmokeConfig:
    return load_config(SmokeConfig, "configs/smoke.yaml", [f"workdir={tmp_path_factory.mktemp('smoke')}"])


@pytest.fixture(scope="session")
def smoke_report(smoke_config) -> SmokeReport:
    return run_smoke(smoke_config)
