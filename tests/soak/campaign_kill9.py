"""kill -9 of the flow process at seeded random moments, then a rerun; the final store must equal a clean run's.

The flow is a one-init cold-start comparison cut to its mechanics (``OVERRIDES``): verl SFT (checkpoint uploaded),
verl RL of 3 steps (a checkpoint uploaded at each), evaluation of the last checkpoint, the report. It runs as
``python -m flows.coldstart`` in a child process against an S3 server (moto, over HTTP on loopback) and one Prefect
API server for the whole campaign.

1. A clean run into its own store prefix: the reference, and the flow's duration D.
2. ``SOAK_KILL_POINTS`` kill points (default 10), each in a fresh store prefix and workdir: the flow starts, and
   SIGKILL goes to the flow process alone (as the OOM killer would; verl, Ray and the evaluator are left orphaned)
   at a time drawn uniformly over [0, D) by ``random.Random(SOAK_KILL_SEED)``, or, for one point in five, at the
   first moment a checkpoint's files are in the store and its ``_MANIFEST.json`` is not (mid-upload). Then the
   same flow runs again to completion, and the store is compared with the reference.

Counted: kills delivered and landing mid-upload (a manifested folder with files but no manifest right after the
kill); reruns completed; steps duplicated or missing in each run's metrics; manifests whose files do not match
their sha256 and size; manifested folders differing from the reference; runs left ``running`` and leases left
behind; points where a process of the killed flow still ran while the rerun trained (the same run trained twice
at once) and processes of the killed flow still alive after the rerun.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, Manifest, RunLayout, list_runs
from stable_verl.launch import procs
from stable_verl.launch.stall import DEFAULT_SILENT_S, DEFAULT_STALL_S, StallWatch, tree_cpu_times
from tests.soak.common import Count
from tests.support.prefect_startup import raise_startup_limit

raise_startup_limit()  # before Prefect is imported: its temporary server may start slowly on a busy machine

REPO = Path(__file__).resolve().parents[2]
BUCKET = "soak-kill9"
POINTS = int(os.environ.get("SOAK_KILL_POINTS", "10"))
SEED = int(os.environ.get("SOAK_KILL_SEED", "13"))
MID_UPLOAD_EVERY = 5
"""Every fifth kill point (the first included) waits for a checkpoint caught mid-upload instead of a time."""

OVERRIDES = [
    "teachers=[terse]",
    "task.difficulty=1",
    "task.hard_difficulty=2",
    "task.max_operand=null",
    "task.n_sft=64",
    "task.n_rl_train=32",
    "task.n_bench=8",
    "sft.steps=4",
    "sft.batch_size=16",
    "sft.micro_batch_size=16",
    "rl.recipe=minirl",
    "rl.train_batch_size=8",
    "rl.rollout_n=2",
    "rl.micro_batch_size=16",
    "rl.rollout_dtype=float32",
    "rl.total_steps=3",
    "rl.save_freq=1",
    "eval.k=1",
    "eval.n_prompts=4",
    "eval.steps=last",
    "eval.benchmarks=[bench_id]",
]

log = logging.getLogger("soak.kill9")


# --------------------------------------------------------------------------------------------- servers
@contextlib.contextmanager
def _moto() -> Iterator[str]:
    """A moto S3 server on loopback with one bucket; fake credentials in this process's environment."""
    import s3fs

    from tests.support.s3 import FAKE_ENV, UNSET_ENV, start_moto_server

    saved = dict(os.environ)
    os.environ.update(FAKE_ENV)
    for name in UNSET_ENV:
        os.environ.pop(name, None)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server, port = start_moto_server()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3fs.S3FileSystem(key="test", secret="test", client_kwargs={"endpoint_url": endpoint}).mkdir(BUCKET)
        yield endpoint
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _prefect() -> Iterator[str]:
    """One temporary Prefect API server (SQLite) for every flow process of the campaign; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from a loopback-only test
    with prefect_test_harness(server_startup_timeout=None):
        yield str(PREFECT_API_URL.value())


# ------------------------------------------------------------------------------------------- processes
def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a process from a later one with its pid), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(seen: dict[int, str]) -> dict[int, str]:
    """The processes of ``seen`` (pid -> start time) still alive (not zombies) and still the same processes."""
    alive = {}
    for pid, started in seen.items():
        state = procs._stat(pid)
        if state is not None and state[0] not in ("Z", "X") and _start_time(pid) == started:
            alive[pid] = started
    return alive


def _is_trainer(pid: int) -> bool:
    """A verl training process: the RL driver, SFT's torchrun or its trainer, or a Ray worker of RL."""
    cmd = _cmdline(pid)
    return "verl.trainer" in cmd or cmd.startswith("ray::")


