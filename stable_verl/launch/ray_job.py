"""A verl stage as a Ray Job on an existing Ray cluster (``ray.job_submission.JobSubmissionClient``).

The job's driver is verl's entry point; ``ray.init()`` inside it joins the cluster (Ray sets ``RAY_ADDRESS`` for
job drivers), so verl's workers are placed by the cluster on its GPU nodes. The submission id is derived from
the run and the attempt (:func:`submission_id`): before submitting, :meth:`RayJobLauncher.check` refuses while any
job of the same run is PENDING or RUNNING, so a resubmitted stage (a Prefect retry, a second flow on the same
config) never runs twice at once. The job's output is followed over the Jobs API's log stream; a stall (no new
step or log line for ``stall_s``: there is no local process tree whose CPU could count), the optional total limit, an
error, Ctrl-C or a Prefect cancellation stop the job (``stop_job``) and wait until Ray reports it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from stable_verl.launch import procs
from stable_verl.launch.runner import Launcher, LaunchSpec

ACTIVE = ("PENDING", "RUNNING")


class JobAlreadyRunning(RuntimeError):
    """A job of the same run is still PENDING or RUNNING on the cluster; nothing was submitted."""


def submission_id(key: str, attempt: int) -> str:
    """The Ray submission id of ``attempt`` of the run ``key`` (a run id plus its store): ``<key>-a<attempt>``."""
    return f"{key}-a{attempt}"


def entrypoint(argv: Sequence[str], python: str = "python") -> str:
    """The shell command of a job: ``argv`` quoted, with this machine's interpreter replaced by the cluster's."""
    args = [python if i == 0 and a == sys.executable else a for i, a in enumerate(argv)]
    return shlex.join(args)


def job_submit_argv(address: str, spec: LaunchSpec, python: str = "python", submission: str | None = None) -> list[str]:
    """The ``ray job submit`` command equivalent to what :class:`RayJobLauncher` submits (``stable-verl plan``)."""
    import json

    argv = ["ray", "job", "submit", f"--address={address}"]
    argv += [f"--submission-id={submission or submission_id(spec.key, spec.attempt)}"]
    argv += [f"--runtime-env-json={json.dumps({'env_vars': dict(spec.env)}, sort_keys=True)}"]
    if spec.num_gpus:
        argv.append(f"--entrypoint-num-gpus={spec.num_gpus:g}")
    return [*argv, "--", *shlex.split(entrypoint(spec.argv, python))]


def resolve_address(address: str | None) -> str:
    """``address``, else ``$RAY_ADDRESS``: the cluster's Jobs API (``http://<head>:8265``)."""
    found = address or os.environ.get("RAY_ADDRESS")
    if not found:
        raise ValueError(
            "launcher.kind=ray_job needs the cluster's Jobs API address: set launcher.ray_address or RAY_ADDRESS "
            "(http://<head>:8265)"
        )
    return found


def cluster_gpus(address: str | None) -> float:
    """Logical GPUs of the cluster's alive nodes at ``address`` (else ``$RAY_ADDRESS``), from Ray's state API."""
    from ray.util.state import list_nodes

    nodes = list_nodes(address=resolve_address(address), filters=[("state", "=", "ALIVE")], detail=True)
    return sum(float(node.resources_total.get("GPU", 0.0)) for node in nodes)


