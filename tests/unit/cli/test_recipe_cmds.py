"""``stable-verl recipes list | show NAME``: every recipe listed; one shown with the exact verl overrides it compiles
to (the ones ``stable-verl plan`` puts in the command line), overrides applied; an unknown one is one line, exit 2."""

from __future__ import annotations

from stable_verl.cli import main as cli_main
from stable_verl.config.recipes import available_recipes, load_recipe


def test_list_names_every_recipe(capsys):
    assert cli_main(["recipes", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"│ {name} " in out for name in available_recipes())


def test_show_prints_the_overrides_the_recipe_compiles_to(capsys):
    assert cli_main(["recipes", "show", "minirl_r3", "eps_high=0.28"]) == 0
    lines = capsys.readouterr().out.splitlines()
    compiled = load_recipe("minirl_r3", ["eps_high=0.28"]).overrides()
    assert lines[lines.index("# verl overrides") + 1 :] == compiled
    assert "actor_rollout_ref.actor.clip_ratio_high=0.28" in compiled and "routing_replay: R3" in lines


def test_an_unknown_recipe_is_one_line_and_exit_2(capsys):
    assert cli_main(["recipes", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown recipe 'nope'; available: cispo" in err[0]
