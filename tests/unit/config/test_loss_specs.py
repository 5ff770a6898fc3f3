"""Recipes compile without verl: ``stable-verl recipes list|show`` and ``plan`` import none of verl, torch, Ray or
vLLM, and the verl-free table of losses (:mod:`stable_verl.core.loss_specs`) agrees with what verl has registered."""

from __future__ import annotations

import dataclasses
import importlib
import sys

import pytest

from stable_verl.config.recipes import Recipe, available_recipes, load_recipe
from stable_verl.core.loss_specs import LOSS_SPECS
from tests.support import progress

HEAVY = ("verl", "torch", "ray", "vllm")

_PROBE = """
import contextlib, io, sys
from stable_verl.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main({argv!r})
print(code, len(out.getvalue()), sorted(m for m in {heavy!r} if m in sys.modules))
"""


def _torch_is_cpu_build() -> bool:
    from stable_verl.config.cpu_env import _torch_has_gpu_build

    return not _torch_has_gpu_build()


@pytest.mark.parametrize(
    "argv",
    [["recipes", "list"], ["recipes", "show", "minirl"], ["recipes", "show", "cispo"], ["plan", "coldstart"]],
    ids=" ".join,
)
def test_recipes_and_plan_import_no_verl(argv):
    """A fresh interpreter, as a user's shell starts one: the command prints its output with none of verl, torch,
    Ray or vLLM imported. (On a torch built for CUDA, ``plan`` asks torch whether a GPU is there.)"""
    heavy = HEAVY if argv[0] == "recipes" or _torch_is_cpu_build() else ("verl", "ray", "vllm")
    code = _PROBE.format(argv=argv, heavy=heavy)
    done = progress.run([sys.executable, "-c", code])
    status, printed, loaded = done.stdout.split(maxsplit=2)
    assert (status, loaded.strip()) == ("0", "[]"), done.stdout + done.stderr[-2000:]
    assert int(printed) > 0


def test_minirl_compiles_its_block_from_the_table():
    """The minirl block becomes the config class, each switch in declaration order, then verl's rollout correction;
    the ablation without train-infer IS drops the correction."""
    actor = "actor_rollout_ref.actor"
    out = load_recipe("minirl").overrides()
    start = out.index(f"{actor}.policy_loss._target_=stable_verl.verl_ext.minirl_loss.MiniRLLossConfig")
    assert out[start + 1 : start + 6] == [
        f"+{actor}.policy_loss.tis_cap=5.0",
        f"+{actor}.policy_loss.truncation=full",
        f"+{actor}.policy_loss.train_infer_is=True",
        f"+{actor}.policy_loss.clipping=True",
        f"+{actor}.policy_loss.staleness_is=True",
    ]
    assert "algorithm.rollout_correction.rollout_is=token" in out
    no_is = load_recipe("minirl_no_is").overrides()
    assert not any(o.startswith("algorithm.rollout_correction") for o in no_is)
    assert not any("policy_loss._target_" in o for o in load_recipe("grpo").overrides())


def test_the_table_and_verls_registry_agree():
    """Every loss stable-verl registers with verl is in the table, under the same name and with the same config
    class, and the class's own fields (beyond verl's PolicyLossConfig) are the recipe block's fields."""
    import verl  # noqa: F401  (loads stable-verl's verl plugin, which registers the losses)
    from verl.trainer.ppo import core_algos
    from verl.workers.config import PolicyLossConfig

    from stable_verl.verl_ext.registry import LOSS_CONFIG_CLASSES

    assert set(LOSS_CONFIG_CLASSES) == set(LOSS_SPECS)
    for name, spec in LOSS_SPECS.items():
        assert name in core_algos.POLICY_LOSS_REGISTRY, name
        cls = LOSS_CONFIG_CLASSES[name]
        if spec.block is None:
            assert cls is None and spec.config_class is None, name
            continue
        module, _, qualname = spec.config_class.rpartition(".")
        assert getattr(importlib.import_module(module), qualname) is cls, name
        own = {f.name for f in dataclasses.fields(cls)} - {f.name for f in dataclasses.fields(PolicyLossConfig)}
        block = getattr(Recipe(), spec.block)
        assert own == {f.name for f in dataclasses.fields(block)}, name


def test_registering_an_undeclared_loss_or_another_config_class_fails():
    from stable_verl.verl_ext.minirl_loss import minirl_policy_loss
    from stable_verl.verl_ext.registry import register_policy_loss

    with pytest.raises(ValueError, match="not declared in stable_verl.core.loss_specs"):
        register_policy_loss("undeclared_loss")(lambda **kw: None)
    with pytest.raises(ValueError, match="registers config class builtins.dict, but .* declares .*MiniRLLossConfig"):
        register_policy_loss("minirl", dict)(minirl_policy_loss)


def test_every_recipe_loss_with_a_block_is_in_the_table():
    for name in available_recipes():
        recipe = load_recipe(name)
        spec = LOSS_SPECS.get(recipe.loss_mode)
        assert spec is None or spec.block is None or hasattr(recipe, spec.block), name