class RayJobLauncher(Launcher):
    """Submit, follow and stop one verl run as a Ray Job on the cluster at ``address`` (the Jobs API)."""

    kind = "ray_job"

    def __init__(self, address: str | None = None, python: str = "python", stop_timeout_s: float = 60.0) -> None:
        self.address = resolve_address(address)
        self.python = python
        self.stop_timeout_s = stop_timeout_s
        self.job_id: str | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tail: asyncio.Task | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def active_jobs(self, key: str) -> dict[str, str]:
        """PENDING/RUNNING jobs of run ``key``: submission id -> status."""
        prefix = f"{key}-a"
        return {
            job.submission_id: str(job.status)
            for job in self.client.list_jobs()
            if job.submission_id and job.submission_id.startswith(prefix) and str(job.status) in ACTIVE
        }

    def check(self, spec: LaunchSpec) -> None:
        running = self.active_jobs(spec.key)
        if running:
            jobs = ", ".join(f"{sid} ({status})" for sid, status in sorted(running.items()))
            raise JobAlreadyRunning(
                f"{spec.name}: the cluster at {self.address} is already running this run as Ray job {jobs}; "
                f"wait for it, or stop it: ray job stop --address={self.address} <submission id>"
            )

    def _free_id(self, key: str, attempt: int) -> str:
        """The attempt's submission id; if a finished job already has it (another run of the same store and
        attempt number on this cluster), the first free ``-r2``, ``-r3``, ... after it. An active job under one of
        these ids (a concurrent submitter that passed :meth:`check` too) is refused; two submitters that pick the
        same id race on Ray's own uniqueness check, and the second one's ``submit_job`` fails."""
        known = {job.submission_id: str(job.status) for job in self.client.list_jobs()}
        base = submission_id(key, attempt)
        sid, n = base, 1
        while sid in known:
            if known[sid] in ACTIVE:
                raise JobAlreadyRunning(f"Ray job {sid} is already {known[sid]} on {self.address}")
            n += 1
            sid = f"{base}-r{n}"
        return sid

    def start(self, spec: LaunchSpec) -> str:
        self.check(spec)
        sid = self._free_id(spec.key, spec.attempt)
        self.job_id = self.client.submit_job(
            entrypoint=entrypoint(spec.argv, self.python),
            submission_id=sid,
            runtime_env={"env_vars": dict(spec.env)},
            metadata={k: str(v) for k, v in spec.metadata.items()},
            entrypoint_num_gpus=spec.num_gpus or None,
        )
        procs.register_stop(self.job_id, self.stop)
        return f"Ray job {self.job_id} on {self.address}"

    def status(self) -> str:
        return str(self.client.get_job_status(self.job_id))

    def stream(self, on_line: Callable[[str], None], halt: Callable[[], str | None]) -> int | None:
        lines: queue.Queue[str | None] = queue.Queue()
        thread = threading.Thread(target=self._follow, args=(lines,), name="ray-job-logs", daemon=True)
        thread.start()
        tail_done, next_poll, next_halt = False, 0.0, 0.0
        while True:
            if time.monotonic() >= next_halt:  # no process tree here: steps and new log lines are the progress
                next_halt = time.monotonic() + 1.0
                if halt() is not None:
                    return None
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                tail_done = True
            elif line:
                on_line(line)
                continue
            # No output: the job may have ended (the log stream closes then; it may also drop, so poll too).
            if tail_done or time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 5.0
                if self.status() not in ACTIVE:
                    self._drain(lines, on_line, thread)
                    return 0 if self.status() == "SUCCEEDED" else 1

    def _drain(self, lines: queue.Queue, on_line: Callable[[str], None], thread: threading.Thread) -> None:
        """Pass on what the log stream still delivers once the job has ended (a few seconds at most)."""
        thread.join(timeout=5.0)
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            if line:
                on_line(line)

    def _follow(self, lines: queue.Queue) -> None:
        """Thread: the job's log stream, split into lines, into ``lines``; None when the stream ends."""
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def tail() -> None:
            partial = ""
            async for chunk in self.client.tail_job_logs(self.job_id):
                *complete, partial = (partial + chunk).split("\n")
                for line in complete:
                    lines.put(line.rstrip("\r"))
            if partial:
                lines.put(partial)

        try:
            self._tail = loop.create_task(tail())
            loop.run_until_complete(self._tail)
        except BaseException:  # the stream dropped or was cancelled: stream() polls the status instead
            pass
        finally:
            lines.put(None)
            loop.close()

    def describe_failure(self) -> str:
        info = self.client.get_job_info(self.job_id)
        # Ray's message of a failed job appends up to 20,000 characters of its log: the log is ours already.
        message = (info.message or "").strip().split("\n", 1)[0].split(", last available logs", 1)[0]
        return f"Ray job {self.job_id} {info.status}: {message}"

    def stop(self) -> None:
        """Stop the job unless it has ended, and wait (up to ``stop_timeout_s``) until Ray says it has."""
        if self.job_id is None:
            return
        try:
            if self.status() in ACTIVE:
                self.client.stop_job(self.job_id)
                deadline = time.monotonic() + self.stop_timeout_s
                while self.status() in ACTIVE:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"Ray job {self.job_id} still {self.status()} {self.stop_timeout_s:.0f} s after stop_job"
                        )
                    time.sleep(0.5)
        finally:
            if self._loop is not None and self._tail is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._tail.cancel)
            procs.unregister_stop(self.job_id)
