"""What the Ray cluster tests share: a flow's settings for the test cluster, the short SFT they train there, and
Ray's own records of a run's jobs (each attempt's start and end) with the timeline they make.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.train.lifecycle import run_key
from tests.support.ray_cluster import LocalRayCluster
from tests.support.s3 import MotoS3

SFT_STEPS = 2
SFT_SETTINGS = [f"sft.steps={SFT_STEPS}", "sft.batch_size=16", "sft.teacher=terse"]
"""A short real SFT on the cluster (its checkpoint is what the RL stages and the evaluation start from)."""
TASK = ["task.n_sft=32"]
"""SFT and RL share one task, so one set of built assets (one store prefix)."""


def store_root(moto_s3: MotoS3, name: str) -> str:
    """A fresh prefix of the moto bucket: a store of the test's own."""
    return f"s3://{moto_s3.bucket}/{name}-{uuid.uuid4().hex[:8]}"


def on_cluster(moto_s3: MotoS3, workdir: Path, cluster: LocalRayCluster, store: str) -> list[str]:
    """A flow's settings for running its stages as Ray Jobs on ``cluster``, with ``store`` on moto S3."""
    return [
        f"workdir={workdir}",
        f"store.root={store}",
        f"store.endpoint_url={moto_s3.endpoint_url}",
        "launcher.kind=ray_job",
        f"launcher.ray_address={cluster.dashboard_url}",
    ]


def run_jobs(cluster: LocalRayCluster, store: ArtifactStore, run_ids: list[str]) -> dict[str, list[Any]]:
    """Ray's records of each run's jobs (its attempts, in start order), by run id."""
    from ray.job_submission import JobSubmissionClient

    keys = {run: run_key(RunLayout(store, run)) for run in run_ids}
    jobs = JobSubmissionClient(cluster.dashboard_url).list_jobs()
    return {
        run: sorted((j for j in jobs if j.submission_id.startswith(f"{key}-a")), key=lambda j: j.start_time)
        for run, key in keys.items()
    }


def timeline(jobs: list[Any]) -> dict:
    """From Ray's job records: wall time (first start to last end), most jobs at once, summed pairwise overlap and
    each job's time, in seconds."""
    spans = sorted((j.start_time / 1000, j.end_time / 1000) for j in jobs)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # an end before a start at a tie
    most, now = 0, 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    overlap = sum(max(0.0, min(a[1], b[1]) - max(a[0], b[0])) for i, a in enumerate(spans) for b in spans[i + 1 :])
    wall = max(e for _, e in spans) - spans[0][0]
    return {"wall_s": wall, "most_at_once": most, "overlap_s": overlap, "job_s": [e - s for s, e in spans]}
