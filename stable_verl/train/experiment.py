"""Each experiment's stage graph, declared once: the flows run it (flows/coldstart.py, flows/stability_grid.py) and
``stable-verl plan`` prints it (:mod:`.plan`).

An experiment is its inits (an SFT run trained here, or an already-trained checkpoint imported as a complete SFT
run) and its RL cells, each from one init's last checkpoint, or from an existing run (the grid's ``init_run``:
no init stage). The run ids are the ones the stages compute (:func:`~.stages.sft_run_id`,
:func:`~.checkpoint_import.import_run_id`), so a cell's :class:`~stable_verl.config.params.RLFlowParams` name its
init's run before that init has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stable_verl.config.grid_cell import GridCell
from stable_verl.config.params import (
    ColdstartParams,
    InitCheckpoint,
    RLFlowParams,
    SFTFlowParams,
    StabilityGridParams,
)
from stable_verl.train.checkpoint_import import IMPORT_STEP, import_run_id
from stable_verl.train.stages import sft_run_id


@dataclass(frozen=True)
class InitStage:
    """One init of an experiment: an SFT run trained here or an already-trained checkpoint imported."""

    name: str
    """The teacher style / init name (``teachers`` entry or ``init_checkpoints`` key)."""
    label: str
    """How the flow names the stage: ``<teacher>/seed<k>`` for an SFT, the init name for an import."""
    run_id: str
    """The run id the stage computes for itself."""
    params: SFTFlowParams | InitCheckpoint
    """The SFT subflow's parameters, or the checkpoint imported."""
    last_step: int
    """The step of its last checkpoint: the one its RL cells start from."""

    @property
    def kind(self) -> Literal["sft", "import"]:
        return "sft" if isinstance(self.params, SFTFlowParams) else "import"


@dataclass(frozen=True)
class RLCell:
    """One RL run of an experiment."""

    label: str
    params: RLFlowParams
    """Its RL stage; ``params.init_run`` is ``init.run_id`` (or the run the grid was given)."""
    init: InitStage | None
    """The init stage of this experiment it starts from; None: an existing run (``params.init_run``)."""
    grid_cell: GridCell | None = None
    """Its (arm, N, seed) in a stability grid."""


@dataclass(frozen=True)
class Experiment:
    """The stage graph: the inits in the order they are started, then the RL cells in run order."""

    inits: tuple[InitStage, ...]
    cells: tuple[RLCell, ...]

    def init_runs(self) -> list[str]:
        """The distinct runs the cells start from, in cell order."""
        return list(dict.fromkeys(cell.params.init_run for cell in self.cells))


def sft_init(p: SFTFlowParams, label: str) -> InitStage:
    return InitStage(p.sft.teacher, label, sft_run_id(p), p, p.sft.steps)


def import_init(p: ColdstartParams, name: str) -> InitStage:
    checkpoint = p.init_checkpoints[name]
    return InitStage(name, name, import_run_id(name, checkpoint, p.store.endpoint_url), checkpoint, IMPORT_STEP)


def coldstart_graph(p: ColdstartParams) -> Experiment:
    """Per (teacher, seed): its SFT, then RL from it; per already-trained init: its import (once), then RL from it
    per seed. The SFT inits' cells run first, in ``sft_pairs`` order, then the imports' in ``init_pairs`` order."""
    sfts = {(t, s): sft_init(p.sft_params(t, s), f"{t}/seed{s}") for t, s in p.sft_pairs()}
    imports = {name: import_init(p, name) for name in p.init_checkpoints}
    cells = [*((pair, sfts[pair]) for pair in p.sft_pairs()), *((pair, imports[pair[0]]) for pair in p.init_pairs())]
    return Experiment(
        (*sfts.values(), *imports.values()),
        tuple(RLCell(f"{name}/seed{seed}", p.rl_params(init.run_id, seed), init) for (name, seed), init in cells),
    )


def grid_graph(p: StabilityGridParams) -> Experiment:
    """The grid's one init (its SFT, unless ``init_run`` names an existing run), then every cell from it."""
    if p.init_run:  # an empty init_run names no run: the init is built, as when it is None
        init, init_run = None, p.init_run
    else:
        init = sft_init(p.sft_params(), f"{p.sft.teacher}/seed{p.seed}")
        init_run = init.run_id
    cells = tuple(RLCell(c.label, p.rl_params(c, init_run), init, c) for c in p.cells())
    return Experiment(() if init is None else (init,), cells)