class Flow:
    """One ``python -m flows.coldstart`` process, its log, and every process it started (seen by polling)."""

    def __init__(self, root: str, endpoint: str, api_url: str, workdir: Path, log_path: Path) -> None:
        argv = [sys.executable, "-m", "flows.coldstart", "--config", "configs/coldstart.yaml", *OVERRIDES]
        argv += [f"workdir={workdir}", f"store.root={root}", f"store.endpoint_url={endpoint}"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": api_url}
        self.log_path = log_path
        self.start = time.monotonic()
        with open(log_path, "w") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.seen: dict[int, str] = {}
        self.watch = StallWatch(
            DEFAULT_STALL_S, cpu_times=lambda: tree_cpu_times([self.proc.pid]), silent_s=DEFAULT_SILENT_S
        )
        self._log_offset = 0

    def check_progress(self) -> None:
        """Kill the flow and raise when it stopped making progress: the stages' stall rule over its tree's CPU and
        its log's new lines (a slow machine is not a hung flow)."""
        with open(self.log_path, errors="replace") as log:
            log.seek(self._log_offset)
            for line in log:
                self.watch.on_line(line)
            self._log_offset = log.tell()
        if (why := self.watch.check()) is not None:
            self.kill()
            raise RuntimeError(f"flow {why}; log: {self.log_path}")

    def poll_tree(self) -> None:
        """Record the flow's live descendants (verl, Ray, the evaluator) with their start times."""
        for pid in procs.tree(self.proc.pid) - {self.proc.pid}:
            if (started := _start_time(pid)) is not None:
                self.seen.setdefault(pid, started)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def kill(self) -> bool:
        """SIGKILL the flow process alone; True if it was still running."""
        self.poll_tree()
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return True

    def wait(self, during: Callable[[], None] | None = None) -> int:
        """Wait for the flow to end while it makes progress (``during()`` called every half second); its exit code."""
        while self.proc.poll() is None:
            self.poll_tree()
            if during is not None:
                during()
            self.check_progress()
            time.sleep(0.5)
        return self.proc.returncode

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def _kill_processes(pids: dict[int, str]) -> None:
    """SIGKILL what is left of a killed flow's processes (their trees), so the next point starts clean."""
    for pid in _alive(pids):
        procs.kill_tree(pid, grace_s=0)


# ----------------------------------------------------------------------------------------------- store
@dataclass
class StoreState:
    """What the comparison needs of a store: per run its status, metric steps and complete checkpoints."""

    status: dict[str, str] = field(default_factory=dict)
    steps: dict[str, list[int]] = field(default_factory=dict)
    manifested: set[str] = field(default_factory=set)
    """Folders with a ``_MANIFEST.json`` (checkpoints, evaluations, reports), relative to the root."""
    invalid_manifests: list[str] = field(default_factory=list)
    unlisted: int = 0
    """Objects in manifested folders that their manifest does not list."""
    leases: list[str] = field(default_factory=list)


def _open(root: str, endpoint: str) -> ArtifactStore:
    return ArtifactStore(root, {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint}})


def _files(store: ArtifactStore, prefix: str) -> list[str]:
    """Every object (file) under ``prefix``, relative to the root; one listing request on S3."""
    store.fs.invalidate_cache()
    try:
        return sorted(store._rel(p) for p in store.fs.find(store._full(prefix)))
    except FileNotFoundError:
        return []


def _check_manifest(store: ArtifactStore, folder: str) -> tuple[bool, int]:
    """Whether every file the manifest of ``folder`` lists is there with its size and sha256; and how many objects
    of the folder it does not list (left by an upload that was killed: readers ignore them)."""
    try:
        manifest = Manifest.from_json(store.read_bytes(f"{folder}/{MANIFEST_NAME}"))
    except Exception:
        return False, 0
    listed = {f"{folder}/{entry.path}" for entry in manifest.files}
    unlisted = {p for p in _files(store, folder) if not p.endswith(f"/{MANIFEST_NAME}")} - listed
    for entry in manifest.files:
        try:
            data = store.read_bytes(f"{folder}/{entry.path}")
        except FileNotFoundError:
            return False, len(unlisted)
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            return False, len(unlisted)
    return True, len(unlisted)


