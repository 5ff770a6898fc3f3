"""Session fixtures: one cold-start comparison run end to end (coldstart_e2e.py), and, in the shape the smoke run
used to give them, its clean init's SFT model, data and RL outputs for the other integration tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stable_verl.artifacts import RunLayout
from stable_verl.pipeline.config import SmokeConfig, load_config
from stable_verl.pipeline.evaluate import ensure_hf_model
from stable_verl.pipeline.smoke import SmokeReport, summarize
from stable_verl.pipeline.training import fetch_checkpoint, prepare_assets
from tests.integration.coldstart_e2e import E2E, run_e2e

SMOKE_TEACHER = "stepwise"  # the e2e init whose runs stand in for the smoke run (configs/smoke.yaml's teacher)


@pytest.fixture(scope="session")
def coldstart_e2e(prefect_harness, moto_s3, tmp_path_factory) -> E2E:
    secret = "e2e-secret-0123456789abcdef"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        return run_e2e(tmp_path_factory.mktemp("coldstart"), moto_s3.endpoint_url, moto_s3.bucket, secret)


@pytest.fixture(scope="session")
def smoke_config(coldstart_e2e) -> SmokeConfig:
    """configs/smoke.yaml over the e2e run's locally built tiny model and task data (``workdir/{models,data}``)."""
    params = coldstart_e2e.params.sft_params(SMOKE_TEACHER, coldstart_e2e.params.seeds[0])
    assets = prepare_assets(Path(params.workdir), params)
    workdir = next(iter(assets.data.values())).parent.parent
    return load_config(SmokeConfig, "configs/smoke.yaml", [f"workdir={workdir}", f"sft.teacher={SMOKE_TEACHER}"])


@pytest.fixture(scope="session")
def smoke_report(coldstart_e2e) -> SmokeReport:
    """The e2e run's clean init: its SFT model (local), RL metrics (from S3) and last RL checkpoint (local)."""
    e2e, workdir = coldstart_e2e, Path(coldstart_e2e.params.workdir)
    init = next(i for i in e2e.result["inits"] if i["teacher"] == SMOKE_TEACHER)
    sft, rl = (next(s for s in e2e.result["stages"] if s["run_id"] == init[k]) for k in ("sft_run", "rl_run"))
    sft_run, rl_run = RunLayout(e2e.store, sft["run_id"]), RunLayout(e2e.store, rl["run_id"])
    sft_model = ensure_hf_model(fetch_checkpoint(sft_run, sft_run.latest_checkpoint(), workdir))
    last = fetch_checkpoint(rl_run, rl_run.latest_checkpoint(), workdir)
    metrics = workdir / f"{rl_run.run_id}-metrics.jsonl"  # verl's file-logger format, as summarize reads it
    rows = rl_run.read_metrics()
    metrics.write_text("".join(json.dumps({"step": r["step"], "data": r}) + "\n" for r in rows))
    return summarize(metrics, last.parent, sft_model, sft["verl_s"], rl["verl_s"])


@pytest.fixture(scope="session")
def minirl_rows(smoke_config, smoke_report, tmp_path_factory):
    """MiniRL off-policy (N=2), no routing replay, vLLM weights rounded through fp8, vLLM's routes fetched for
    the routing-mismatch metric: (metrics rows, command.json text). The no-replay arm of the R3 comparison."""
    import dataclasses
    from pathlib import Path

    from stable_verl.pipeline import stages

    rl = dataclasses.replace(
        smoke_config.rl, recipe="minirl_offpolicy", recipe_overrides=["rollout_routes=true"], rollout_precision="fp8"
    )
    data = {p.stem: p for p in (Path(smoke_config.workdir) / "data").glob("*.parquet")}
    out = tmp_path_factory.mktemp("minirl")
    metrics, _ = stages.run_rl(rl, Path(smoke_report.sft_model), data, out)
    return stages.read_metrics(metrics), (out / "command.json").read_text()
