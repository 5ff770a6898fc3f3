"""The evaluate deployment on a real Prefect server: `prefect server start` (SQLite in a temporary PREFECT_HOME, a
free port), a `process` work pool and a worker, `prefect deploy` of the project's prefect.yaml, then two real
evaluations (vLLM on CPU) of tiny checkpoints in a local store, one started by `prefect deployment run` and one by a
schedule firing. Both use the selector (every checkpoint not yet evaluated), so the scheduled run scores only the
checkpoint added after the first. Everything the test starts is stopped by its process group id.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from tests.support import progress
from tests.support.s3 import free_port

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "stable-verl"  # prefect.yaml's work pool
RUNS = ("rl-tiny-0000aaaa", "rl-tiny-0000bbbb")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Server:
    api: str
    env: dict[str, str]
    logs: Path
    pids: dict[str, int] = field(default_factory=dict)
    """The leaders this test started ('server', 'worker'): their trees' CPU is what the waits call progress."""

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for attempt in range(5):
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:  # one request's bound; a starved server: retried
                    raw = resp.read()
                break
            except urllib.error.HTTPError as err:
                if err.code != 503 or attempt == 4:  # 503: SQLite busy under load; the server asks to retry
                    raise AssertionError(f"{method} {path}: {err.code} {err.read()[:2000]!r}") from None
                time.sleep(2)
            except OSError:  # a read timeout: on 2 cores a vLLM flow run can starve the server for a while
                if method != "GET" or attempt == 4:  # only a read is safe to send again
                    raise
                time.sleep(2)
        return json.loads(raw) if raw else None

    def cli(self, *args: str) -> str:
        out = progress.run([PREFECT, *args], cwd=ROOT, env=self.env)
        assert out.returncode == 0, f"prefect {' '.join(args)}: {out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def wait_run(self, run_id: str) -> dict:
        """The flow run once it has ended, waited for while it changes state or the worker's tree (the flow-run
        process) works."""
        seen: list[dict] = []

        def ended() -> dict | None:
            seen.append(self.call("GET", f"/flow_runs/{run_id}"))
            state = seen[-1]["state"]
            return seen[-1] if state and state["type"] in TERMINAL else None

        def state() -> object:
            return seen[-1]["state"] and seen[-1]["state"]["type"] if seen else None

        try:
            return progress.wait_for(
                ended, what=f"flow run {run_id}", watch_pids=[self.pids["worker"]], progress=state, poll_s=2
            )
        except progress.NoProgress as err:
            raise AssertionError(f"{err}\n{self.tails()}") from None


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own handle
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group this test started (by its leader's pid), SIGKILL what is left after 5 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # a grace period, then SIGKILL: not a guess of how long anything takes
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group's other members (flow-run processes, server services)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)  # after SIGKILL: a bound on an instant operation


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    import sqlalchemy

    if tuple(int(x) for x in sqlalchemy.__version__.split(".")[:2]) >= (2, 1):  # see infra/requirements-cpu.in
        pytest.fail(f"SQLAlchemy {sqlalchemy.__version__}: Prefect 3.7.7's scheduler fires no schedule; `make setup`")
    tmp = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # the schedule below fires within seconds
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "STABLE_VERL_HOME": str(ROOT),  # prefect.yaml's pull step: flow runs start in this checkout ...
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),  # ... import it
    }
    env.pop("PREFECT_API_KEY", None)
    logs = tmp / "logs"
    logs.mkdir()
    srv = Server(env["PREFECT_API_URL"], env, logs)
    started: list[subprocess.Popen] = []
    try:
        started.append(
            _start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, logs / "server.log")
        )
        srv.pids["server"] = started[0].pid

        def healthy() -> bool:
            assert started[0].poll() is None, f"no Prefect server\n{srv.tails()}"
            try:
                return srv.call("GET", "/health") is True
            except OSError:
                return False

        progress.wait_for(healthy, what="the Prefect server", watch_pids=[started[0].pid], poll_s=1)
        srv.cli("work-pool", "create", "--type", "process", POOL)
        srv.cli("--no-prompt", "deploy", "--name", "evaluate")
        worker = [PREFECT, "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1"]
        started.append(_start(worker, env, logs / "worker.log"))
        srv.pids["worker"] = started[-1].pid
        yield srv
    finally:
        for proc in reversed(started):
            _stop(proc)


