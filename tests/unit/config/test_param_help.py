"""``stable-verl run FLOW --help``: every parameter of the flow, as an override names it, with its meaning and the
default the flow's own config gives it."""

from __future__ import annotations

import yaml

from flows.registry import FLOWS
from stable_verl.cli import main as cli_main
from stable_verl.config.param_help import flat_params


def test_run_flow_help_lists_every_parameter_with_the_configs_default(capsys):
    assert cli_main(["run", "coldstart", "--help"]) == 0
    out = capsys.readouterr().out
    config = yaml.safe_load(FLOWS["coldstart"].config.read_text())
    assert f"  rl.total_steps  (integer; default {config['rl']['total_steps']})\n      Training steps" in out
    assert "  model.path  (string; default required)" in out  # your model's keys beside the tiny model's
    assert "  task.rl_train  (list of string; default required)" in out
    for p in flat_params(FLOWS["coldstart"].params_class("coldstart")):
        assert f"\n  {p.key}  (" in out


def test_every_flow_parameter_has_a_meaning():
    missing = [
        f"{flow}: {p.key}" for flow in FLOWS for p in flat_params(FLOWS[flow].params_class(flow)) if not p.meaning
    ]
    assert missing == []


def test_help_without_a_flow_is_the_commands_own(capsys):
    assert cli_main(["plan", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: stable-verl plan" in out and "parameters of" not in out
