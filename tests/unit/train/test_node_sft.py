"""The SFT job entrypoint (``train.node_sft``) on a "node" folder of its own, with a stand-in trainer (verl's file
contract, seconds): checkpoints and metrics reach the store from the node, a rerun on a fresh node resumes from the
store, and the flow's local folder stays empty. The real SFT under it runs on the Ray cluster in
tests/integration/test_ray_job_launcher.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.launch.runner import VerlRunError
from stable_verl.train import node_sft
from stable_verl.train.lifecycle import VerlJob, run_tracked
from stable_verl.train.node_inputs import NodeInputs
from stable_verl.verl_ext.store_sync import ENV_NODE_DIR
from tests.support.standin import TRAINER

RUN = "sft-standin-00000000"


def _job(node: Path, total: int, die_at: int = 0) -> VerlJob:
    root = node / RUN / "checkpoints"  # what ${oc.env:STABLE_VERL_NODE_DIR}/<run>/checkpoints resolves to there
    return VerlJob(
        kind="sft",
        name="stand-in",
        total_steps=total,
        argv=lambda _: [
            sys.executable,
            "-m",
            node_sft.__name__,
            "--",
            "-c",
            TRAINER,
            str(root),
            str(total),
            str(die_at),
        ],
        env={**os.environ, ENV_NODE_DIR: str(node)},
        timeout_s=None,  # the stall rule's default applies (launch/stall.py)
        config={"total": total},
        store_sync=True,
        node_inputs=NodeInputs(),  # a cluster job (with no inputs to fetch here)
    )


def test_the_node_entrypoint_syncs_from_the_node_and_a_fresh_node_resumes_from_the_store(tmp_path):
    run = RunLayout(ArtifactStore(tmp_path / "store"), RUN)
    quiet = lambda _: None  # noqa: E731
    with pytest.raises(VerlRunError):
        run_tracked(run, _job(tmp_path / "node-a", total=4, die_at=3), tmp_path / "flow", echo=quiet)
    assert run.checkpoint_steps() == [1, 2]  # the final sync after the trainer died
    assert [r["step"] for r in run.read_metrics()] == [1, 2]

    lines: list[str] = []
    result = run_tracked(run, _job(tmp_path / "node-b", total=4), tmp_path / "flow", echo=quiet, on_line=lines.append)
    assert result.resumed_from == 2 and result.checkpoints == [1, 2, 3, 4]
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4]
    assert [r["started_at"] for r in run.read_metrics()] == [0, 0, 2, 2]  # steps 3-4 resumed from step 2
    assert any("restored checkpoint 2 from the store" in line for line in lines)
    node_log = run.store.read_text(f"{run.prefix}/logs/attempt-2-node.log")  # uploaded by the node itself
    assert "step:3 - loss:1.0" in node_log and "step:4 - loss:1.0" in node_log
    assert "step:2 - loss:1.0" in run.store.read_text(f"{run.prefix}/logs/attempt-1-node.log")  # also when it fails
    assert (tmp_path / "node-b" / RUN / "checkpoints" / "global_step_4" / "_MANIFEST.json").is_file()
    assert not list((tmp_path / "flow").glob("checkpoints/global_step_*"))  # nothing saved on the flow's side
