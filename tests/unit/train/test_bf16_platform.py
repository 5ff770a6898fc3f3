"""Native bf16 detected once; without it SFT trains in fp32 and a bf16 rollout is emulated; with it nothing changes.

The golden command lines (golden/command_lines.json) were printed by main at 0e21768, before the detection existed:
on a CPU with native bf16 (this machine has avx512_bf16) every command line must stay byte-identical to them, but for
the settings changed since on purpose (:data:`SINCE_MAIN`: the demo's SFT saves a resumable checkpoint every 100
steps; the built-in reward is named by module).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath

import pytest

import stable_verl
from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.run_record import RunRecord, cpu_label
from stable_verl.config import cpu_env
from stable_verl.config.params import ColdstartParams
from stable_verl.train import stages as train_stages
from stable_verl.train import verl_command
from stable_verl.train.assets import Assets

GOLDEN = Path(__file__).parents[1] / "golden" / "command_lines.json"
SINCE_MAIN = {
    "trainer.save_freq=-1": "trainer.save_freq=100",  # configs/coldstart.yaml sft.save_freq
    # the built-in reward by module, not by this machine's file path (a cluster's nodes have their own install)
    "reward.custom_reward_function.path=<repo>/stable_verl/tasks/reward.py": (
        "reward.custom_reward_function.path=pkg://stable_verl.tasks.reward"
    ),
}


def _golden() -> dict[str, list[str]]:
    return {k: [SINCE_MAIN.get(x, x) for x in v] for k, v in json.loads(GOLDEN.read_text()).items()}


FP32_SFT = "+engine.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"


def _command_lines() -> dict[str, list[str]]:
    """The shipped cold-start config's SFT and RL command lines, CPU and GPU, normalised as the golden file is."""
    root = str(Path(stable_verl.__file__).resolve().parent.parent)
    p = ColdstartParams.from_config("configs/coldstart.yaml", [])
    sft, rl = p.sft_params("terse", 0), p.rl_params("sft-terse-00000000", 0)
    m, t, v, o = (PurePosixPath(x) for x in ("/m", "/t.parquet", "/v.parquet", "/run/checkpoints"))
    out = {}
    for cpu in (True, False):
        out[f"sft_cpu={cpu}"] = verl_command.sft_argv(sft.sft, m, t, v, o, 1, cpu=cpu)
        out[f"rl_cpu={cpu}"] = verl_command.ppo_overrides(rl.rl, m, t, v, o, 0, cpu=cpu)
    return {k: ["python" if x == sys.executable else x.replace(root, "<repo>") for x in a] for k, a in out.items()}


def test_cpu_flags_and_native_bf16_detection(tmp_path, monkeypatch):
    x86, arm, old = tmp_path / "x86", tmp_path / "arm", tmp_path / "avx2"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    old.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_env.cpu_flags(str(x86)) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}  # the first processor
    assert cpu_env.BF16_FLAGS & cpu_env.cpu_flags(str(arm)) == {"bf16"}
    assert not cpu_env.BF16_FLAGS & cpu_env.cpu_flags(str(old))
    assert cpu_env.cpu_flags(str(tmp_path / "missing")) == frozenset()
    monkeypatch.setattr(cpu_env, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.delenv(cpu_env.NATIVE_BF16_ENV, raising=False)
    assert not cpu_env.native_bf16()
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "1")
    assert cpu_env.native_bf16()
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "0")
    assert not cpu_env.native_bf16()
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match="STABLE_VERL_NATIVE_BF16 must be 0 or 1"):
        cpu_env.native_bf16()


def test_command_lines_are_unchanged_with_native_bf16(monkeypatch):
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "1")
    assert _command_lines() == _golden()


def test_this_machine_detects_its_bf16_and_keeps_its_command_lines(monkeypatch):
    monkeypatch.delenv(cpu_env.NATIVE_BF16_ENV, raising=False)
    if not cpu_env.BF16_FLAGS & cpu_env.cpu_flags():
        pytest.skip("this CPU has no native bf16")
    assert cpu_env.native_bf16()
    assert _command_lines() == _golden()


def test_without_native_bf16_sft_trains_in_fp32_and_a_bf16_rollout_is_emulated(monkeypatch):
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "0")
    golden, now = _golden(), _command_lines()
    assert now["sft_cpu=True"] == [*golden["sft_cpu=True"], FP32_SFT]  # one override added, nothing else
    changed = [(a, b) for a, b in zip(golden["rl_cpu=True"], now["rl_cpu=True"], strict=True) if a != b]
    assert changed == [("actor_rollout_ref.rollout.dtype=bfloat16", "actor_rollout_ref.rollout.dtype=float32")]
    assert now["sft_cpu=False"] == golden["sft_cpu=False"] and now["rl_cpu=False"] == golden["rl_cpu=False"]  # GPU
    # The weights vLLM samples with are rounded to bf16 (an fp8 stress rounding, coarser, stays as it is).
    assert cpu_env.rollout_numerics("bfloat16", "native", cpu=True) == ("float32", "bf16")
    assert cpu_env.rollout_numerics("bfloat16", "fp8", cpu=True) == ("float32", "fp8")
    assert cpu_env.rollout_numerics("float32", "native", cpu=True) == ("float32", "native")
    assert cpu_env.rollout_numerics("bfloat16", "native", cpu=False) == ("bfloat16", "native")


def test_the_rl_job_rounds_the_rollout_weights_and_records_the_platform(monkeypatch, tmp_path):
    p = ColdstartParams.from_config("configs/coldstart.yaml", [f"workdir={tmp_path}"]).rl_params("sft-x-0", 0)
    assets = Assets(
        model_dir=tmp_path / "m", data={"rl_train": tmp_path / "t", "rl_val": tmp_path / "v"}, root=tmp_path
    )
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "0")
    job = train_stages.rl_job(p, assets, tmp_path / "m", None)
    assert job.env["STABLE_VERL_ROLLOUT_PRECISION"] == "bf16"
    assert job.platform() == {
        "cpu_capability": cpu_env.cpu_capability(),
        "native_bf16": False,
        "bf16": "emulated: SFT/RL train in fp32, a bf16 rollout runs fp32 on bf16-rounded weights",
    }
    assert train_stages.rl_run_id(p, None) == _native_run_id(monkeypatch, p)  # run ids never change
    monkeypatch.setenv(cpu_env.NATIVE_BF16_ENV, "1")
    job = train_stages.rl_job(p, assets, tmp_path / "m", None)
    assert job.env["STABLE_VERL_ROLLOUT_PRECISION"] == "native"
    assert job.platform() == {"cpu_capability": cpu_env.cpu_capability(), "native_bf16": True}


def _native_run_id(monkeypatch, p) -> str:
    with monkeypatch.context() as m:
        m.setenv(cpu_env.NATIVE_BF16_ENV, "1")
        return train_stages.rl_run_id(p, None)


def test_run_record_names_the_cpu(tmp_path):
    run = RunLayout(ArtifactStore(str(tmp_path / "store")), "sft-terse-00000000")
    platform = {"cpu_capability": "AVX2", "native_bf16": False, "bf16": "emulated: ..."}
    RunRecord.started(run, "sft", "terse", 1, 2, None, platform)
    record = RunRecord.read(run)
    assert record is not None and record.platform == platform and record.cpu == "AVX2, bf16 emulated"
    assert cpu_label({"cpu_capability": "AVX512", "native_bf16": True}) == "AVX512, native bf16"
    assert cpu_label({}) == "unknown" and RunRecord("old-run").cpu == "unknown"  # records written before the field
