"""Flows under Prefect's test harness: fail fast on a bad store or init, retry only transient failures, and
leave no verl process behind when cancelled (SIGTERM to a flow running in a child process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from prefect import flow, task

from flows.rl import rl_flow
from flows.sft import sft_flow
from flows.tasks import retry_if_transient
from stable_verl.artifacts import ArtifactStoreError, RunLayout, list_runs
from stable_verl.config.params import RLFlowParams, SFTFlowParams, StoreParams
from stable_verl.launch import procs
from stable_verl.launch.runner import VerlRunError
from stable_verl.train.preflight import InputError
from tests.support import progress
from tests.support.s3 import free_port


def _store(moto_s3, name: str) -> StoreParams:
    return StoreParams(root=f"s3://{moto_s3.bucket}/{name}-{uuid.uuid4().hex[:8]}", endpoint_url=moto_s3.endpoint_url)


def test_unreachable_store_fails_fast_before_any_verl(prefect_harness, moto_s3, tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    params = SFTFlowParams(store=StoreParams(root="s3://bucket/x", endpoint_url=endpoint), workdir=str(tmp_path))
    start = time.monotonic()
    with pytest.raises(InputError) as err:  # the flow's preflight: one line, before any stage
        sft_flow(params)
    assert isinstance(err.value.__cause__, ArtifactStoreError)
    assert time.monotonic() - start < 60
    message = str(err.value)
    assert "\n" not in message and "not reachable" in message and endpoint in message
    assert not (tmp_path / "runs").exists()  # no stage started


def test_missing_init_run_fails_fast_and_marks_nothing_complete(prefect_harness, moto_s3, tmp_path):
    params = RLFlowParams(store=_store(moto_s3, "noinit"), workdir=str(tmp_path), init_run="sft-stepwise-00000000")
    with pytest.raises(ValueError, match="init run sft-stepwise-00000000 does not exist"):
        rl_flow(params)
    assert list_runs(params.store.open()) == []


def test_only_transient_failures_are_retried(prefect_harness):
    calls = {"flaky": 0, "crash": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionResetError("connection reset by peer")  # an S3 hiccup
        return "ok"

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def crash() -> None:
        calls["crash"] += 1
        raise VerlRunError("verl main_ppo exited with code 1")

    @flow
    def stages() -> str:
        return flaky()

    @flow
    def crashing() -> None:
        crash()

    assert stages() == "ok" and calls["flaky"] == 2
    with pytest.raises(VerlRunError):
        crashing()
    assert calls["crash"] == 1


@pytest.mark.slow
def test_sigterm_to_a_flow_kills_the_verl_process_tree(prefect_harness, moto_s3, tmp_path):
    """``python -m flows.rl`` in a child process, SIGTERM mid-verl (Ray up): verl's whole tree must be gone."""
    from prefect.settings import PREFECT_API_URL

    store = _store(moto_s3, "cancel")
    argv = [sys.executable, "-m", "flows.rl", f"workdir={tmp_path}", f"store.root={store.root}"]
    argv += [f"store.endpoint_url={store.endpoint_url}", "rl.total_steps=2"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the harness's server
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out = progress.Output(child.stdout)  # Prefect's logger prints to the console
        verl = int(out.wait_for(r"verl started: pid (\d+)", what="the flow to start verl", watch_pids=[child.pid])[1])
        progress.wait_for(lambda: _ray_workers(verl), what="verl's Ray workers", watch_pids=[verl])
        # The tree as it is now: once the leader is dead, a descendant that left its session (or was re-parented)
        # can no longer be found from the leader, so every process seen here is checked by its own pid.
        before = {pid: _start_time(pid) for pid in procs.tree(verl)}
        assert verl in before and len(before) > len(_ray_workers(verl))
        child.send_signal(signal.SIGTERM)
        progress.wait_for(lambda: child.poll() is not None, what="the flow to exit on SIGTERM", watch_pids=[child.pid])
        assert child.returncode != 0
        deadline = time.monotonic() + 30  # a bound that is the assertion: what the flow killed is gone soon after it
        while (_survivors(before) or procs.tree(verl)) and time.monotonic() < deadline:
            time.sleep(0.5)
        survivors = _survivors(before)
        assert not survivors, f"verl processes outlived the cancelled flow: {survivors}"
        assert procs.tree(verl) == set(), "verl processes outlived the cancelled flow"
        runs = list_runs(store.open())
        assert [r["status"] for r in runs] == ["interrupted"]
        assert RunLayout(store.open(), runs[0]["run_id"]).read_run()["status"] != "complete"
    finally:
        procs.kill_tree(child.pid, grace_s=0)  # whatever the child itself left (nothing, normally)
        child.wait()


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (/proc/<pid>/stat field 22), None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _survivors(before: dict[int, int | None]) -> dict[int, str]:
    """pid -> cmdline of every process in ``before`` still running (same pid and start time: not a reused pid)."""
    alive = {}
    for pid, start in before.items():
        if start is not None and _start_time(pid) == start:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    alive[pid] = f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
            except OSError:
                pass
    return alive


def _ray_workers(leader: int) -> list[int]:
    found = []
    for pid in procs.tree(leader):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::"):
                    found.append(pid)
        except OSError:
            pass
    return found
