"""One verl training stage (SFT or RL) tracked in the artifact store: skip, resume, sync, finalize.

:func:`run_tracked` is the lifecycle every training stage shares:

1. a run whose ``run.json`` says ``status: complete`` is skipped (that status is written last); otherwise the
   run's train lease (:mod:`stable_verl.artifacts.lease`) is taken, waiting while another flow run holds it, and
   a launcher that finds the run already running (a Ray Job of an earlier attempt) refuses before anything changes;
2. ``run.json`` (status ``running``, attempt k), ``config.yaml`` and ``command.json`` are written;
3. verl runs through the job's launcher (:mod:`stable_verl.launch.runner`: a local subprocess, or a Ray
   Job) and resumes from the latest complete checkpoint in the store (a killed stage resumes when rerun):
   * a ``store_sync`` job (RL; SFT on a cluster): it is restored, each checkpoint uploaded and the metrics written
     on the node that saves them, with no filesystem shared with the flow (RL: verl's own processes,
     :mod:`stable_verl.verl_ext.store_sync`; SFT: its job's entrypoint, :mod:`~.train.node_sft`, running the syncer
     below beside torchrun), while :class:`~.checkpoint_sync.CheckpointWatch` reports the checkpoints as they land
     in the store; a cluster job's inputs are uploaded first (``node_inputs``) and materialised on its nodes;
   * otherwise (a local SFT): the flow restores it into an empty local checkpoint root, and
     :class:`~.checkpoint_sync.CheckpointSyncer` uploads checkpoints from that folder as verl saves them, with the
     metrics verl writes to ``metrics-attempt-<k>.jsonl``;
4. the merged metrics (each step exactly once), the attempt's log and ``run.json`` (status ``complete``,
   last) are written. On failure ``run.json`` says ``failed`` and the error; nothing is marked complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_verl import site
from stable_verl.artifacts import RunLayout
from stable_verl.artifacts.lease import Lease
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.config.stages import Logging
from stable_verl.launch import tracking
from stable_verl.launch.runner import Launcher, LaunchSpec, LocalLauncher, launch
from stable_verl.launch.stall import DEFAULT_SILENT_S, DEFAULT_STALL_S
from stable_verl.train.checkpoint_sync import (
    CheckpointSyncer,
    CheckpointWatch,
    MetricsLog,
    check_steps,
    restore_latest,
)
from stable_verl.train.node_sft import ATTEMPT_ENV
from stable_verl.verl_ext.store_sync import sync_env

if TYPE_CHECKING:
    from stable_verl.train.node_inputs import NodeInputs


@dataclass(frozen=True)
class StageResult:
    """What a tracked stage produced; small and JSON-able (flows pass this around, not files)."""

    run_id: str
    run_uri: str
    kind: str
    skipped: bool
    """The run was already complete in the store; nothing ran."""
    resumed_from: int
    """Checkpoint step this attempt started from (0: from scratch)."""
    checkpoints: list[int]
    """Complete checkpoints in the store, ascending."""
    steps: int
    """Steps in the final metrics (1..steps)."""
    wall_s: float = 0.0
    """Wall time of this call."""
    verl_s: float = 0.0
    """Time the verl subprocess ran."""
    upload_s: float = 0.0
    """Checkpoint + metrics uploads while verl ran (overlapped with it, except the final one)."""
    download_s: float = 0.0
    """Restoring the checkpoint to resume from."""

    @property
    def overhead_s(self) -> float:
        """Orchestration cost of the stage: wall time not spent in verl."""
        return self.wall_s - self.verl_s

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overhead_s": self.overhead_s}


@dataclass(frozen=True)
class VerlJob:
    """How to launch one verl stage; ``argv(ckpt_root, metrics_file)`` builds the exact command."""

    kind: str
    """'sft' or 'rl' (run.json ``kind``)."""
    name: str
    """Human name of the run (teacher style, recipe)."""
    total_steps: int
    argv: Callable[[Path], list[str]]
    """Command line, given the local checkpoint root verl saves into and resumes from."""
    env: Mapping[str, str]
    timeout_s: float | None
    """Optional total wall-clock limit of verl (None: none)."""
    config: Mapping[str, Any]
    """Resolved config, written to config.yaml."""
    parent_checkpoint: str | None = None
    """Store path of the checkpoint the stage starts from (RL: the SFT checkpoint)."""
    launcher: Callable[[], Launcher] = LocalLauncher
    """Makes the launcher of one attempt (a local subprocess unless the flow asks for a Ray Job)."""
    entrypoint_gpus: float = 0
    """GPUs the command's own process needs (SFT's torchrun runs the trainers itself; verl's RL driver: 0)."""
    store_sync: bool = False
    """Checkpoints and metrics are uploaded and the checkpoint restored where verl runs (the ``stable_sync``
    trainer, :mod:`stable_verl.verl_ext.store_sync`; an SFT job's entrypoint, :mod:`~.train.node_sft`); False:
    the flow does, from the local checkpoint folder."""
    node_inputs: NodeInputs | None = None
    """A cluster job's inputs in the store, which each node materialises (None: verl reads the flow's files)."""
    logging: Logging = field(default_factory=Logging)
    """Trackers verl logs to beside console and file; their per-run settings go into each attempt's environment."""
    stall_s: float = DEFAULT_STALL_S
    """verl is stopped when it makes no progress (no new step or log line, no CPU) for this long."""
    platform: Callable[[], Mapping[str, Any]] = dict
    """The facts of the machine that launches the command (:func:`~.config.cpu_env.platform_facts`), asked when it
    launches (planning asks nothing of torch): run.json and config.yaml."""


