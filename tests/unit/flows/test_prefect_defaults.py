"""Flows started outside make get a Prefect start-up limit a busy machine can meet, and a way out when it is not."""

from __future__ import annotations

import os
import subprocess
import sys

from flows._main import _server_hint

READ = (
    "import flows\n"
    "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S\n"
    "print(S.value())\n"
)


def _limit(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    out = subprocess.run([sys.executable, "-c", READ], env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_the_flows_raises_prefects_startup_limit_unless_the_user_set_one():
    assert _limit() == "120"  # Prefect's own default is 20 s
    assert _limit(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="45") == "45"


def test_a_server_that_did_not_start_is_one_line_naming_both_ways_out(monkeypatch):
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    exc = RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server. stdout: ...")
    hint = _server_hint(exc)
    assert hint is not None and "\n" not in hint
    assert "within 120 s" in hint and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in hint
    assert "PREFECT_API_URL" in hint
    assert _server_hint(RuntimeError("verl sft failed")) is None


def test_the_test_session_raises_prefects_startup_limit_for_itself_and_its_flow_processes():
    # tests/conftest.py: the harness's server and a flow's own in a child process wait on Prefect's setting.
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S

    from tests.support.prefect_startup import PREFECT_STARTUP_S

    assert S.value() >= PREFECT_STARTUP_S
    assert int(os.environ[S.name]) >= PREFECT_STARTUP_S  # what the flow processes tests start inherit