def snapshot(store: ArtifactStore) -> StoreState:
    """The store's runs, metric steps, manifested folders (each manifest checked file by file) and leases."""
    state = StoreState()
    for record in list_runs(store):
        rid = record["run_id"]
        state.status[rid] = record.get("status", "?")
        state.steps[rid] = [row["step"] for row in RunLayout(store, rid).read_metrics()]
    for path in store.glob(f"**/{MANIFEST_NAME}"):
        folder = path.rsplit("/", 1)[0]
        state.manifested.add(folder)
        ok, unlisted = _check_manifest(store, folder)
        state.unlisted += unlisted
        if not ok:
            state.invalid_manifests.append(folder)
    state.leases = store.glob("leases/**/*.json")
    return state


def unmanifested(store: ArtifactStore) -> list[str]:
    """Checkpoint and evaluation folders with files in the store but no ``_MANIFEST.json`` (an upload under way)."""
    folders: dict[str, bool] = {}
    for path in _files(store, "runs"):
        parts = path.split("/")  # runs/<id>/checkpoints/<step>/... | runs/<id>/eval/<step>/<benchmark>/...
        depth = {"checkpoints": 4, "eval": 5}.get(parts[2] if len(parts) > 2 else "", 0)
        if depth and len(parts) > depth:
            folder = "/".join(parts[:depth])
            folders[folder] = folders.get(folder, False) or parts[-1] == MANIFEST_NAME
    return sorted(f for f, has_manifest in folders.items() if not has_manifest)


# ------------------------------------------------------------------------------------------- campaign
@dataclass
class PointResult:
    at_s: float | None
    """The drawn kill time (None: a mid-upload point)."""
    delivered: bool = False
    killed_at_s: float = 0.0
    mid_upload: list[str] = field(default_factory=list)
    orphans_after_kill: int = 0
    rerun_rc: int | None = None
    rerun_s: float = 0.0
    trained_twice: bool = False
    orphans_after_rerun: int = 0
    stale_killed: int = 0
    """Trees of the killed attempt that the rerun's launcher found still running and killed."""
    state: StoreState | None = None


def _kill_point(i: int, at_s: float | None, endpoint: str, api_url: str, tmp: Path) -> PointResult:
    """Run the flow into a fresh store, SIGKILL it at ``at_s`` (None: mid-upload), rerun it; the final store."""
    result = PointResult(at_s)
    root = f"s3://{BUCKET}/point-{i}-{uuid.uuid4().hex[:6]}"
    store, workdir = _open(root, endpoint), tmp / f"point-{i}" / "work"
    workdir.mkdir(parents=True)
    flow = Flow(root, endpoint, api_url, workdir, tmp / f"point-{i}" / "killed.log")
    while flow.proc.poll() is None:
        flow.check_progress()
        flow.poll_tree()
        if at_s is not None and flow.elapsed() >= at_s:
            break
        if at_s is None and unmanifested(store):
            break
        time.sleep(0.05 if at_s is None else 0.1)
    result.killed_at_s = flow.elapsed()
    result.delivered = flow.kill()
    result.mid_upload = unmanifested(store) if result.delivered else []
    time.sleep(1.0)
    orphans = _alive(flow.seen)
    result.orphans_after_kill = len(orphans)
    what = "mid-upload" if at_s is None else f"at {at_s:.1f} s"
    log.warning(
        f"point {i} ({what}): killed={result.delivered} after {result.killed_at_s:.1f} s, mid-upload "
        f"{result.mid_upload}, {len(orphans)} orphan process(es): "
        + "; ".join(f"{pid} {_cmdline(pid)[:60]}" for pid in orphans)
    )

    def overlap() -> None:  # a killed attempt's trainer still running while the rerun trains
        if any(_is_trainer(pid) for pid in _alive(orphans)) and any(_is_trainer(pid) for pid in rerun.seen):
            if any(_is_trainer(pid) for pid in _alive(rerun.seen)):
                result.trained_twice = True

    rerun = Flow(root, endpoint, api_url, workdir, tmp / f"point-{i}" / "rerun.log")
    result.rerun_rc = rerun.wait(during=overlap)
    result.rerun_s = rerun.elapsed()
    result.stale_killed = rerun.log_path.read_text(errors="replace").count("left running by an earlier attempt")
    if result.rerun_rc != 0:
        log.warning(f"point {i}: rerun failed ({result.rerun_rc}):\n{rerun.tail()}")
    left = _alive(orphans)
    result.orphans_after_rerun = len(left)
    _kill_processes({**left, **_alive(rerun.seen)})
    result.state = snapshot(store)
    return result