def _tiny_run(store: ArtifactStore, run_id: str, tokenizer, seed: int, tmp: Path) -> None:
    """A complete RL run with one real (random-weight) tiny MoE checkpoint at step 1."""
    run = RunLayout(store, run_id)
    run.write_run({"kind": "rl", "name": "tiny", "status": "complete", "total_steps": 1})
    run.upload_checkpoint(save_tiny_model(tmp / run_id, TinyModelSpec(), tokenizer, seed=seed), 1)


def test_evaluate_deployment_by_cli_and_by_schedule(server, tokenizer, tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    params = {
        "store": {"root": str(tmp_path / "store")},
        "workdir": str(tmp_path / "work"),
        "select": {},  # every checkpoint not yet evaluated, as the nightly schedule
        "eval": {"k": 1, "max_tokens": 8, "n_prompts": 4, "benchmarks": ["bench_id"], "steps": "all"},
    }
    deployment = server.call("GET", "/deployments/name/evaluate/evaluate")
    nightly = server.call("GET", f"/deployments/{deployment['id']}/schedules")
    assert [(s["slug"], s["active"], s["schedule"]["cron"]) for s in nightly] == [("nightly-eval", True, "0 3 * * *")]

    # 1. `prefect deployment run`: the first run's checkpoint is evaluated.
    _tiny_run(store, RUNS[0], tokenizer, 0, tmp_path)
    out = server.cli("deployment", "run", "evaluate/evaluate", "--param", f"params={json.dumps(params)}")
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    first = server.wait_run(run_id)
    assert first["state"]["type"] == "COMPLETED", server.tails()
    a = RunLayout(store, RUNS[0])
    assert store.is_complete(a.eval_dir(1, "bench_id")) and store.read_json(a.eval_results(1, "bench_id"))["k"] == 1
    first_manifest = store.read_bytes(f"{a.eval_dir(1, 'bench_id')}/_MANIFEST.json")

    # 2. A schedule fires (an interval schedule anchored a few seconds ahead): only the new checkpoint is evaluated.
    _tiny_run(store, RUNS[1], tokenizer, 1, tmp_path)
    anchor = (datetime.now(UTC) + timedelta(seconds=10)).isoformat()
    schedule = {"interval": 3600, "anchor_date": anchor, "timezone": "UTC"}
    server.call(
        "POST",
        f"/deployments/{deployment['id']}/schedules",
        [{"schedule": schedule, "parameters": {"params": params}, "slug": "test-soon"}],
    )

    def scheduled() -> list[dict]:
        runs = server.call("POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
        mine = lambda r: r["parameters"].get("params", {}).get("workdir") == params["workdir"]  # noqa: E731
        return [r for r in runs if r["auto_scheduled"] and mine(r)]

    # The server's scheduler creates the runs: its tree's CPU is the progress.
    try:
        runs = progress.wait_for(
            scheduled, what="the schedule's flow run", watch_pids=[server.pids["server"]], poll_s=2
        )
    except progress.NoProgress as err:
        raise AssertionError(f"{err}\n{server.tails()}") from None
    # The scheduler creates the next few runs of the interval at once (+10 s, +1 h, ...): the first one is due now.
    second = server.wait_run(min(runs, key=lambda r: r["expected_start_time"])["id"])
    assert second["state"]["type"] == "COMPLETED", server.tails()
    b = RunLayout(store, RUNS[1])
    assert store.is_complete(b.eval_dir(1, "bench_id"))
    assert store.read_bytes(f"{a.eval_dir(1, 'bench_id')}/_MANIFEST.json") == first_manifest  # not evaluated again
    assert not store.glob("leases/eval/*.json")  # both evaluations released their leases
