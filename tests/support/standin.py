"""A stand-in verl trainer, in seconds: verl's file contract and nothing else.

It resumes from ``latest_checkpointed_iteration.txt``, writes ``global_step_N/`` then the tracker (RL order: save,
then log), logs ``{"step", "data"}`` lines to ``$VERL_FILE_LOGGER_PATH`` opened with "wb" as verl does, prints verl's
step lines, sleeps ``sleep_s`` a step (argv[4], default 0), and kills itself with SIGKILL at step ``die_at`` (0: never).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from stable_verl.train.lifecycle import VerlJob

TRAINER = """
import json, os, pathlib, sys, time
root, total, die_at = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sleep_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0  # per step: a stage that takes a while, using no CPU
tracker = root / "latest_checkpointed_iteration.txt"
start = int(tracker.read_text()) if tracker.exists() else 0
log = open(os.environ["VERL_FILE_LOGGER_PATH"], "wb", buffering=0)
for step in range(start + 1, total + 1):
    time.sleep(sleep_s)
    if step == die_at:
        os.kill(os.getpid(), 9)
    ckpt = root / f"global_step_{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "weights.bin").write_bytes(bytes([step]) * 64)
    tracker.write_text(str(step))
    log.write(json.dumps({"step": step, "data": {"started_at": start}}).encode() + b"\\n")
    print(f"step:{step} - loss:1.0", flush=True)
"""


def standin_job(total: int, die_at: int = 0, **fields: Any) -> VerlJob:
    """A tracked RL stage of ``total`` steps run by the stand-in, here; ``fields`` override the job's (``env``,
    ``launcher``)."""
    job: dict[str, Any] = dict(
        kind="rl",
        name="stand-in",
        total_steps=total,
        argv=lambda root: [sys.executable, "-c", TRAINER, str(root), str(total), str(die_at)],
        env=dict(os.environ),
        timeout_s=None,  # the stall rule's default applies (launch/stall.py)
        config={"total": total},
    )
    return VerlJob(**{**job, **fields})
