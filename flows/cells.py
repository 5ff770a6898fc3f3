"""Independent stages of a flow side by side: at most ``max_concurrent`` at once, on Prefect's thread-pool runner.

A cell is one stage subflow (an RL run of the stability grid, of the cold-start comparison) with its own run id,
resume and lease (the stage's tracked lifecycle). :func:`run_cells` submits every cell as a task to a
``ThreadPoolTaskRunner(max_workers=max_concurrent)``: Prefect runs ``max_concurrent`` of them and queues the rest.
A cell that fails does not stop the others; the caller gets every cell's outcome (complete, or failed with its
one-line cause). Progress: a log line and a progress artifact each time a cell starts or ends (running, queued,
done, failed, the time left). On SIGTERM the flow's handler (``procs.kill_active``) first marks the queued cells
stopped, so none starts, then stops every running job; a rerun skips the complete cells and resumes the others from
their last checkpoint.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.tasks import artifact_key
from stable_verl.config.params import LauncherParams
from stable_verl.launch import procs
from stable_verl.launch.ray_job import cluster_gpus


@dataclasses.dataclass(frozen=True)
class Cell:
    """One independent stage: ``subflow(params)`` returns the stage's result (a dict with its ``run_id``)."""

    label: str
    subflow: Callable[[Any], dict]
    params: Any


@dataclasses.dataclass(frozen=True)
class CellOutcome:
    label: str
    result: dict | None = None
    """The stage's result plus ``flow_s`` (its wall time as seen by the flow); None when it failed."""
    error: str | None = None
    """The one-line cause of a failed cell."""

    @property
    def status(self) -> str:
        return "complete" if self.error is None else "failed"


class CellsFailed(RuntimeError):
    """Some cells failed (the others ran to the end); the message lists every cell's outcome."""


class CellNotStarted(RuntimeError):
    """A queued cell was not started: the flow is stopping."""


