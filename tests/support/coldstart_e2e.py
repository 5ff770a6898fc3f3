"""The cold-start comparison end to end: real verl, real Prefect (test harness), real s3fs over HTTP to moto.

One session-scoped run, shared by the tests in test_coldstart_flow.py and, as an RL run read back through the
store, by the other integration tests (tests/integration/conftest.py):

1. attempt 1: both inits' SFTs run side by side, then the flow runs until the first RL checkpoint is in S3, and
   the RL verl process tree is killed (SIGKILL, as an OOM killer would): the second init's RL still trains, then
   the flow fails, naming both outcomes;
2. attempt 2: the same flow again: the finished SFTs and RL are skipped, the killed RL resumes from its last
   checkpoint in S3, every checkpoint is evaluated, the report is written;
3. attempt 3: the same flow again: everything is complete, nothing runs.

Every S3 request of the three attempts goes through a fault-injecting proxy (tests/faults/s3_proxy.py) at the
modest rates of :data:`CI_FAULTS`: the flow must survive them (the store retries) with the same outcome.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from flows.coldstart import coldstart_comparison_flow
from stable_verl.artifacts import ArtifactStore, list_runs
from stable_verl.artifacts.retry import retry_counts
from stable_verl.config.params import ColdstartParams
from stable_verl.launch import procs
from tests.faults.s3_proxy import FaultRates, FaultStats
from tests.support.interrupted import run_while_killing

OVERRIDES = [
    "teachers=[terse,stepwise]",  # 2 inits; terse's RL is killed, stepwise's runs clean (e2e_report's)
    # The pipeline's mechanics, not learning: a small regime pinned here, whatever configs/coldstart.yaml (the
    # demo's regime) sets.
    "task.difficulty=1",
    "task.hard_difficulty=2",
    "task.max_operand=null",
    "task.n_sft=256",
    "task.n_rl_train=64",
    "task.n_bench=32",
    "sft.steps=40",
    "sft.batch_size=16",
    "sft.micro_batch_size=8",
    "rl.recipe=minirl",
    "rl.train_batch_size=8",
    "rl.rollout_n=4",
    "rl.micro_batch_size=16",
    "rl.lr=1e-4",
    "rl.rollout_dtype=float32",
    "rl.format_bonus=0.1",
    "eval.benchmarks=[bench_id,bench_hard]",
    "rl.total_steps=3",
    "rl.save_freq=1",
    "eval.k=2",
    "eval.n_prompts=8",
    "eval.steps=all",
]


# S3 faults injected into every request of the e2e flow: about 1 in 30 requests fails, 1 in 50 is slowed.
CI_FAULTS = FaultRates(error=0.02, drop=0.01, slow=0.02, delay_s=0.5)


@dataclass
class E2E:
    params: ColdstartParams
    store: ArtifactStore
    secret: str
    """The AWS secret in the environment while the flows ran (must appear in no artifact or log)."""
    first_error: BaseException | None = None
    killed: list[str] = field(default_factory=list)
    """Store paths of the checkpoint manifests found when the RL process tree was killed."""
    status_after_kill: dict[str, str] = field(default_factory=dict)
    comparisons_after_kill: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    rerun: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    faults: FaultStats | None = None
    """What the S3 fault proxy counted over the three attempts."""
    store_retries: dict[str, int] = field(default_factory=dict)
    """Store-level retries during the three attempts, by operation (botocore's and s3fs's own not included)."""


def _kill_rl_at_first_checkpoint(store: ArtifactStore, e2e: E2E, stop: threading.Event) -> None:
    """Once an RL checkpoint is complete in the store, SIGKILL the running RL verl tree."""
    while not stop.wait(0.5):
        manifests = store.glob("runs/rl-*/checkpoints/global_step_*/_MANIFEST.json")
        leaders = [pid for pid, name in procs.active().items() if name == "verl rl"]
        if manifests and leaders:
            for pid in leaders:
                procs.kill_tree(pid, grace_s=0)
            e2e.killed = manifests
            return


def run_e2e(workdir: Path, endpoint_url: str, bucket: str, secret: str) -> E2E:
    """The three attempts; ``secret`` is the AWS secret the caller put in the environment (moto accepts any)."""
    root = f"s3://{bucket}/e2e-{uuid.uuid4().hex[:8]}"
    params = ColdstartParams.from_config(
        "configs/coldstart.yaml",
        [f"workdir={workdir}", f"store.root={root}", f"store.endpoint_url={endpoint_url}", *OVERRIDES],
    )
    store = params.store.open()
    e2e = E2E(params, store, secret)
    retries_before = retry_counts()

    e2e.first_error, e2e.seconds["attempt1"] = run_while_killing(
        coldstart_comparison_flow, params, _kill_rl_at_first_checkpoint, store, e2e
    )
    e2e.status_after_kill = {r["run_id"]: r["status"] for r in list_runs(store)}
    e2e.comparisons_after_kill = store.ls("comparisons")

    t0 = time.monotonic()
    e2e.result = coldstart_comparison_flow(params)
    e2e.seconds["attempt2"] = time.monotonic() - t0
    t0 = time.monotonic()
    e2e.rerun = coldstart_comparison_flow(params)
    e2e.seconds["attempt3"] = time.monotonic() - t0
    e2e.store_retries = {op: n - retries_before.get(op, 0) for op, n in retry_counts().items()}
    return e2e
