"""``sft.overrides``: raw Hydra overrides for verl's sft_trainer, applied last, as ``rl.overrides`` are for main_ppo."""

from __future__ import annotations

import json
from pathlib import Path

from stable_verl.config.params import ColdstartParams, SFTFlowParams
from stable_verl.config.stages import SFTStage
from stable_verl.train.plan import plan_coldstart
from stable_verl.train.stages import sft_run_id
from stable_verl.train.verl_command import sft_argv

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "run_ids.json").read_text())
PATHS = [Path(p) for p in ("m", "t", "v", "o/c")]


def test_sft_overrides_come_after_every_setting_of_ours():
    user = ["engine.strategy=fsdp", "trainer.logger=[console,file,tensorboard]"]
    argv = sft_argv(SFTStage(overrides=user), *PATHS, cpu=True)
    assert argv[-2:] == user
    assert argv.index("engine.strategy=fsdp2") < argv.index("engine.strategy=fsdp")  # the CPU one is overridden
    assert argv[: -len(user)] == sft_argv(SFTStage(), *PATHS, cpu=True)  # nothing else moves


def test_sft_overrides_from_the_command_line_reach_every_init_of_a_coldstart():
    p = ColdstartParams.from_config(None, ['sft.overrides=["optim.weight_decay=0.1","data.truncation=left"]'])
    assert p.sft_params("terse", 0).sft.overrides == ["optim.weight_decay=0.1", "data.truncation=left"]
    sfts = [s for s in plan_coldstart(p) if s.kind == "sft"]
    assert len(sfts) == len(p.teachers) and all(s.argv[-2:] == p.sft.overrides for s in sfts)


def test_empty_sft_overrides_keep_run_ids_and_others_change_them():
    terse = ["sft.teacher=terse"]
    default = sft_run_id(SFTFlowParams.from_config(None, terse))
    assert default == GOLDEN["coldstart_defaults"][0]  # the first SFT of the default coldstart
    assert default == sft_run_id(SFTFlowParams.from_config(None, [*terse, "sft.overrides=[]"]))
    assert default != sft_run_id(SFTFlowParams.from_config(None, [*terse, "sft.overrides=[optim.weight_decay=0.1]"]))
