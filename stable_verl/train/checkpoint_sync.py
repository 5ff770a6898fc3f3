"""Checkpoints and metrics between verl and the artifact store, on the flow's side.

Two ways, one per kind of stage:

* RL (the ``stable_sync`` trainer): verl's own processes upload each checkpoint and the metrics, and restore the
  checkpoint to resume from (:mod:`stable_verl.verl_ext.store_sync`), on whichever nodes save and load them, so no
  filesystem need be shared with the flow; :class:`CheckpointWatch` reports them to the flow as they land in the
  store.
* SFT (verl's ``sft_trainer`` under torchrun, which has no seam for this): :class:`CheckpointSyncer` watches verl's
  local folder, beside verl: in the flow for a local stage, in the job's entrypoint on the node that runs torchrun
  for a Ray Job (:mod:`stable_verl.train.node_sft`).

* :class:`MetricsLog`: verl's file logger opens its file with ``"wb"``, so every attempt of a stage writes
  its own file; rows up to the checkpoint an attempt resumed from come from earlier attempts, later rows
  from the attempt itself, so the merged log has each step exactly once.
* :class:`CheckpointSyncer`: a thread that uploads each ``global_step_N`` while verl runs. verl writes
  ``latest_checkpointed_iteration.txt`` only after a checkpoint is complete; the syncer also waits for
  step N's metrics row (the RL trainer logs it after saving), so a checkpoint in the store always has its
  metrics there too. Metrics go up first, the checkpoint's ``_MANIFEST.json`` last.
* :func:`restore_latest`: the latest complete checkpoint from the store into an empty local checkpoint
  root, plus the tracker file, so verl's ``trainer.resume_mode=auto`` resumes from it.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stable_verl import site
from stable_verl.artifacts import MANIFEST_NAME, RunLayout, parse_step_dir, step_dir
from stable_verl.verl_ext.store_sync import StepMetrics, parse_restored

log = logging.getLogger(__name__)

TRACKER = "latest_checkpointed_iteration.txt"


def read_verl_metrics(path: Path) -> list[dict]:
    """Rows ``{"step": n, **metrics}`` of a verl file-logger file (none if it does not exist yet).

    A half-written last line (verl caught mid-write) is dropped; a bad line elsewhere raises.
    """
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                break
            raise
        rows.append({"step": rec["step"], **rec["data"]})
    return rows


class MetricsLog:
    """The merged metrics of a stage: earlier attempts up to ``resumed_step``, then the current attempt."""

    def __init__(self, previous: list[dict], resumed_step: int, attempt_file: Path) -> None:
        self.previous = sorted((r for r in previous if r["step"] <= resumed_step), key=lambda r: r["step"])
        self.resumed_step = resumed_step
        self.attempt_file = attempt_file

    def rows(self) -> list[dict]:
        """One row per step, ascending. Rows verl wrote for the same step (e.g. training, then validation) are
        merged; for a key written twice the later value wins (:class:`~stable_verl.verl_ext.store_sync.StepMetrics`)."""
        merged = StepMetrics(self.previous, self.resumed_step)
        for row in read_verl_metrics(self.attempt_file):
            merged.add(row)
        return merged.rows()

    def steps(self) -> list[int]:
        return [r["step"] for r in self.rows()]


def check_steps(steps: list[int], total: int) -> None:
    """Raise unless ``steps`` is exactly 1..total (no gap, no duplicate)."""
    if steps != list(range(1, total + 1)):
        raise RuntimeError(f"metrics steps are {steps}, expected 1..{total} exactly once")


def local_steps(ckpt_root: Path) -> list[int]:
    """Steps of the ``global_step_N`` directories under ``ckpt_root``, ascending."""
    found = (parse_step_dir(p.name) for p in ckpt_root.glob("global_step_*") if p.is_dir())
    return sorted(step for step in found if step is not None)


def tracker_step(ckpt_root: Path) -> int | None:
    """The step in verl's ``latest_checkpointed_iteration.txt`` (a completed save), if any."""
    try:
        return int((ckpt_root / TRACKER).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def restore_latest(run: RunLayout, ckpt_root: Path) -> int:
    """Empty ``ckpt_root``, download the run's latest complete checkpoint into it; returns its step (0: none)."""
    shutil.rmtree(ckpt_root, ignore_errors=True)
    ckpt_root.mkdir(parents=True)
    step = run.latest_checkpoint()
    if step is None:
        return 0
    run.download_checkpoint(step, ckpt_root / step_dir(step))
    (ckpt_root / TRACKER).write_text(str(step))
    return step


class CheckpointSyncer:
    """Upload each checkpoint verl completes (metrics first, manifest last) from a background thread."""

    def __init__(
        self,
        run: RunLayout,
        ckpt_root: Path,
        metrics: MetricsLog,
        already_synced: int = 0,
        poll_s: float = 1.0,
        echo: Callable[[str], None] = log.info,
    ) -> None:
        self.run, self.ckpt_root, self.metrics = run, ckpt_root, metrics
        self.synced = already_synced
        self.uploaded: list[int] = []
        self.upload_seconds = 0.0
        self.poll_s, self.echo = poll_s, echo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> CheckpointSyncer:
        self._thread.start()
        return self

    def stop(self, final_sync: bool = True) -> None:
        """Stop the thread; with ``final_sync``, upload what verl completed since the last poll.

        Raises the thread's upload error, if any, so a failed sync never passes silently.
        """
        self._stop.set()
        self._thread.join()
        if final_sync and self.error is None:
            self.sync_once()
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync_once()
            except Exception as exc:  # surfaced by stop()
                self.error = exc
                return

    def sync_once(self) -> list[int]:
        """Upload every completed checkpoint newer than the last synced one whose metrics row exists."""
        done = tracker_step(self.ckpt_root)
        if done is None or done <= self.synced:
            return []
        rows = self.metrics.rows()
        logged = {r["step"] for r in rows}
        new = [s for s in local_steps(self.ckpt_root) if self.synced < s <= done and s in logged]
        if not new:
            return []
        start = time.monotonic()
        self.run.write_metrics(rows)
        for step in new:
            local = self.ckpt_root / step_dir(step)
            manifest = self.run.upload_checkpoint(local, step)
            (local / MANIFEST_NAME).write_text(manifest.to_json())  # lets later stages here skip the download
            self.synced = step
            self.uploaded.append(step)
        seconds = time.monotonic() - start
        self.upload_seconds += seconds
        self.echo(f"synced checkpoint(s) {new} to {self.run.uri(self.run.checkpoints_dir)} in {seconds:.1f} s")
        site.refresh_run(self.run)  # site hook: the page shows the new checkpoint(s) and metrics
        return new


class CheckpointWatch:
    """The flow's view of checkpoints verl uploads itself: a thread that polls the store for new complete ones,
    reports each (and refreshes the run's site page), and sums the upload time their manifests record; its
    :meth:`on_line` reads from verl's output how long restoring the checkpoint to resume from took."""

    def __init__(
        self, run: RunLayout, already: int = 0, poll_s: float = 2.0, echo: Callable[[str], None] = log.info
    ) -> None:
        self.run, self.seen, self.poll_s, self.echo = run, already, poll_s, echo
        self.landed: list[int] = []
        self.upload_seconds = self.download_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-watch", daemon=True)

    def start(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def stop(self, final_poll: bool = True) -> None:
        """Stop polling; with ``final_poll``, report what landed since the last poll."""
        self._stop.set()
        self._thread.join()
        if final_poll:
            self.poll_once()

    def on_line(self, line: str) -> None:
        """A line of verl's output: the trainer's report of the restored checkpoint gives its download time."""
        seconds = parse_restored(line)
        if seconds is not None:
            self.download_seconds += seconds

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll_once()
            except Exception as exc:  # a store hiccup: verl's uploads go on; the next poll catches up
                log.warning("checkpoint watch: %s", exc)

    def poll_once(self) -> list[int]:
        """Report the complete checkpoints newer than the last one seen."""
        new = [s for s in self.run.checkpoint_steps() if s > self.seen]
        if not new:
            return []
        seconds = 0.0
        for step in new:
            manifest = self.run.store.read_manifest(self.run.checkpoint(step))
            seconds += float((manifest.metadata if manifest else {}).get("upload_s", 0.0))
        self.seen = new[-1]
        self.landed += new
        self.upload_seconds += seconds
        where = self.run.uri(self.run.checkpoints_dir)
        self.echo(f"checkpoint(s) {new} uploaded by verl to {where} in {seconds:.1f} s")
        site.refresh_run(self.run)  # site hook: the page shows the new checkpoint(s) and metrics
        return new
