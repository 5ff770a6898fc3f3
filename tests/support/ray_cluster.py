"""A real two-node Ray cluster on this machine, for the Ray Jobs launcher's tests.

The head has no CPUs or GPUs for tasks (only the job drivers run there, at 0 CPU); the worker node declares the
CPU path's logical resources (16 CPUs and by default 1 GPU, what ``cpu_env.local_ray_overrides`` gives a local
run; 2 GPUs hold two RL stages at once), so every verl actor is placed on the worker, another node than the job's
driver. Each node runs ``ray start --block`` in a session of its own with its own temp dir and ports, so stopping
the cluster kills exactly the processes started here (never ``ray stop``, which would also stop other Ray instances
on the machine), and no ``ray.init()`` elsewhere on the machine finds it (its address file is in its own temp dir).

Each node's environment is that of ``ray start``: this process's (the AWS credentials of the moto fixture, when it
runs first: credentials reach verl's processes only this way) plus ``STABLE_VERL_NODE_DIR``, a scratch folder of
its own, so a checkpoint file saved on one node is not where another node, or the flow, would look for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stable_verl.launch import procs
from stable_verl.verl_ext.store_sync import ENV_NODE_DIR
from tests.support import progress
from tests.support.s3 import free_port

ROOT = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 200 * 1024**2  # the tiny models need little; the default is 30% of RAM per node


@dataclass
class LocalRayCluster:
    dashboard_url: str
    """The Jobs API (what ``launcher.ray_address`` / ``RAY_ADDRESS`` name)."""
    gcs_address: str
    temp_dir: Path
    nodes: list[subprocess.Popen]

    def node_dir(self, name: str) -> Path:
        """The node-local scratch ``ray start`` gave node ``name`` ('head', 'worker') as ``STABLE_VERL_NODE_DIR``:
        verl's checkpoints on that node go there, a folder no other node (nor the flow) is told about."""
        return self.temp_dir / f"{name}-local"

    def head_and_worker_ids(self) -> tuple[str, str]:
        """Node ids of the head and the worker node (Ray's state API over the dashboard)."""
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.dashboard_url, filters=[("state", "=", "ALIVE")])
        head = [n.node_id for n in nodes if n.is_head_node]
        workers = [n.node_id for n in nodes if not n.is_head_node]
        return head[0], workers[0]

    def stop(self) -> None:
        """Kill both nodes' process trees (worker first), nothing else; remove the cluster's temp dir."""
        for node in reversed(self.nodes):
            procs.kill_tree(node.pid, grace_s=3)  # Ray's daemons exit on SIGTERM; a straggler gets SIGKILL
            node.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _ports() -> list[str]:
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")
    return [f"--{name}={free_port()}" for name in (*names, "metrics-export-port")]


def start_cluster(log_dir: Path, worker_gpus: int = 1, attempts: int = 2) -> LocalRayCluster:
    """Start the head and one worker node declaring ``worker_gpus`` logical GPUs; returns once both are alive and
    the Jobs API answers. The wait goes on while the nodes' processes work (tests/support/progress.py); a node whose
    ``ray start`` exits fails the start at once.

    A start that fails is stopped (its processes killed, its temp dir removed) and tried again, up to ``attempts``
    times: ``ray start`` gives a node a fixed 30 s to register with the GCS (``ray/_private/node.py``), which a
    machine shared with other verl runs (load 25-30 on 2 cores, 2026-12-04) can exceed."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(log_dir, worker_gpus)
        except RuntimeError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start_once(log_dir: Path, worker_gpus: int) -> LocalRayCluster:
    ray = str(Path(sys.executable).parent / "ray")
    temp_dir = Path(tempfile.mkdtemp(prefix="svray-"))  # short: Ray's unix socket paths must stay < 108 chars
    gcs, dashboard = free_port(), free_port()
    env = {
        **os.environ,
        # The job's entrypoint runs `python`: this interpreter; its Ray workers import this checkout.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray 2.60's `ray start --head` turns token authentication on by default; this loopback-only test cluster
        # turns it off, so clients need no token (docs/how-to/cluster.md: RAY_AUTH_MODE / RAY_AUTH_TOKEN).
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    common = ["--block", "--node-ip-address=127.0.0.1", f"--object-store-memory={OBJECT_STORE_BYTES}"]
    head = [ray, "start", "--head", f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
    head += [f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}", "--num-cpus=0"]
    head += ["--num-gpus=0", f"--temp-dir={temp_dir / 'head'}", "--disable-usage-stats", *common, *_ports()]
    worker = [ray, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=16", f"--num-gpus={worker_gpus}"]
    worker += [f"--temp-dir={temp_dir / 'worker'}", *common, *_ports()]
    log_dir.mkdir(parents=True, exist_ok=True)
    cluster = LocalRayCluster(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", temp_dir, [])
    try:
        for name, argv in (("head", head), ("worker", worker)):
            node_env = {**env, ENV_NODE_DIR: str(cluster.node_dir(name))}  # each node's own checkpoint scratch
            with open(log_dir / f"ray-{name}.log", "w") as log:
                node = subprocess.Popen(
                    argv, env=node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            cluster.nodes.append(node)
            if name == "head":
                _wait(cluster, lambda: _jobs_api_up(cluster.dashboard_url), "the head's Jobs API", log_dir)
        _wait(cluster, lambda: _alive_nodes(cluster.dashboard_url) == 2, "the worker node", log_dir)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _jobs_api_up(url: str) -> bool:
    from ray.job_submission import JobSubmissionClient

    try:
        JobSubmissionClient(url).list_jobs()
        return True
    except Exception:
        return False


def _alive_nodes(url: str) -> int:
    from ray.util.state import list_nodes

    try:
        return len(list_nodes(address=url, filters=[("state", "=", "ALIVE")]))
    except Exception:
        return 0


def _wait(cluster: LocalRayCluster, ready: Callable[[], bool], what: str, log_dir: Path) -> None:
    """Wait until ``ready()`` while the nodes' trees work or their ``ray start`` logs grow; a RuntimeError naming
    ``what``, with the logs' tails, when a node exits or the start stops making progress."""

    def logs() -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(log_dir.glob("ray-*.log")))

    def up() -> bool:
        if gone := [n.args[1:3] for n in cluster.nodes if n.poll() is not None]:
            raise RuntimeError(f"{what}: `ray start` exited ({gone}):\n{logs()}")
        return ready()

    log_size = lambda: sum(p.stat().st_size for p in log_dir.glob("ray-*.log"))  # noqa: E731
    try:
        progress.wait_for(up, what=what, watch_pids=[n.pid for n in cluster.nodes], progress=log_size)
    except progress.NoProgress as err:
        raise RuntimeError(f"{err}:\n{logs()}") from None
