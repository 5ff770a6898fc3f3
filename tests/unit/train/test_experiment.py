"""Each comparison's stage graph is declared once (stable_verl/train/experiment.py): the plan prints it and the flows
run it. The plan's stages are the graph's, run id for run id; the flows build their stages from the graph alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stable_verl.artifacts import checkpoint_path
from stable_verl.config.params import ColdstartParams, StabilityGridParams
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.train.checkpoint_import import IMPORT_STEP, import_run_id
from stable_verl.train.experiment import Experiment, coldstart_graph, grid_graph
from stable_verl.train.plan import PlannedStage, plan_coldstart, plan_stability_grid
from stable_verl.train.stages import rl_run_id, sft_run_id

ROOT = Path(__file__).resolve().parents[3]


def _graph_stages(graph: Experiment) -> list[tuple[str, str]]:
    """(kind, run id) of the graph's stages in plan order: each init before its first cell, then its cells' RL."""
    stages, seen = [], set()
    for cell in graph.cells:
        init = cell.init
        if init is None:
            stages.append(("rl", f"<rl run from {cell.params.init_run}>"))
            continue
        if init.run_id not in seen:
            seen.add(init.run_id)
            stages.append((init.kind, init.run_id))
        stages.append(("rl", rl_run_id(cell.params, checkpoint_path(init.run_id, init.last_step))))
    return stages


def _planned(stages: list[PlannedStage]) -> list[tuple[str, str]]:
    return [(s.kind, s.run_id) for s in stages]


def test_the_coldstart_graph_declares_each_init_and_the_cells_from_it(tokenizer, tmp_path):
    checkpoint = save_tiny_model(tmp_path / "sft-a", TinyModelSpec(), tokenizer, seed=7)
    argv = [f"workdir={tmp_path / 'work'}", f"init_checkpoints.mine={checkpoint}", "seeds=[0,1]", "teachers=[terse]"]
    p = ColdstartParams.from_config(None, argv)
    graph = coldstart_graph(p)
    sft0, sft1 = sft_run_id(p.sft_params("terse", 0)), sft_run_id(p.sft_params("terse", 1))
    imported = import_run_id("mine", p.init_checkpoints["mine"])
    assert [(i.label, i.kind, i.run_id, i.last_step) for i in graph.inits] == [
        ("terse/seed0", "sft", sft0, p.sft.steps),
        ("terse/seed1", "sft", sft1, p.sft.steps),
        ("mine", "import", imported, IMPORT_STEP),
    ]
    # the cells' order is the flow's run order: the SFT inits', then the imports'
    assert [c.label for c in graph.cells] == ["terse/seed0", "terse/seed1", "mine/seed0", "mine/seed1"]
    for cell, seed in zip(graph.cells, [0, 1, 0, 1], strict=True):
        assert cell.params == p.rl_params(cell.init.run_id, seed)
    assert graph.init_runs() == [sft0, sft1, imported]
    assert _planned(plan_coldstart(p)) == _graph_stages(graph)


@pytest.mark.parametrize("init_run", [None, "sft-terse-0c52f682"])
def test_the_grid_graph_has_its_init_unless_given(init_run):
    p = StabilityGridParams.from_config("configs/stability_grid.yaml", [f"init_run={init_run or 'null'}"])
    graph = grid_graph(p)
    assert [c.grid_cell for c in graph.cells] == p.cells() and [c.label for c in graph.cells] == [
        c.label for c in p.cells()
    ]
    if init_run is None:
        (init,) = graph.inits
        assert (init.kind, init.run_id, init.last_step) == ("sft", sft_run_id(p.sft_params()), p.sft.steps)
        assert all(c.init is init for c in graph.cells)
    else:
        assert graph.inits == () and all(c.init is None for c in graph.cells)
    assert graph.init_runs() == [init_run or graph.inits[0].run_id]
    assert _planned(plan_stability_grid(p)) == _graph_stages(graph)


def test_an_empty_init_run_names_no_run_the_grid_builds_its_init():
    graph = grid_graph(StabilityGridParams.from_config(None, ['init_run=""']))
    assert [i.kind for i in graph.inits] == ["sft"] and graph.init_runs() == [graph.inits[0].run_id]


# What the flows must not rebuild beside the graph: its inputs and the stage parameters it makes.
GRAPH_INPUTS = {"sft_pairs", "init_pairs", "cells", "sft_params", "rl_params", "init_checkpoints"}


def _calls_and_params(module: str) -> set[str]:
    """The functions and methods ``module`` calls, and the fields it reads of the flow's ``params``."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params":
            names.add(node.attr)
    return names


@pytest.mark.parametrize(
    ("module", "graph"), [("flows/coldstart.py", "coldstart_graph"), ("flows/stability_grid.py", "grid_graph")]
)
def test_the_flow_runs_the_graph_it_does_not_rebuild_it(module, graph):
    names = _calls_and_params(module)
    assert graph in names
    assert names & GRAPH_INPUTS == set()