def max_concurrent(launcher: LauncherParams, gpus_per_stage: int) -> int:
    """``launcher.max_concurrent``, else 1 locally, else the cluster's GPUs over one stage's (at least 1)."""
    if launcher.max_concurrent is not None:
        return launcher.max_concurrent
    if not launcher.on_cluster:
        return 1
    return max(1, int(cluster_gpus(launcher.ray_address) // gpus_per_stage))


def sft_concurrency(launcher: LauncherParams, gpus_per_stage: int, stages: int) -> int:
    """How many of ``stages`` SFT stages run at once: locally all of them (verl SFT keeps one core busy), on a
    cluster :func:`max_concurrent` (``launcher.max_concurrent``, else its GPUs over one stage's), as the RL stages."""
    if not launcher.on_cluster:
        return max(stages, 1)
    return max_concurrent(launcher, gpus_per_stage)


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (its type when there is none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


@dataclasses.dataclass
class CellCounts:
    """Cells queued / running / done, and the time left from the mean wall time of the cells that ran."""

    total: int
    concurrency: int
    to_run: int | None = None
    """Cells that were not complete when the flow started (None: unknown, every cell not done counts)."""
    running: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    ran_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def queued(self) -> int:
        return self.total - self.running - self.done

    def start(self) -> None:
        self.running += 1

    def finish(self, wall_s: float, failed: bool, skipped: bool) -> None:
        self.running -= 1
        self.done += 1
        self.failed += failed
        self.skipped += skipped
        if not failed and not skipped:
            self.ran_s.append(wall_s)

    @property
    def eta_s(self) -> float | None:
        """Mean wall time of the cells that ran x cells left to run / concurrency (complete cells are skipped in
        about a second); None before any cell ran."""
        if not self.ran_s:
            return None
        left = self.total - self.done if self.to_run is None else max(self.to_run - len(self.ran_s) - self.failed, 0)
        return statistics.fmean(self.ran_s) * left / self.concurrency

    def line(self, what: str, event: str) -> str:
        eta = "unknown" if self.eta_s is None else f"{self.eta_s / 60:.1f} min"
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{what}: {self.running} running, {self.queued} queued, {self.done}/{self.total} done{failed}"
            f" (at most {self.concurrency} at once; {event}); estimated time left {eta}"
        )


class CellProgress:
    """:class:`CellCounts` shown as log lines and one Prefect progress artifact; called from the cells' threads."""

    def __init__(self, what: str, total: int, concurrency: int, to_run: int | None = None) -> None:
        self.what, self.counts, self._lock = what, CellCounts(total, concurrency, to_run), threading.Lock()
        self.stopping = threading.Event()
        """Set when the flow is stopped: a queued cell then does not start."""
        self.log = get_run_logger()
        line = self.counts.line(what, "starting" if to_run is None else f"{total - to_run} complete already")
        self.id = create_progress_artifact(0.0, key=artifact_key("progress", what), description=line)
        self.log.info(line)

    def _show(self, event: str) -> None:
        line = self.counts.line(self.what, event)
        self.log.info(line)
        update_progress_artifact(self.id, 100.0 * self.counts.done / self.counts.total, description=line)

    def start(self, label: str) -> None:
        with self._lock:
            self.counts.start()
            self._show(f"started {label}")

    def finish(self, label: str, wall_s: float, error: str | None, skipped: bool) -> None:
        with self._lock:
            self.counts.finish(wall_s, error is not None, skipped)
            event = "skipped: complete" if skipped else f"in {wall_s:.0f} s" if error is None else f"FAILED: {error}"
            self._show(f"{label} {event}")


@task(name="cell", task_run_name="{cell.label}", cache_policy=NO_CACHE)
def _run_cell(cell: Cell, progress: CellProgress) -> dict:
    """One cell's stage subflow, timed; its start and end reach the progress."""
    if progress.stopping.is_set():
        raise CellNotStarted(f"{cell.label} not started: the flow is stopping")
    progress.start(cell.label)
    start = time.monotonic()
    try:
        result = cell.subflow(cell.params)
    except BaseException as e:
        progress.finish(cell.label, time.monotonic() - start, one_line(e), skipped=False)
        raise
    wall_s = time.monotonic() - start
    progress.finish(cell.label, wall_s, None, skipped=bool(result.get("skipped")))
    return {**result, "flow_s": wall_s}


def run_cells(what: str, cells: list[Cell], concurrency: int, to_run: int | None = None) -> list[CellOutcome]:
    """Run every cell, at most ``concurrency`` at once (queued in order); every cell's outcome, in order.
    ``to_run``: how many are not complete yet (for the time left)."""
    progress = CellProgress(what, len(cells), concurrency, to_run)
    # Registered before any cell's job: on SIGTERM the queued cells are stopped first, then the running jobs.
    procs.register_stop(f"{what}: queued cells", progress.stopping.set)
    try:
        with ThreadPoolTaskRunner(max_workers=concurrency) as runner:
            futures = [runner.submit(_run_cell, {"cell": cell, "progress": progress}) for cell in cells]
            wait(futures)
    finally:
        procs.unregister_stop(f"{what}: queued cells")
    outcomes = []
    for cell, future in zip(cells, futures, strict=True):
        try:
            outcomes.append(CellOutcome(cell.label, result=future.result()))
        except Exception as e:
            outcomes.append(CellOutcome(cell.label, error=one_line(e)))
    _report(what, outcomes)
    return outcomes


def _report(what: str, outcomes: list[CellOutcome]) -> None:
    rows = [
        {
            "cell": o.label,
            "status": o.status,
            "run": (o.result or {}).get("run_id", ""),
            "flow_s": round((o.result or {}).get("flow_s", 0.0), 1),
            "cause": o.error or "",
        }
        for o in outcomes
    ]
    create_table_artifact(rows, key=artifact_key(what, "cells"), description=f"{what}: every cell's outcome")
    log = get_run_logger()
    for row in rows:
        log.info(f"{what}: {row['cell']} {row['status']} {row['run']}{'  ' + row['cause'] if row['cause'] else ''}")


def raise_if_failed(what: str, outcomes: list[CellOutcome]) -> None:
    """:class:`CellsFailed` naming every cell's outcome when any failed (a rerun resumes the failed ones)."""
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        lines = [f"{o.label}: {o.status}" + (f" ({o.error})" if o.error else "") for o in outcomes]
        head = f"{len(failed)} of {len(outcomes)} {what} cell(s) failed; rerun to resume them: "
        raise CellsFailed(head + "; ".join(lines))
