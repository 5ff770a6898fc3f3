"""The entrypoint of an SFT Ray Job: verl's torchrun as a child, its checkpoints to the store from this node.

``python -m stable_verl.train.node_sft -- -m torch.distributed.run ... -m verl.trainer.sft_trainer ...``

verl's SFT trainer runs in the job's own process tree (torchrun on the node Ray picks for the entrypoint), and has
no seam for uploads, so this wrapper does on that node what the flow does beside a local SFT stage, with the same
code (:mod:`stable_verl.train.checkpoint_sync`):

1. materialise the stage's inputs from the store (``STABLE_VERL_INPUTS``, :mod:`stable_verl.verl_ext.inputs`);
2. restore the run's latest complete checkpoint from the store into ``$STABLE_VERL_NODE_DIR/<run id>/checkpoints``
   (the command's ``trainer.default_local_dir``), so verl's ``resume_mode=auto`` resumes from it;
3. run ``python <args>`` (this interpreter) with verl's metrics file in that folder, and a
   :class:`~stable_verl.train.checkpoint_sync.CheckpointSyncer` beside it: each checkpoint verl completes goes
   up with the metrics first and its manifest last; at a normal end the merged metrics too. Its output goes to the
   job's (which the Jobs API streams to the flow) and to ``logs/attempt-<k>-node.log`` in the run's store folder.

The run comes from the job's environment (``store_sync.sync_env``: root, run id, endpoint; credentials are the
node's own). ``ray job stop`` (SIGTERM to the job's process group) stops the child and the syncer, which then
uploads nothing more; the exit code is the child's.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from stable_verl.env import ATTEMPT, NODE_DIR
from stable_verl.launch.teed import run_teed
from stable_verl.train.checkpoint_sync import CheckpointSyncer, MetricsLog, restore_latest
from stable_verl.verl_ext import inputs
from stable_verl.verl_ext.store_sync import ENV_NODE_DIR, StoreSync, restored_line

METRICS_ENV = "VERL_FILE_LOGGER_PATH"
ATTEMPT_ENV = ATTEMPT.name


def node_folder(run_id: str) -> Path:
    """This node's folder of the run: ``$STABLE_VERL_NODE_DIR/<run id>`` (required: nothing of the flow's is here)."""
    base = NODE_DIR.get()
    if not base:
        raise inputs.MissingNodeDir(
            f"an SFT Ray Job needs {ENV_NODE_DIR} on the node that runs it (docs/how-to/cluster.md)"
        )
    return Path(base) / run_id


def run(args: list[str]) -> int:
    """Steps 1-3 of the module docstring; returns the child's exit code (SIGTERM: 143)."""
    sync = StoreSync.from_env()
    if sync is None:
        raise SystemExit("node_sft: the job's environment names no run (STABLE_VERL_SYNC_ROOT / STABLE_VERL_SYNC_RUN)")
    run_layout = sync.run
    inputs.materialise_from_env()
    local = node_folder(run_layout.run_id)
    ckpt_root = local / "checkpoints"
    start = time.monotonic()
    resumed = restore_latest(run_layout, ckpt_root)
    if resumed:
        print(restored_line(resumed, time.monotonic() - start), flush=True)
    metrics_file = local / Path(os.environ.get(METRICS_ENV) or "metrics.jsonl").name
    metrics_file.unlink(missing_ok=True)
    metrics = MetricsLog(run_layout.read_metrics(), resumed, metrics_file)
    syncer = CheckpointSyncer(run_layout, ckpt_root, metrics, resumed, echo=lambda s: print(s, flush=True)).start()

    env = {**os.environ, METRICS_ENV: str(metrics_file)}
    log_path = local / "logs" / f"attempt-{ATTEMPT.get() or '0'}.log"
    try:  # the job's output (the Jobs API streams it to the flow) and the node's log
        teed = run_teed([sys.executable, *args], env, log_path)
        syncer.stop(final_sync=teed.signal is None)
        if teed.code == 0 and teed.signal is None:
            run_layout.write_metrics(metrics.rows())
    finally:  # the log as the node saw it, whatever the Jobs API's log stream delivered to the flow
        if log_path.is_file():
            run_layout.store.write_text(run_layout.log(f"{log_path.stem}-node"), log_path.read_text())
    return teed.exit_code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise SystemExit("usage: python -m stable_verl.train.node_sft -- <python args of verl's SFT>")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
