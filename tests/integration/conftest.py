"""Session fixtures for the integration tests.

* ``coldstart_e2e``: one cold-start comparison run end to end (coldstart_e2e.py), used by test_coldstart_flow.py
  only, with ``e2e_report`` (its clean init's RL stage in the smoke report's shape).
* ``smoke_config`` / ``sft_model``: the verl run tests' own small SFT model (configs/smoke.yaml's regime, pinned here
  so no YAML edit moves it), built once without Prefect or S3, so a failure of the e2e flow does not turn the MiniRL,
  routing and evaluation tests into errors.
* ``minirl_run``: the MiniRL off-policy run on that model (``minirl_rows``, ``rl_checkpoint``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from stable_verl.artifacts import RunLayout
from stable_verl.pipeline import stages
from stable_verl.pipeline.config import SmokeConfig, load_config
from stable_verl.pipeline.evaluate import ensure_hf_model
from stable_verl.pipeline.smoke import SmokeReport, summarize
from stable_verl.pipeline.training import fetch_checkpoint
from tests.integration.coldstart_e2e import E2E, run_e2e

E2E_TEACHER = "stepwise"  # the e2e init whose clean RL stage ``e2e_report`` summarises

# configs/smoke.yaml's small regime, every value the verl run tests rely on written out.
SMOKE_SETTINGS = [
    "seed=0",
    "model.kind=moe",  # tiny Qwen3-MoE, 8 experts top-2: the routing tests need the routers
    "model.num_layers=2",
    "task.difficulty=1",
    "task.max_operand=null",  # 0..19
    "task.n_rl_train=64",
    "task.n_sft=256",
    "task.n_bench=32",
    "sft.teacher=stepwise",
    "sft.steps=40",  # enough for well-formed answers, so RL has reward variance (about 1 min of verl SFT)
    "sft.batch_size=16",
    "sft.micro_batch_size=8",
    "sft.lr=1e-3",
    "sft.lr_schedule=cosine",
    "rl.total_steps=3",
    "rl.train_batch_size=8",
    "rl.rollout_n=4",
    "rl.micro_batch_size=16",
    "rl.lr=1e-4",
    "rl.rollout_dtype=float32",
    "rl.train_dtype=float32",
    "rl.format_bonus=0.1",
    "rl.save_freq=-1",
]


@pytest.fixture(scope="session")
def smoke_config(tmp_path_factory) -> SmokeConfig:
    return load_config(SmokeConfig, None, [f"workdir={tmp_path_factory.mktemp('smoke')}", *SMOKE_SETTINGS])


@pytest.fixture(scope="session")
def sft_model(smoke_config) -> Path:
    """verl SFT of the tiny MoE on ``smoke_config``: the HF directory of its last checkpoint (data in workdir/data)."""
    cfg, workdir = smoke_config, Path(smoke_config.workdir)
    assets = stages.build_assets(workdir, cfg.model, cfg.task, cfg.seed)
    model, _ = stages.run_sft(cfg.sft, assets.model_dir, assets.data, workdir / "sft", cfg.seed)
    return model


def rl_data(smoke_config) -> dict[str, Path]:
    return {p.stem: p for p in (Path(smoke_config.workdir) / "data").glob("*.parquet")}


# Below the largest pi_theta/mu_old of every step: with fp8 rollouts (and the stale second mini-batch) the uncapped
# weight reached 1.08-1.25 per step (max over tokens), so a cap of 1.05 binds on 2-11% of the tokens each step.
MINIRL_TIS_CAP = 1.05


@pytest.fixture(scope="session")
def minirl_run(smoke_config, sft_model, tmp_path_factory) -> Path:
    """MiniRL off-policy (N=2), no routing replay, vLLM weights rounded through fp8, vLLM's routes fetched for
    the routing-mismatch metric, the TIS cap lowered so that it binds; checkpoint at step 3. The
    no-replay arm of the R3 comparison. Returns the run's folder."""
    rl = dataclasses.replace(
        smoke_config.rl,
        recipe="minirl_offpolicy",
        recipe_overrides=["rollout_routes=true", f"minirl.tis_cap={MINIRL_TIS_CAP}"],
        rollout_precision="fp8",
        save_freq=smoke_config.rl.total_steps,
    )
    out = tmp_path_factory.mktemp("minirl")
    stages.run_rl(rl, sft_model, rl_data(smoke_config), out)
    return out


@pytest.fixture(scope="session")
def minirl_rows(minirl_run) -> tuple[list[dict], str]:
    """(metrics rows, command.json text) of ``minirl_run``."""
    return stages.read_metrics(minirl_run / "metrics.jsonl"), (minirl_run / "command.json").read_text()


@pytest.fixture(scope="session")
def rl_checkpoint(minirl_run) -> Path:
    """``minirl_run``'s last checkpoint (``global_step_3``: FSDP shards + ``actor/huggingface``)."""
    return stages.latest_checkpoint(minirl_run / "checkpoints")


@pytest.fixture(scope="session")
def coldstart_e2e(prefect_harness, moto_s3, tmp_path_factory) -> E2E:
    secret = "e2e-secret-0123456789abcdef"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        return run_e2e(tmp_path_factory.mktemp("coldstart"), moto_s3.endpoint_url, moto_s3.bucket, secret)


@pytest.fixture(scope="session")
def e2e_report(coldstart_e2e) -> SmokeReport:
    """The e2e run's clean init: its SFT model (local), RL metrics (from S3) and last RL checkpoint (local)."""
    e2e, workdir = coldstart_e2e, Path(coldstart_e2e.params.workdir)
    init = next(i for i in e2e.result["inits"] if i["teacher"] == E2E_TEACHER)
    sft, rl = (next(s for s in e2e.result["stages"] if s["run_id"] == init[k]) for k in ("sft_run", "rl_run"))
    sft_run, rl_run = RunLayout(e2e.store, sft["run_id"]), RunLayout(e2e.store, rl["run_id"])
    sft_model = ensure_hf_model(fetch_checkpoint(sft_run, sft_run.latest_checkpoint(), workdir))
    last = fetch_checkpoint(rl_run, rl_run.latest_checkpoint(), workdir)
    metrics = workdir / f"{rl_run.run_id}-metrics.jsonl"  # verl's file-logger format, as summarize reads it
    rows = rl_run.read_metrics()
    metrics.write_text("".join(json.dumps({"step": r["step"], "data": r}) + "\n" for r in rows))
    return summarize(metrics, last.parent, sft_model, sft["verl_s"], rl["verl_s"])
