"""Two Ray Jobs' TransferQueues on one cluster (issue 28): what hung the second of two real RL cells at once.

Each job uses TransferQueue as verl 0.9.1 does (tests/support/tq_jobs.py: a TaskRunner-like actor calls
``tq.init``, a worker-like actor reaches it without ``init``), without training: a few hundred MB a process,
about a minute a case on the test cluster (tests/support/ray_cluster.py). The second job starts once the first
has initialised, puts a sample, the first closes TransferQueue and ends (as verl does), then the second reads its
sample back.

* transfer_queue as shipped: the second job attaches to the first's controller (one fixed name in one fixed Ray
  namespace, cluster-wide), lists the first's data as its own, and gets no answer once the first job has ended.
  If this starts failing, transfer_queue has stopped sharing across jobs and ``tq_scope`` can go.
* with :mod:`stable_verl.verl_ext.tq_scope` installed (what the stable-verl verl plugin does in every verl
  process): a controller per job, each job's workers find their own, and the second job's get answers after the
  first has ended.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import _cluster
from tests.support import progress
from tests.support.ray_cluster import LocalRayCluster

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile): the Ray cluster tests

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@pytest.fixture(scope="module")
def tq_cluster(tmp_path_factory) -> Iterator[LocalRayCluster]:
    """The two-node test cluster (no S3): TransferQueue's storage unit goes to its worker, the node with a GPU."""
    yield from _cluster(tmp_path_factory, worker_gpus=1)


def _wait(ready, what: str, client, jobs: list[str], cluster: LocalRayCluster):
    """``ready()`` while the cluster's nodes (the jobs' drivers and actors among them) work or the jobs' logs grow."""
    try:
        return progress.wait_for(
            ready,
            what=what,
            watch_pids=[node.pid for node in cluster.nodes],
            progress=lambda: sum(len(client.get_job_logs(j)) for j in jobs),
        )
    except progress.NoProgress as e:
        logs = "\n".join(f"--- {j}\n{client.get_job_logs(j)[-3000:]}" for j in jobs)
        raise AssertionError(f"{e}\n{logs}") from None


def _two_jobs(cluster: LocalRayCluster, folder: Path, scoped: bool) -> dict:
    """Run the two jobs as above; each job's report and Ray's final status of each job."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard_url)
    flag = " --scoped" if scoped else ""
    jobs = [
        client.submit_job(entrypoint=f"{sys.executable} -m tests.support.tq_jobs {role} {folder}{flag}")
        for role in ("first", "second")
    ]

    def status(job: str) -> str:
        return str(client.get_job_status(job))

    def read(name: str) -> dict | None:
        path = folder / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def failed() -> str | None:
        done = [j for j in jobs if status(j) == "FAILED"]
        return done and f"job failed: {done}"

    _wait(lambda: read("second") or failed(), "the second job's report", client, jobs, cluster)
    _wait(lambda: status(jobs[0]) in TERMINAL, "the first job's end", client, jobs, cluster)
    (folder / "first.ended").touch()
    _wait(lambda: status(jobs[1]) in TERMINAL, "the second job's end", client, jobs, cluster)
    statuses = [status(j) for j in jobs]
    logs = {j: client.get_job_logs(j)[-3000:] for j in jobs}
    assert read("first") and read("second") and read("second-after"), (statuses, logs)
    return {"first": read("first"), "second": read("second"), "after": read("second-after"), "status": statuses}


def test_unscoped_second_job_shares_the_first_jobs_transfer_queue_and_hangs_when_it_ends(tq_cluster, tmp_path):
    got = _two_jobs(tq_cluster, tmp_path, scoped=False)
    first, second = got["first"], got["second"]
    assert first["job"] != second["job"]  # two Ray jobs ...
    assert second["controller"] == first["controller"] == second["worker"]["controller"]  # ... one controller
    assert second["worker"]["keys"] == ["first", "second"]  # the second job sees the first's data as its own
    assert not got["after"]["get"].startswith("ok"), got  # and loses its own with the first job
    print(f"\nTQ-UNSCOPED {json.dumps(got)}")


def test_scoped_jobs_each_have_their_own_transfer_queue(tq_cluster, tmp_path):
    got = _two_jobs(tq_cluster, tmp_path, scoped=True)
    first, second = got["first"], got["second"]
    assert first["controller"] != second["controller"]
    assert first["worker"] == {"keys": ["first"], "controller": first["controller"]}  # workers find their job's
    assert second["worker"] == {"keys": ["second"], "controller": second["controller"]}
    assert got["after"]["get"] == "ok [6.0]", got  # len("second"): its own sample, after the first job's end
    assert got["status"] == ["SUCCEEDED", "SUCCEEDED"], got
    print(f"\nTQ-SCOPED {json.dumps(got)}")
