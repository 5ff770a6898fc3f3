"""Bad input fails before anything starts: one clear line, a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stable_verl.cli import main
from stable_verl.config.params import ColdstartParams
from stable_verl.config.stages import RLStage
from stable_verl.config.yaml_config import load_yaml
from stable_verl.train.verl_command import ppo_overrides


def test_yaml_and_overrides_merge_onto_the_schema(tmp_path):
    cfg = ColdstartParams.from_config("configs/coldstart.yaml", ["rl.total_steps=5", "sft.teacher=verbose"])
    assert cfg.rl.total_steps == 5 and cfg.sft.teacher == "verbose"
    assert cfg.model.num_experts == 8  # schema default not in the YAML


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["rl.recipe=minirl_offpolicy", "rl.train_batch_size=7"], "multiple of the recipe's minibatches"),
        (["rl.recipe=minirl_typo"], "unknown recipe 'minirl_typo'; available: cispo, dppo_tv, grpo, minirl"),
        (["rl.recipe_overrides=[minirl.tis_cap=0]"], "tis_cap"),
        (["rl.no_such_key=1"], "no_such_key"),
        (["rl.total_steps=abc"], "total_steps"),
        (["rl.rollout_dtype=fp8"], "rollout_dtype"),
        (["sft.batch_size=0"], "batch_size must be > 0"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(override, message):
    with pytest.raises(ValueError, match=message):
        ColdstartParams.from_config("configs/coldstart.yaml", override)


def test_malformed_yaml_is_one_line_naming_the_file_and_place(tmp_path, capsys):
    bad = tmp_path / "coldstart.yaml"
    bad.write_text("rl:\n  total_steps: 3\n    lr: 1\n")  # a mapping value where none may start
    with pytest.raises(ValueError, match=r"is not valid YAML \(line 3, column 7\): mapping values are not allowed"):
        load_yaml(bad)
    assert main(["plan", "coldstart", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stable-verl: error: config file {bad} is not valid YAML")


def test_cli_exits_2_with_one_line(capsys):
    assert main(["plan", "rl", "rl.recipe=minirl_offpolicy", "rl.train_batch_size=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stable-verl: error: ")


def test_cli_missing_config_file():
    out = subprocess.run(
        [sys.executable, "-m", "stable_verl.cli", "plan", "rl", "--config", "nope.yaml"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "stable-verl: error: config file not found: nope.yaml"


def test_plan_prints_the_cpu_settings(capsys):
    assert main(["plan", "coldstart"]) == 0
    out = capsys.readouterr().out
    assert "verl.trainer.main_ppo" in out and "verl.trainer.sft_trainer" in out
    assert "actor_rollout_ref.rollout.name=vllm" in out


def test_rl_overrides_carry_the_reward_hook(tmp_path):
    overrides = ppo_overrides(
        RLStage(format_bonus=0.25), tmp_path / "m", tmp_path / "t", tmp_path / "v", tmp_path / "c"
    )
    hook = [o for o in overrides if o.startswith("reward.custom_reward_function.")]
    # By module, not by this machine's file path: a cluster's nodes import it from their own install.
    assert hook[:2] == [
        "reward.custom_reward_function.path=pkg://stable_verl.tasks.reward",
        "reward.custom_reward_function.name=compute_score",
    ]
    assert "+reward.custom_reward_function.reward_kwargs.format_bonus=0.25" in overrides


def test_plan_names_the_runs_the_stages_will_be(capsys):
    """The plan's RL stage starts from its SFT stage's last checkpoint: the run ids the tracked stages compute."""
    from stable_verl.artifacts import checkpoint_path
    from stable_verl.train.stages import rl_run_id, sft_run_id

    params = ColdstartParams.from_config("configs/coldstart.yaml", ["teachers=[terse]"])
    sft = sft_run_id(params.sft_params("terse", 0))
    rl = rl_run_id(params.rl_params(sft, 0), checkpoint_path(sft, params.sft.steps))
    assert main(["plan", "coldstart", "teachers=[terse]"]) == 0
    headings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# ")]
    assert headings == [f"# SFT {sft}", f"# RL {rl}"]
