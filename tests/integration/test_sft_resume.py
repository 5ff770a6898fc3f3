"""A killed verl SFT resumes from its last periodic checkpoint in the store (``sft.save_freq``), as RL does.

One real SFT of 6 steps saving every 3: killed right after step 4 is logged, rerun, it resumes at 3 and completes.
"""

from __future__ import annotations

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.config.params import SFTFlowParams
from stable_verl.launch import procs
from stable_verl.launch.progress import is_step_line
from stable_verl.launch.runner import VerlRunError
from stable_verl.train.stages import run_sft_stage, sft_run_id

pytestmark = pytest.mark.slow


def test_a_killed_sft_resumes_from_its_last_periodic_checkpoint(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    overrides = ["sft.steps=6", "sft.save_freq=3", "sft.batch_size=8", "sft.micro_batch_size=8"]
    p = SFTFlowParams.from_config(None, [*overrides, f"workdir={tmp_path / 'work'}"])
    run = RunLayout(store, sft_run_id(p))
    quiet = lambda _: None  # noqa: E731
    killed = []

    def kill_after_step_4(line: str) -> None:
        if is_step_line(line) == 4 and not killed:  # checkpoint 3 is saved before step 4 starts
            killed.extend(procs.kill_active(grace_s=5.0))

    with pytest.raises(VerlRunError):
        run_sft_stage(p, store, echo=quiet, on_line=kill_after_step_4)
    assert killed, "verl was never killed"
    assert run.read_run()["status"] == "failed" and run.checkpoint_steps() == [3]  # uploaded as saved

    lines: list[str] = []
    result = run_sft_stage(p, store, echo=lines.append)
    assert not result.skipped and result.resumed_from == 3 and result.checkpoints == [3, 6]
    assert any("resuming from checkpoint 3" in line for line in lines)
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4, 5, 6]  # each step once, across both attempts
    record = run.read_run()
    assert record["status"] == "complete" and record["attempts"] == 2 and record["platform"]["cpu_capability"]
