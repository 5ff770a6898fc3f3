"""Time limits that measure progress: a run fails when it stops making progress, not when a clock runs out.

A stage counts as progressing while, within the last ``stall_s`` seconds, it reached a new training step, printed
a new log line, or its process tree used CPU. What counts, precisely:

* a **step**: a verl step line (``step:N`` with a loss or reward) with N above the last one;
* a **new log line**: a line whose text, with every digit run replaced by ``#``, was not printed before in this
  run. A process that repeats one message (a heartbeat, Ray's "resource request cannot be scheduled" warning,
  "waiting (12 s)") while doing nothing is stalled: it is killed after ``stall_s`` although it prints;
* **CPU**: the tree (the leader's session and every descendant, :func:`~.procs.tree`) used, or waited on a run
  queue for, at least :data:`BUSY_CORES` of a core on average over a sample (:data:`SAMPLE_S`), Ray's own daemons
  left out (they poll while a hung run waits); any trainer, compiler or loader working, even throttled to a slice
  of a core, is above it. Waiting counts because a run starved of CPU by other work wants to work, and a hung one
  sleeps (:func:`~.procs.runqueue_wait_s`): counting CPU used alone, a phase-1 cell at nice 19 beside a demo at
  nice -20 and a test was killed as stalled at step 25 (2026-12-04).
  A Ray Job has no local tree: there, steps and new lines count alone.

With ``silent_s`` (verl's training stages: :data:`DEFAULT_SILENT_S`), CPU alone keeps a run alive for at most that
long without a new step or line: a hung verl tree's actors poll (0.3-0.5 cores measured), and a healthy training
run prints a step or a start-up phase far more often. Evaluation has no such limit: one benchmark's generation is one
silent call, which on a large model can take long.

A line that says part of the run is gone for good ends it at once: Ray's memory monitor killing workers
(:data:`RAY_OOM_KILL`). verl does not restart them: it waits on the dead vLLM servers forever, and the actors left
poll just above :data:`BUSY_CORES` (0.06 cores in all, measured on a phase-1 cell that hung so for 80 minutes), so
neither the CPU nor the lines would ever call it stalled.

``timeout_s`` (optional, off by default) stays available as a total wall-clock limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import psutil

from stable_verl.launch import procs
from stable_verl.launch.progress import is_step_line

DEFAULT_STALL_S = 300
"""Default stall limit. The slowest phase measured on 2 cores is an RL stage's start-up up to step 1 (188 s with
verl's default Ray actors, 113 s with ours; docs/results/2026-12-03-cpu-path-checks.md), and that phase prints
lines and keeps a core busy throughout; 300 s leaves about two minutes beyond it for a silent, idle wait (a slow
file system, a contended lock) before a run is called stalled."""
DEFAULT_SILENT_S = 1800
"""Longest a run may go without a new step or log line even while its processes use CPU. A hung verl tree is not
idle: its Ray actors and vLLM workers poll, 0.3-0.5 cores in all on 2 cores (two local verl runs deadlocked in
verl's weight sync, 2026-12-04), so CPU alone would keep it alive for ever. The slowest silent phase measured is far
shorter (a start-up phase, about 80 s here; 5x that on a machine 5x slower)."""
SAMPLE_S = 5.0
"""Seconds between CPU samples of the process tree."""
BUSY_CORES = 0.05
"""Average CPU use, in cores, above which a sample counts as progress. Chosen, not measured against an idle Ray:
Ray's own daemons (:data:`RAY_DAEMONS`), which poll while a hung run waits, are left out of the sum instead."""
RAY_DAEMONS = (
    "gcs_server",
    "raylet",
    "ray/dashboard/",
    "ray/_private/log_monitor.py",
    "ray/autoscaler/_private/monitor.py",
    "ray/_private/runtime_env/agent/",
)
"""Pieces of the command lines of the local Ray's daemons: their CPU is Ray keeping itself alive, not the run's."""


class Limits(NamedTuple):
    """A process's time limits: the stall rule's, and the optional total one."""

    stall_s: float = DEFAULT_STALL_S
    timeout_s: float | None = None


def is_ray_daemon(cmdline: list[str]) -> bool:
    """Whether a process of the tree is one of Ray's daemons (:data:`RAY_DAEMONS`), by its command line."""
    text = " ".join(cmdline[:3])
    return any(piece in text for piece in RAY_DAEMONS)


def tree_cpu_times(leaders: Iterable[int]) -> dict[int, float]:
    """CPU seconds used or waited for on a run queue, per live process of the leaders' trees (:func:`procs.tree`),
    Ray's own daemons left out: what the stall rule reads of a local run (a starved process is not a hung one)."""
    times: dict[int, float] = {}
    for pid in set().union(*(procs.tree(leader) for leader in leaders)):
        try:
            process = psutil.Process(pid)
            if is_ray_daemon(process.cmdline()):
                continue
            t = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        times[pid] = t.user + t.system + procs.runqueue_wait_s(pid)
    return times


RAY_OOM_KILL = re.compile(r"(\d+) Workers \(tasks / actors\) killed due to memory pressure \(OOM\)")
"""Ray's raylet when its memory monitor has killed workers (``node_manager.cc``); the run cannot finish."""
_DIGITS = re.compile(r"\d+")
_MAX_SEEN = 200_000  # distinct line shapes remembered (a long run's metric lines): then the memory starts over


class StallWatch:
    """Decides when a run has stalled (or passed its total limit); fed lines, polled with :meth:`check`.

    ``cpu_times``: CPU seconds used or waited for on a run queue, per live process of the run's tree (None: no local
    tree, e.g. a Ray Job).
    """

    def __init__(
        self,
        stall_s: float,
        timeout_s: float | None = None,
        cpu_times: Callable[[], dict[int, float] | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        silent_s: float | None = None,
    ) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.stall_s, self.timeout_s, self.cpu_times, self.clock = stall_s, timeout_s, cpu_times, clock
        self.silent_s = None if silent_s is None else max(silent_s, stall_s)
        self.start = self.last_progress = self.last_output = clock()
        self.last_step = 0
        self._seen: set[str] = set()
        self._cpu: dict[int, float] = {}
        self._last_sample: float | None = None
        self._next_sample = self.start
        self.fatal: str | None = None

    def on_line(self, line: str) -> None:
        """A line of the run's output: progress if it is a new step or a line not seen before; fatal if it says Ray
        killed workers for memory (:data:`RAY_OOM_KILL`)."""
        oom = RAY_OOM_KILL.search(line)
        if oom and int(oom[1]) > 0 and self.fatal is None:
            self.fatal = (
                f"Ray killed {oom[1]} of the run's workers for memory pressure (OOM) after step {self.last_step}: "
                "verl does not replace them; free memory (fewer runs side by side) or lower the stage's batch sizes"
            )
        step = is_step_line(line)
        new_step = step is not None and step > self.last_step
        if new_step:
            self.last_step = step  # type: ignore[assignment]
        shape = _DIGITS.sub("#", line.strip())
        new_line = bool(shape) and shape not in self._seen
        if new_line:
            if len(self._seen) >= _MAX_SEEN:
                self._seen.clear()
            self._seen.add(shape)
        if new_step or new_line:
            self.last_progress = self.last_output = self.clock()

    def _sample_cpu(self, now: float) -> None:
        if self.cpu_times is None or now < self._next_sample:
            return
        current = self.cpu_times()
        if current is None:  # no process tree to read (a Ray Job's, or one that has ended): steps and lines only
            return
        if self._last_sample is not None:
            # A process seen for the first time brings all of its CPU so far: it started since the last sample.
            used = sum(max(0.0, t - self._cpu.get(pid, 0.0)) for pid, t in current.items())
            if used >= BUSY_CORES * (now - self._last_sample):
                self.last_progress = now
        self._cpu, self._last_sample, self._next_sample = current, now, now + SAMPLE_S

    def check(self) -> str | None:
        """None while the run may go on; else why it must stop, in one line."""
        if self.fatal is not None:
            return self.fatal
        now = self.clock()
        self._sample_cpu(now)
        if self.timeout_s is not None and now - self.start >= self.timeout_s:
            return f"timed out after {self.timeout_s:.0f} s (timeout_s), last step {self.last_step}"
        if now - self.last_progress >= self.stall_s:
            return (
                f"stalled: no new step, log line or CPU use for {self.stall_s:.0f} s (stall_s), "
                f"last step {self.last_step}"
            )
        if self.silent_s is not None and now - self.last_output >= self.silent_s:
            return (
                f"stalled: no new step or log line for {self.silent_s:.0f} s though its processes poll the CPU "
                f"(hung, not slow), last step {self.last_step}"
            )
        return None