def run_tracked(
    run: RunLayout,
    job: VerlJob,
    local_dir: Path,
    echo: Callable[[str], None] = print,
    on_line: Callable[[str], None] | None = None,
) -> StageResult:
    """Run ``job`` for ``run`` unless complete; resume from the store's latest checkpoint. See the module doc."""
    start = time.monotonic()
    record = RunRecord.read(run) or RunRecord(run.run_id)
    lease = None
    if not record.complete:  # one trainer per run: wait while another flow run holds its train lease
        lease = Lease(run.store, "train", run.run_id)
        lease.acquire(wait_s=math.inf if job.timeout_s is None else job.timeout_s, echo=echo)
        record = RunRecord.read(run) or record  # the holder we waited for may have completed it
    if record.complete:
        if lease is not None:
            lease.release()
        else:  # a holder killed after completing the run, before releasing, left its lease behind
            Lease(run.store, "train", run.run_id).clear_stale(echo)
        echo(f"[{job.kind}] {run.run_id} is complete in the store: skipped")
        return _result(run, job, record, skipped=True, wall_s=time.monotonic() - start)

    attempt = record.attempts + 1
    ckpt_root = local_dir / "checkpoints"
    argv = job.argv(ckpt_root)
    metrics_file = local_dir / f"metrics-attempt-{attempt}.jsonl"
    launcher, spec = job.launcher(), launch_spec(run, job, argv, local_dir, attempt, metrics_file)
    try:
        launcher.check(spec)  # e.g. an earlier attempt still running on the cluster: refuse before touching anything
        platform = dict(job.platform())
        run.write_config({**job.config, **({"platform": platform} if platform else {})})
        run.write_command(argv)
        RunRecord.started(run, job.kind, job.name, attempt, job.total_steps, job.parent_checkpoint, platform)
    except BaseException:
        lease.release()
        raise
    site.refresh_run(run)  # site hook: the run's page says "running"
    try:
        t0 = time.monotonic()
        resumed = (run.latest_checkpoint() or 0) if job.store_sync else restore_latest(run, ckpt_root)
        download_s = time.monotonic() - t0 if resumed and not job.store_sync else 0.0
        metrics = MetricsLog(run.read_metrics(), resumed, metrics_file)
        verl_s = upload_s = 0.0
        if resumed >= job.total_steps:
            echo(f"[{job.kind}] {run.run_id}: last checkpoint {resumed} already in the store, verl not needed")
        else:
            if resumed:
                where = "verl restores it from the store" if job.store_sync else f"{download_s:.1f} s download"
                echo(f"[{job.kind}] {run.run_id}: resuming from checkpoint {resumed} ({where})")
            verl_s, upload_s, restore_s = _run_verl(
                run, job, launcher, spec, local_dir, attempt, metrics, echo, on_line
            )
            download_s += restore_s
        if job.store_sync:  # verl wrote them, each step's row before its checkpoint's manifest
            check_steps([r["step"] for r in run.read_metrics()], job.total_steps)
        else:
            rows = metrics.rows()
            check_steps([r["step"] for r in rows], job.total_steps)
            t0 = time.monotonic()
            run.write_metrics(rows)
            upload_s += time.monotonic() - t0
        checkpoints = run.checkpoint_steps()
        if not checkpoints or checkpoints[-1] != job.total_steps:
            raise RuntimeError(f"{run.run_id}: no complete checkpoint of the last step {job.total_steps} in the store")
        timings = {"verl_s": verl_s, "upload_s": upload_s, "download_s": download_s}
        record = RunRecord.completed(run, checkpoints, resumed, **timings)
        site.refresh_run(run)  # site hook: complete
    except BaseException as exc:
        with contextlib.suppress(Exception):  # best effort, never ``complete``; the store itself may have failed
            RunRecord.stopped(run, exc, local_dir)
        site.refresh_run(run)  # site hook: failed / interrupted (never raises)
        raise
    finally:
        lease.release()
    return _result(run, job, record, skipped=False, wall_s=time.monotonic() - start)