def _compare(ref: StoreState, got: StoreState) -> dict[str, int]:
    duplicated = sum(len(steps) - len(set(steps)) for steps in got.steps.values())
    missing = sum(len(set(steps) - set(got.steps.get(rid, []))) for rid, steps in ref.steps.items())
    return {
        "duplicated": duplicated,
        "missing": missing,
        "invalid": len(got.invalid_manifests),
        "differing": len(ref.manifested ^ got.manifested),
        "running": sum(status == "running" for status in got.status.values()),
        "not_complete": sum(s != "complete" for s in got.status.values()) + len(set(ref.status) - set(got.status)),
        "leases": len(got.leases),
        "unlisted": got.unlisted - ref.unlisted,  # the clean run has some too (a comparison's index.html)
    }


def run() -> list[Count]:
    """The campaign (see the module doc); its counts."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    start = time.monotonic()
    rng = random.Random(SEED)
    tmp = Path(tempfile.mkdtemp(prefix="soak-kill9-"))  # kept: each point's flow logs and workdirs
    log.warning(f"kill9: {POINTS} kill point(s), seed {SEED}; logs and workdirs in {tmp}")
    with _moto() as endpoint, _prefect() as api_url:
        (tmp / "clean").mkdir()
        root = f"s3://{BUCKET}/clean"
        clean = Flow(root, endpoint, api_url, tmp / "clean" / "work", tmp / "clean" / "flow.log")
        rc = clean.wait()
        duration = clean.elapsed()
        if rc != 0:
            raise RuntimeError(f"the clean run failed ({rc}):\n{clean.tail()}")
        _kill_processes(clean.seen)
        ref = snapshot(_open(root, endpoint))
        log.warning(f"clean run: {duration:.1f} s; {ref.status}; steps {ref.steps}; {len(ref.manifested)} manifests")
        plan = [None if i % MID_UPLOAD_EVERY == 0 else rng.uniform(0.0, duration) for i in range(POINTS)]
        results = []
        for i, at in enumerate(plan):
            try:
                results.append(_kill_point(i, at, endpoint, api_url, tmp))
            except Exception as exc:  # counted as a rerun that did not complete; the campaign goes on
                log.warning(f"point {i}: {exc!r}")
                results.append(PointResult(at))
    totals: collections.Counter[str] = collections.Counter()
    for i, r in enumerate(results):
        diff = _compare(ref, r.state) if r.state is not None else {}
        log.warning(f"point {i}: rerun rc {r.rerun_rc} in {r.rerun_s:.1f} s; {diff}")
        totals.update(diff)
    ref_invalid = len(ref.invalid_manifests)
    return [
        Count("clean_run_seconds", round(duration, 1)),
        Count("clean_run_invalid_manifests", ref_invalid, 0),
        Count("kill_points", len(plan)),
        Count("kills_delivered", sum(r.delivered for r in results)),
        Count("kills_mid_upload", sum(bool(r.mid_upload) for r in results)),
        Count("kills_leaving_orphan_processes", sum(r.orphans_after_kill > 0 for r in results)),
        Count("orphan_trees_killed_by_rerun", sum(r.stale_killed for r in results)),
        Count("reruns_completed", sum(r.rerun_rc == 0 for r in results), len(plan)),
        Count("steps_duplicated", totals["duplicated"], 0),
        Count("steps_missing", totals["missing"], 0),
        Count("invalid_manifests", totals["invalid"], 0),
        Count("manifested_folders_differing", totals["differing"], 0),
        Count("unlisted_objects_beyond_clean_run", totals["unlisted"]),
        Count("orphan_running_states", totals["running"], 0),
        Count("runs_not_complete", totals["not_complete"], 0),
        Count("leases_left", totals["leases"], 0),
        Count("runs_trained_twice_at_once", sum(r.trained_twice for r in results), 0),
        Count("orphan_processes_after_rerun", sum(r.orphans_after_rerun for r in results), 0),
        Count("seconds_total", round(time.monotonic() - start, 1)),
    ]


if __name__ == "__main__":
    for count in run():
        print(count.line("kill9"), flush=True)