def run_key(run: RunLayout) -> str:
    """The run in its store (the same run id in two stores is two runs): what a launcher refuses to run twice."""
    return f"{run.run_id}-{hashlib.sha256(run.uri().encode()).hexdigest()[:8]}"


def launch_spec(
    run: RunLayout, job: VerlJob, argv: list[str], local_dir: Path, attempt: int, metrics_file: Path
) -> LaunchSpec:
    """What the launcher of ``attempt`` runs: ``argv`` with the job's settings and verl's metrics file."""
    return LaunchSpec(
        argv,
        {
            **job.env,
            # A cluster job's file is on its node ($STABLE_VERL_NODE_DIR/<run id>/): named, not this machine's path.
            "VERL_FILE_LOGGER_PATH": metrics_file.name if job.node_inputs is not None else str(metrics_file),
            **(sync_env(run) if job.store_sync else {}),
            **({ATTEMPT_ENV: str(attempt)} if job.node_inputs is not None else {}),
            **tracking.run_env(job.logging.backends, job.logging.project, run.run_id, job.env),
        },
        name=f"verl {job.kind}",
        cwd=local_dir,
        key=run_key(run),
        attempt=attempt,
        num_gpus=job.entrypoint_gpus,
        metadata={"run_id": run.run_id, "run_uri": run.uri(), "attempt": str(attempt)},
    )


def _run_verl(
    run: RunLayout,
    job: VerlJob,
    launcher: Launcher,
    spec: LaunchSpec,
    local_dir: Path,
    attempt: int,
    metrics: MetricsLog,
    echo: Callable[[str], None],
    on_line: Callable[[str], None] | None,
) -> tuple[float, float]:
    """verl with the checkpoint watch (or syncer) alongside; returns the seconds verl ran, uploaded and (watch)
    restored its checkpoint. Log goes to the store."""
    log_path = local_dir / "logs" / f"attempt-{attempt}.log"
    if job.store_sync:
        watch = CheckpointWatch(run, metrics.resumed_step, echo=echo).start()
        syncer: CheckpointSyncer | CheckpointWatch = watch
        outer = on_line

        def on_line(line: str) -> None:
            watch.on_line(line)
            if outer is not None:
                outer(line)
    else:
        syncer = CheckpointSyncer(run, local_dir / "checkpoints", metrics, metrics.resumed_step, echo=echo).start()

    def started(where: str) -> None:
        echo(f"[{job.kind}] verl started: {where}")

    try:
        result = launch(
            launcher,
            spec,
            log_path,
            job.timeout_s,
            on_line=on_line,
            on_start=started,
            stall_s=job.stall_s,
            silent_s=DEFAULT_SILENT_S,  # a hung verl tree polls the CPU: its lines decide (launch/stall.py)
        )
    except Exception:
        with contextlib.suppress(Exception):  # keep what verl completed before failing; its error comes first
            syncer.stop(True)
        raise
    except BaseException:  # cancellation, Ctrl-C: stop at once
        syncer.stop(False)
        raise
    else:
        syncer.stop(True)
    finally:
        with contextlib.suppress(Exception):
            run.store.write_text(run.log(f"attempt-{attempt}"), log_path.read_text(errors="replace"))
    return result.seconds, syncer.upload_seconds, getattr(syncer, "download_seconds", 0.0)


def _result(run: RunLayout, job: VerlJob, record: RunRecord, skipped: bool, wall_s: float) -> StageResult:
    return StageResult(
        run_id=run.run_id,
        run_uri=run.uri(),
        kind=job.kind,
        skipped=skipped,
        resumed_from=record.resumed_from,
        checkpoints=list(record.checkpoints),
        steps=job.total_steps,
        wall_s=wall_s,
        verl_s=0.0 if skipped else record.verl_s,
        upload_s=0.0 if skipped else record.upload_s,
        download_s=0.0 if skipped else record.download_s,
    )
